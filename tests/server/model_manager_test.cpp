// ModelManager: background loads, swaps, failed loads keep the old engine, and a swapped-out
// engine is shut down only after its last in-flight user lets go. The Engine here is a test
// double (no model): only the manager's bookkeeping is under test.
#include "server/model_manager.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>

namespace ktl::server {
namespace {

std::atomic<int> g_shutdowns{0};

class FakeEngine : public Engine {
 public:
  explicit FakeEngine(std::string name) : name_(std::move(name)) {}
  std::shared_ptr<RequestHandle> submit(GenerationRequest) override { return nullptr; }
  EngineStats stats() const override { return {}; }
  const Tokenizer& tokenizer() const override { throw std::logic_error("not used here"); }
  int max_context() const override { return 128; }
  std::string model_name() const override { return name_; }
  void shutdown() override { ++g_shutdowns; }

 private:
  std::string name_;
};

ModelManager::Loader fake_loader() {
  return [](const std::string& dir, const EngineConfig&) -> std::unique_ptr<Engine> {
    if (dir.find("bad") != std::string::npos) throw std::runtime_error("corrupt checkpoint");
    return std::make_unique<FakeEngine>(dir.substr(dir.rfind('/') + 1));
  };
}

TEST(ModelManager, StartsEmptyThenLoadsInTheBackground) {
  ModelManager m(EngineConfig{}, fake_loader());
  EXPECT_EQ(m.status().state, ModelState::kNone);
  EXPECT_EQ(m.engine(), nullptr);
  ASSERT_TRUE(m.load_async("/models/a"));
  m.wait_idle();
  ModelStatus st = m.status();
  EXPECT_EQ(st.state, ModelState::kReady);
  EXPECT_TRUE(st.serving);
  EXPECT_EQ(st.model_name, "a");
  EXPECT_EQ(st.max_context, 128);
  ASSERT_NE(m.engine(), nullptr);
  EXPECT_EQ(m.engine()->model_name(), "a");
}

TEST(ModelManager, FailedLoadKeepsTheServingEngine) {
  ModelManager m(EngineConfig{}, fake_loader());
  m.load_sync("/models/a");
  EXPECT_THROW(m.load_sync("/models/bad"), std::runtime_error);
  ModelStatus st = m.status();
  EXPECT_EQ(st.state, ModelState::kReady);
  EXPECT_EQ(st.model_name, "a");
  EXPECT_NE(st.error.find("corrupt"), std::string::npos);
  ModelManager empty(EngineConfig{}, fake_loader());
  EXPECT_THROW(empty.load_sync("/models/bad"), std::runtime_error);
  EXPECT_EQ(empty.status().state, ModelState::kFailed);
  EXPECT_FALSE(empty.status().serving);
}

TEST(ModelManager, SwappedOutEngineShutsDownAfterItsLastUser) {
  ModelManager m(EngineConfig{}, fake_loader());
  m.load_sync("/models/a");
  const int before = g_shutdowns.load();
  std::shared_ptr<Engine> in_flight = m.engine();  // a request still streaming on "a"
  m.load_sync("/models/b");
  EXPECT_EQ(m.engine()->model_name(), "b");
  EXPECT_EQ(g_shutdowns.load(), before) << "old engine shut down under a live request";
  in_flight.reset();
  EXPECT_EQ(g_shutdowns.load(), before + 1);
  m.shutdown();
  EXPECT_EQ(g_shutdowns.load(), before + 2);
  EXPECT_EQ(m.engine(), nullptr);
  EXPECT_EQ(m.status().state, ModelState::kNone);
}

TEST(ModelManager, OneLoadAtATime) {
  std::atomic<bool> release{false};
  ModelManager m(EngineConfig{}, [&](const std::string& dir, const EngineConfig&) {
    while (!release) std::this_thread::yield();
    return std::unique_ptr<Engine>(std::make_unique<FakeEngine>("slow"));
  });
  ASSERT_TRUE(m.load_async("/models/slow"));
  EXPECT_EQ(m.status().state, ModelState::kLoading);
  EXPECT_EQ(m.status().loading_dir, "/models/slow");
  EXPECT_FALSE(m.load_async("/models/other"));
  EXPECT_THROW(m.load_sync("/models/other"), std::runtime_error);
  release = true;
  m.wait_idle();
  EXPECT_EQ(m.status().model_name, "slow");
}

}  // namespace
}  // namespace ktl::server
