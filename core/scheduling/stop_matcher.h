// Stop strings over a stream of text chunks.
//
// push() returns the text that can safely be shown: everything except a tail that could still
// become the start of a stop string. When a stop string completes (possibly straddling many
// chunks), the text before it is returned, stopped() turns true, and the stop string and
// anything after it are dropped: a stop string never leaks into the output.
//
// Thread-safety: one instance per request, used by one thread.
#pragma once

#include <string>
#include <vector>

namespace ktl {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  std::string push(const std::string& text);
  // End of stream without a stop: the held-back tail.
  std::string flush();
  bool stopped() const { return stopped_; }
  const std::string& matched() const { return matched_; }  // the stop string that matched

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
  std::string matched_;
};

}  // namespace ktl
