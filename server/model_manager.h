// Owns the served Engine and swaps in new ones loaded in the background.
//
// State (ModelState) transitions:
//   kNone --load()--> kLoading --ok--> kReady --load()--> kLoading (old engine keeps serving)
//   kLoading --error--> kFailed (the previous engine, if any, keeps serving: state kReady)
//   any --shutdown()--> kNone
// A swapped-out engine is shut down when the last in-flight request drops its reference
// (engine() hands out shared_ptrs whose deleter calls Engine::shutdown()), so streams in
// progress finish on the model they started with.
//
// Thread-safety: all public methods are safe from any thread.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/engine/engine.h"

namespace ktl::server {

enum class ModelState { kNone, kLoading, kReady, kFailed };
const char* model_state_name(ModelState s);  // "none" | "loading" | "ready" | "failed"

struct ModelStatus {
  ModelState state = ModelState::kNone;
  bool serving = false;   // an engine is available (kReady, or kLoading/kFailed with an old one)
  std::string model_dir;  // of the serving engine
  std::string model_name;
  int max_context = 0;
  std::string loading_dir;  // while kLoading
  std::string error;        // last load error
};

class ModelManager {
 public:
  using Loader = std::function<std::unique_ptr<Engine>(const std::string&, const EngineConfig&)>;

  // `loader` defaults to Engine::load when the engine library is linked.
  ModelManager(EngineConfig cfg, Loader loader);
  ~ModelManager();  // shutdown()
  ModelManager(const ModelManager&) = delete;
  ModelManager& operator=(const ModelManager&) = delete;

  // Starts loading `dir` on a background thread; returns false when a load is already running.
  bool load_async(const std::string& dir);
  // Loads on the calling thread; throws std::runtime_error on failure (state kFailed).
  void load_sync(const std::string& dir);
  // Waits for a background load to finish (for tests and --wait).
  void wait_idle();

  std::shared_ptr<Engine> engine() const;  // null when none is serving
  ModelStatus status() const;
  // Drops the serving engine (it shuts down once in-flight requests let go), joins the loader.
  void shutdown();

 private:
  void finish_load(const std::string& dir, std::unique_ptr<Engine> e, const std::string& error);
  std::string run_load(const std::string& dir);  // loads and swaps in; returns the error or ""

  const EngineConfig cfg_;
  const Loader loader_;
  mutable std::mutex mu_;
  std::shared_ptr<Engine> engine_;
  ModelStatus status_;
  std::thread loader_thread_;
  bool loading_ = false;
};

// The default loader: Engine::load, or a loader that throws when the engine is not built in.
ModelManager::Loader default_engine_loader();

}  // namespace ktl::server
