// A cpp-httplib task queue whose threads are started as connections need them, up to a cap,
// instead of all at start-up: `ktl serve` allows hundreds of connections, and each idle
// thread costs about 100 KiB of resident memory. Threads stay once started (the pool keeps its
// peak). shutdown() runs the jobs already queued, then joins every thread.
//
// Thread-safety: enqueue() and shutdown() may be called from any thread.
#pragma once

#include <httplib.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ktl::server {

class ElasticThreadPool : public httplib::TaskQueue {
 public:
  ElasticThreadPool(size_t initial_threads, size_t max_threads);
  ~ElasticThreadPool() override;
  ElasticThreadPool(const ElasticThreadPool&) = delete;
  ElasticThreadPool& operator=(const ElasticThreadPool&) = delete;

  // Queues `fn`; starts a thread when none is idle and the cap allows it.
  void enqueue(std::function<void()> fn) override;
  void shutdown() override;
  size_t threads() const;

 private:
  void start_thread();  // mu_ held
  void work();

  const size_t max_threads_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  bool shutdown_ = false;
};

}  // namespace ktl::server
