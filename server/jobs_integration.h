// The training-jobs side of `ktl serve`: the JobStore (<data-dir>/ktl.db), the JobRunner, the
// /v1/jobs routes, model loading from a job's checkpoint, and --quickstart.
//
// Quickstart (make run): when no model is given, the server looks for the job named
// "quickstart". Succeeded -> its newest checkpoint is loaded. Queued/running -> each newer
// checkpoint is loaded as it appears. Interrupted -> resumed. None -> a pipeline job is
// submitted once (default corpus -> tokenizer + data -> train model_tiny for a few hundred
// steps, with configs/recipes/tiny.yaml as its training config when that recipe exists) and
// followed the same way.
//
// Lifecycle: create() -> start() (runner recovery + scheduling, quickstart watcher) -> stop().
// Thread-safety: newest_checkpoint() and the routes may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace httplib {
class Server;
}

namespace ktl::server {

struct ServerContext;

class JobsIntegration {
 public:
  // Null when this build has no jobs library. Opens (creates) the store; throws on failure.
  static std::unique_ptr<JobsIntegration> create(ServerContext& ctx);
  virtual ~JobsIntegration() = default;

  virtual void register_routes(httplib::Server& server) = 0;
  virtual void start() = 0;
  virtual void stop() = 0;
  // The newest checkpoint dir of job `id` that still exists; ApiError 404 / 409.
  virtual std::string newest_checkpoint(int64_t id) = 0;
};

}  // namespace ktl::server
