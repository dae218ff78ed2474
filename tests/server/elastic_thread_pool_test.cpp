// ElasticThreadPool: threads start as jobs need them, up to the cap; shutdown runs what is queued.
#include "server/elastic_thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace ktl::server {
namespace {

// Waits until `pred` holds (up to 5 s).
template <class P>
bool eventually(P pred) {
  for (int i = 0; i < 500 && !pred(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return pred();
}

TEST(ElasticThreadPool, GrowsToTheCapAndQueuesBeyondIt) {
  ElasticThreadPool pool(1, 3);
  EXPECT_EQ(pool.threads(), 1u);
  std::atomic<bool> release{false};
  std::atomic<int> running{0}, done{0};
  auto job = [&] {
    ++running;
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ++done;
  };
  for (int i = 0; i < 4; ++i) pool.enqueue(job);
  EXPECT_TRUE(eventually([&] { return running == 3; }));
  EXPECT_EQ(pool.threads(), 3u);  // capped: the 4th job waits
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(running.load(), 3);
  release = true;
  EXPECT_TRUE(eventually([&] { return done == 4; }));
  EXPECT_EQ(pool.threads(), 3u);
}

TEST(ElasticThreadPool, ReusesIdleThreads) {
  ElasticThreadPool pool(0, 8);
  std::atomic<int> done{0};
  for (int i = 0; i < 20; ++i) {
    pool.enqueue([&] { ++done; });
    EXPECT_TRUE(eventually([&] { return done == i + 1; }));
  }
  EXPECT_EQ(pool.threads(), 1u);  // one job at a time never needs a second thread
}

TEST(ElasticThreadPool, ShutdownRunsQueuedJobs) {
  std::atomic<int> done{0};
  {
    ElasticThreadPool pool(1, 1);
    for (int i = 0; i < 5; ++i)
      pool.enqueue([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        ++done;
      });
    pool.shutdown();
    EXPECT_EQ(done.load(), 5);
  }
  EXPECT_EQ(done.load(), 5);
}

}  // namespace
}  // namespace ktl::server
