// Command registry and flag parsing for the `ktl` CLI.
// Commands register themselves from their own cli/cmd_*.cpp with KTL_COMMAND; main() dispatches.
// Not thread-safe: registration happens during static initialisation, parsing in main().
#pragma once

#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace ktl::cli {

struct Flag {
  std::string name;           // without the leading "--"
  std::string help;           // one line
  std::string default_value;  // shown in --help; empty = none
  bool is_bool = false;       // present = true, no value
  bool required = false;
  bool repeatable = false;  // may be given several times (get_all)
};

// Parsed flags of one invocation. Values are strings; typed getters throw UsageError.
class Args {
 public:
  bool has(const std::string& name) const;
  std::string get(const std::string& name, const std::string& fallback = "") const;
  std::vector<std::string> get_all(const std::string& name) const;
  long long get_int(const std::string& name, long long fallback) const;
  double get_double(const std::string& name, double fallback) const;
  bool get_bool(const std::string& name) const;
  // Every (name, value) pair in command-line order (for config overrides).
  const std::vector<std::pair<std::string, std::string>>& items() const { return items_; }
  void add(const std::string& name, const std::string& value) { items_.emplace_back(name, value); }

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

struct Command {
  std::string name;
  std::string summary;
  std::vector<Flag> flags;
  std::function<int(const Args&)> run;
  bool accepts_unknown_flags = false;  // e.g. train: any training.yaml key is a flag
  // A flag one bare argument may give instead (`ktl doctor DIR` = `--data-dir DIR`); "" = none.
  std::string positional = "";
};

// A wrong invocation: main prints "ktl <cmd>: <message>" and exits with code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::map<std::string, Command>& registry();
bool register_command(Command c);
// Parses argv (after the command name) against the command's flags; throws UsageError.
Args parse_args(const Command& c, int argc, char** argv);
std::string command_help(const Command& c);

}  // namespace ktl::cli

#define KTL_CONCAT_INNER(a, b) a##b
#define KTL_CONCAT(a, b) KTL_CONCAT_INNER(a, b)
// Registers a command at static-initialisation time: KTL_COMMAND(Command{...});
#define KTL_COMMAND(...)                                        \
  static const bool KTL_CONCAT(ktl_cmd_registered_, __LINE__) = \
      ::ktl::cli::register_command(__VA_ARGS__)
