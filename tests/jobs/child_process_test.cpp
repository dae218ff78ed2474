// ChildProcess and signals: a signal that reaches a child before it has exec'ed must never run
// this process's handlers in the child (the server's SIGTERM handler writes to the server's
// self-pipe, so a cancel sent right after a spawn used to stop the whole server).
#include "jobs/child_process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace ktl::jobs {
namespace {

// Like cmd_serve's self-pipe before the fix: not CLOEXEC, so a forked child inherits it.
int g_pipe[2] = {-1, -1};
std::atomic<bool> g_raise_in_child{false};

void on_term(int) {
  const char b = 'x';
  ssize_t r = write(g_pipe[1], &b, 1);
  (void)r;
}

// Runs in every forked child right after fork, before ChildProcess's own code: a SIGTERM
// "arriving" in the window between fork and the child's signal reset, every time.
void raise_term_in_child() {
  if (g_raise_in_child.load()) raise(SIGTERM);
}

class ChildProcessSignalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static const bool registered = [] {
      pthread_atfork(nullptr, nullptr, raise_term_in_child);
      return true;
    }();
    (void)registered;
    ASSERT_EQ(pipe(g_pipe), 0);
    fcntl(g_pipe[0], F_SETFL, O_NONBLOCK);
    struct sigaction sa {};
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, &old_term_);
    sigaction(SIGINT, &sa, &old_int_);
  }
  void TearDown() override {
    g_raise_in_child = false;
    sigaction(SIGTERM, &old_term_, nullptr);
    sigaction(SIGINT, &old_int_, nullptr);
    close(g_pipe[0]);
    close(g_pipe[1]);
  }

  // Bytes the handler wrote, in this process or in any child.
  static int handler_runs() {
    char buf[256];
    int n = 0;
    for (ssize_t r; (r = read(g_pipe[0], buf, sizeof(buf))) > 0;) n += static_cast<int>(r);
    return n;
  }

  // Waits up to 5 s for the child to end; a child whose handler swallowed the signal keeps
  // sleeping and fails here.
  static ChildExit wait_exit(ChildProcess& c) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!c.try_reap() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return c.exit_status();
  }

  struct sigaction old_term_ {};
  struct sigaction old_int_ {};
};

TEST_F(ChildProcessSignalTest, SignalBeforeExecKillsTheChildNotTheParentsHandler) {
  g_raise_in_child = true;
  for (int i = 0; i < 20; ++i) {
    ChildProcess c("/bin/sleep", {"30"});
    ChildExit e = wait_exit(c);
    ASSERT_TRUE(c.reaped()) << "round " << i << ": the child survived SIGTERM";
    EXPECT_FALSE(e.exited) << e.describe();
    EXPECT_EQ(e.signal, SIGTERM) << e.describe();
  }
  EXPECT_EQ(handler_runs(), 0) << "the parent's SIGTERM handler ran in a child";
}

TEST_F(ChildProcessSignalTest, GroupSignalRightAfterSpawnEndsEachChild) {
  for (int i = 0; i < 50; ++i) {
    ChildProcess c("/bin/sleep", {"30"});
    c.signal_group(i % 2 ? SIGTERM : SIGINT);
    ChildExit e = wait_exit(c);
    ASSERT_TRUE(c.reaped()) << "round " << i << ": the child survived the signal";
    EXPECT_EQ(e.signal, i % 2 ? SIGTERM : SIGINT) << e.describe();
  }
  EXPECT_EQ(handler_runs(), 0) << "the parent's handler ran in a child";
}

TEST_F(ChildProcessSignalTest, ParentSignalMaskIsRestoredAfterSpawn) {
  sigset_t block, before, after;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &block, &before);
  {
    ChildProcess c("/bin/true", {});
    wait_exit(c);
  }
  pthread_sigmask(SIG_SETMASK, nullptr, &after);
  EXPECT_TRUE(sigismember(&after, SIGUSR1));
  EXPECT_FALSE(sigismember(&after, SIGTERM));
  pthread_sigmask(SIG_SETMASK, &before, nullptr);
  // A signal to this process still reaches its handler after a spawn.
  raise(SIGTERM);
  EXPECT_EQ(handler_runs(), 1);
}

}  // namespace
}  // namespace ktl::jobs
