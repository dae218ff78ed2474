// While one lives, SIGTERM and SIGINT call `target->request_stop()` (an atomic store: safe in a
// signal handler) and restore the default action, so a second signal kills. `train` and `sweep`
// use it to stop at the next step with a checkpoint.
// Not thread-safe: one per process and target type at a time, made and destroyed on one thread.
#pragma once

#include <atomic>
#include <csignal>

namespace ktl::cli {

template <class T>
class StopOnSignal {
 public:
  explicit StopOnSignal(T* target) {
    target_.store(target);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
  }
  ~StopOnSignal() {
    std::signal(SIGTERM, SIG_DFL);
    std::signal(SIGINT, SIG_DFL);
    target_.store(nullptr);
  }
  StopOnSignal(const StopOnSignal&) = delete;
  StopOnSignal& operator=(const StopOnSignal&) = delete;

 private:
  static void on_signal(int sig) {
    if (T* t = target_.load()) t->request_stop();
    std::signal(sig, SIG_DFL);
  }
  static inline std::atomic<T*> target_{nullptr};
};

}  // namespace ktl::cli
