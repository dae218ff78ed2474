#include "server/model_manager.h"

#include <spdlog/spdlog.h>

#include <stdexcept>

namespace ktl::server {

const char* model_state_name(ModelState s) {
  switch (s) {
    case ModelState::kLoading:
      return "loading";
    case ModelState::kReady:
      return "ready";
    case ModelState::kFailed:
      return "failed";
    default:
      return "none";
  }
}

ModelManager::Loader default_engine_loader() {
#ifdef KTL_HAVE_ENGINE
  return [](const std::string& dir, const EngineConfig& cfg) { return Engine::load(dir, cfg); };
#else
  return [](const std::string&, const EngineConfig&) -> std::unique_ptr<Engine> {
    throw std::runtime_error("this ktl was built without the inference engine (ktl_engine)");
  };
#endif
}

ModelManager::ModelManager(EngineConfig cfg, Loader loader)
    : cfg_(std::move(cfg)), loader_(loader ? std::move(loader) : default_engine_loader()) {}

ModelManager::~ModelManager() {
  shutdown();
}

namespace {

// Shuts the engine down when the last holder lets go (in-flight requests drain first).
std::shared_ptr<Engine> share_engine(std::unique_ptr<Engine> e) {
  return std::shared_ptr<Engine>(e.release(), [](Engine* p) {
    try {
      p->shutdown();
    } catch (const std::exception& ex) {
      spdlog::warn("engine shutdown: {}", ex.what());
    }
    delete p;
  });
}

}  // namespace

void ModelManager::finish_load(const std::string& dir, std::unique_ptr<Engine> e,
                               const std::string& error) {
  std::shared_ptr<Engine> old;
  const bool ok = e != nullptr;
  std::string name;
  {
    std::lock_guard<std::mutex> lock(mu_);
    loading_ = false;
    status_.loading_dir.clear();
    if (e) {
      old = std::move(engine_);
      engine_ = share_engine(std::move(e));
      status_.state = ModelState::kReady;
      status_.model_dir = dir;
      status_.model_name = engine_->model_name();
      status_.max_context = engine_->max_context();
      status_.error.clear();
    } else {
      status_.state = engine_ ? ModelState::kReady : ModelState::kFailed;
      status_.error = error;
    }
    status_.serving = engine_ != nullptr;
    name = status_.model_name;
  }
  if (!ok)
    spdlog::error("model load failed: {}: {}", dir, error);
  else
    spdlog::info("model loaded: {} ({})", dir, name);
  old.reset();  // outside the lock: may block until the old engine's thread joins
}

bool ModelManager::load_async(const std::string& dir) {
  std::lock_guard<std::mutex> lock(mu_);
  if (loading_) return false;
  if (loader_thread_.joinable()) loader_thread_.join();  // the previous load has finished
  loading_ = true;
  status_.state = ModelState::kLoading;
  status_.loading_dir = dir;
  loader_thread_ = std::thread([this, dir] { run_load(dir); });
  return true;
}

std::string ModelManager::run_load(const std::string& dir) {
  std::unique_ptr<Engine> e;
  std::string error;
  try {
    e = loader_(dir, cfg_);
    if (!e) error = "loader returned no engine";
  } catch (const std::exception& ex) {
    error = ex.what();
  }
  finish_load(dir, std::move(e), error);
  return error;
}

void ModelManager::load_sync(const std::string& dir) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (loading_) throw std::runtime_error("a model is already being loaded");
    loading_ = true;
    status_.state = ModelState::kLoading;
    status_.loading_dir = dir;
  }
  const std::string error = run_load(dir);
  if (!error.empty()) throw std::runtime_error(error);
}

void ModelManager::wait_idle() {
  std::thread t;
  {
    std::lock_guard<std::mutex> lock(mu_);
    t = std::move(loader_thread_);
  }
  if (t.joinable()) t.join();
}

std::shared_ptr<Engine> ModelManager::engine() const {
  std::lock_guard<std::mutex> lock(mu_);
  return engine_;
}

ModelStatus ModelManager::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

void ModelManager::shutdown() {
  wait_idle();
  std::shared_ptr<Engine> old;
  {
    std::lock_guard<std::mutex> lock(mu_);
    old = std::move(engine_);
    status_ = ModelStatus{};
  }
  old.reset();
}

}  // namespace ktl::server
