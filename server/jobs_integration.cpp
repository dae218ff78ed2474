#include "server/jobs_integration.h"

#ifdef KTL_HAVE_JOBS

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "jobs/job_runner.h"
#include "jobs/job_spec.h"
#include "jobs/job_store.h"
#include "server/api_error.h"
#include "server/route_probe.h"
#include "server/server_context.h"
#ifdef KTL_HAVE_SERVER_JOBS
#include "server/job_routes.h"
#endif

namespace ktl::server {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kQuickstartName = "quickstart";

class JobsIntegrationImpl : public JobsIntegration {
 public:
  explicit JobsIntegrationImpl(ServerContext& ctx) : ctx_(ctx) {
    fs::create_directories(ctx.cfg.data_dir);
    spec_ctx_.data_dir = fs::absolute(ctx.cfg.data_dir).string();
    for (const auto& r : ctx.cfg.allowed_roots)
      spec_ctx_.allowed_roots.push_back(fs::absolute(r).string());
    store_ = std::make_unique<jobs::JobStore>((fs::path(spec_ctx_.data_dir) / "ktl.db").string());
    jobs::JobRunnerOptions opts;
    opts.executable = ctx.cfg.ktl_binary;
    opts.spec_ctx = spec_ctx_;
    opts.max_concurrent = std::max(1, ctx.cfg.max_jobs);
    opts.auto_resume_interrupted = ctx.cfg.auto_resume_jobs;
    runner_ = std::make_unique<jobs::JobRunner>(*store_, opts);
  }

  ~JobsIntegrationImpl() override { stop(); }

  void register_routes(httplib::Server& server) override {
#ifdef KTL_HAVE_SERVER_JOBS
    JobRoutesOptions opts;
    // authorize runs first on every job route: during a route probe (405 answers) it only
    // reports the match and stops the handler.
    opts.authorize = [this](const httplib::Request& req, httplib::Response& res) {
      if (RouteProbe::active()) {
        RouteProbe::note_match();
        return false;
      }
      return ctx_.authorize(req, res);
    };
    opts.spec_ctx = spec_ctx_;
    opts.max_spec_bytes = ctx_.cfg.max_body_bytes;
    opts.should_stop = [this] { return ctx_.draining.load() || ctx_.abort_streams.load(); };
    register_job_routes(server, *store_, *runner_, opts);
#else
    (void)server;
#endif
  }

  void start() override {
    seed_configs();
    runner_->start();
    if (ctx_.cfg.quickstart && ctx_.cfg.model_dir.empty())
      watcher_ = std::thread([this] { quickstart_loop(); });
  }

  void stop() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) return;
      stopped_ = true;
    }
    cv_.notify_all();
    if (watcher_.joinable()) watcher_.join();
    runner_->stop();
  }

  std::string newest_checkpoint(int64_t id) override {
    if (!store_->get_job(id))
      throw ApiError(404, "job " + std::to_string(id) + " not found", "job_not_found", "job_id");
    std::string dir = newest_existing_checkpoint(id);
    if (dir.empty())
      throw ApiError(409, "job " + std::to_string(id) + " has no checkpoint yet", "no_checkpoint",
                     "job_id");
    return dir;
  }

 private:
  // Job specs resolve config paths inside the data dir; give it the shipped configs
  // (DATA_DIR/configs/*.yaml) so "configs/model_tiny.yaml" works from the dashboard and curl.
  void seed_configs() {
    std::error_code ec;
    const fs::path src = ctx_.cfg.configs_dir, dst = fs::path(spec_ctx_.data_dir) / "configs";
    if (src.empty() || !fs::is_directory(src, ec)) return;
    fs::create_directories(dst, ec);
    for (const auto& e : fs::directory_iterator(src, ec)) {
      if (e.path().extension() != ".yaml" || fs::exists(dst / e.path().filename(), ec)) continue;
      fs::copy_file(e.path(), dst / e.path().filename(), ec);
      if (ec)
        spdlog::warn("could not copy {} into {}: {}", e.path().string(), dst.string(),
                     ec.message());
    }
  }

  std::string newest_existing_checkpoint(int64_t id) {
    auto cps = store_->checkpoints(id);
    for (auto it = cps.rbegin(); it != cps.rend(); ++it) {
      std::error_code ec;
      if (fs::exists(fs::path(it->path) / "config.json", ec)) return it->path;
    }
    return "";
  }

  // The quickstart pipeline: default corpus -> data + tokenizer -> a short model_tiny run.
  json quickstart_spec() const {
    const fs::path dir = fs::path(spec_ctx_.data_dir) / "quickstart";
    fs::create_directories(dir);
    const fs::path configs = ctx_.cfg.configs_dir;
    for (const char* f : {"model_tiny.yaml", "training.yaml"}) {
      if (!fs::exists(configs / f))
        throw std::runtime_error("quickstart needs " + (configs / f).string() +
                                 " (set --configs-dir or KTL_CONFIG_DIR)");
      fs::copy_file(configs / f, dir / f, fs::copy_options::overwrite_existing);
    }
    // The tiny recipe (from a sweep, docs/training-guide.md) replaces the generic defaults.
    const fs::path recipe = configs / "recipes" / "tiny.yaml";
    if (fs::exists(recipe))
      fs::copy_file(recipe, dir / "training.yaml", fs::copy_options::overwrite_existing);
    // Checkpoints, evals and samples four times per run, so the dashboard has something early.
    const int every = std::max(10, ctx_.cfg.quickstart_steps / 4);
    return {{"kind", "pipeline"},
            {"name", kQuickstartName},
            {"options",
             {{"prepare_data", {{"default_corpus", true}, {"vocab_size", 8000}}},
              {"train",
               {{"config", (dir / "training.yaml").string()},
                {"model_config", (dir / "model_tiny.yaml").string()},
                {"max_steps", ctx_.cfg.quickstart_steps},
                {"save_steps", every},
                {"eval_steps", every},
                {"sample_steps", every},
                {"warmup_steps", std::max(10, ctx_.cfg.quickstart_steps / 10)}}}}}};
  }

  std::optional<jobs::Job> find_quickstart() {
    for (const auto& j : store_->list_jobs())  // newest first
      if (j.name == kQuickstartName) return j;
    return std::nullopt;
  }

  // Returns false when there is nothing more to follow.
  bool quickstart_step(int64_t* job_id, std::string* loaded) {
    std::optional<jobs::Job> job = *job_id ? store_->get_job(*job_id) : find_quickstart();
    if (!job) {
      spdlog::info("quickstart: no model yet; submitting a tiny training pipeline");
      job = runner_->submit(jobs::validate_job_spec(quickstart_spec(), spec_ctx_));
    }
    *job_id = job->id;
    if (job->status == jobs::JobStatus::kInterrupted) {
      spdlog::info("quickstart: resuming interrupted job {}", job->id);
      job = runner_->resume(job->id);
    }
    const std::string newest = newest_existing_checkpoint(job->id);
    if (!newest.empty() && newest != *loaded) {
      if (ctx_.models.load_async(newest)) {
        spdlog::info("quickstart: loading {}", newest);
        *loaded = newest;
      }
    }
    if (job->status == jobs::JobStatus::kSucceeded) return !newest.empty() && newest != *loaded;
    if (job->status == jobs::JobStatus::kFailed || job->status == jobs::JobStatus::kCancelled) {
      spdlog::warn("quickstart: job {} is {}; not retrying (resume it from the dashboard)", job->id,
                   jobs::to_string(job->status));
      return false;
    }
    return true;
  }

  void quickstart_loop() {
    int64_t job_id = 0;
    std::string loaded;
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopped_) {
      lock.unlock();
      bool more = false;
      try {
        more = quickstart_step(&job_id, &loaded);
      } catch (const std::exception& e) {
        spdlog::error("quickstart: {}", e.what());
      }
      lock.lock();
      if (!more) break;
      cv_.wait_for(lock, std::chrono::seconds(2), [this] { return stopped_; });
    }
  }

  ServerContext& ctx_;
  jobs::JobSpecContext spec_ctx_;
  std::unique_ptr<jobs::JobStore> store_;
  std::unique_ptr<jobs::JobRunner> runner_;
  std::thread watcher_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;
};

}  // namespace

std::unique_ptr<JobsIntegration> JobsIntegration::create(ServerContext& ctx) {
  return std::make_unique<JobsIntegrationImpl>(ctx);
}

}  // namespace ktl::server

#else  // no jobs library in this build

namespace ktl::server {
std::unique_ptr<JobsIntegration> JobsIntegration::create(ServerContext&) {
  return nullptr;
}
}  // namespace ktl::server

#endif
