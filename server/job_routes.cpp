#include "server/job_routes.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>
#include <regex>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "core/adapters/lora_config.h"
#include "core/base/file_util.h"
#include "server/header_validation.h"

namespace ktl::server {

namespace {

using nlohmann::json;
using namespace ktl::jobs;
using Clock = std::chrono::steady_clock;

struct HttpError : std::runtime_error {
  HttpError(int status, const std::string& msg, std::string code, std::string param = "")
      : std::runtime_error(msg), status(status), code(std::move(code)), param(std::move(param)) {}
  int status;
  std::string code, param;
};

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);  // logs may hold any bytes
}

void send_json(httplib::Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(dump(j), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message,
                const std::string& code, const std::string& param = "") {
  const char* type = status == 404   ? "not_found_error"
                     : status >= 500 ? "server_error"
                                     : "invalid_request_error";
  json e = {{"message", message},
            {"type", type},
            {"code", code},
            {"param", param.empty() ? json(nullptr) : json(param)}};
  send_json(res, status, {{"error", e}});
}

json number_or_null(double v) {
  return std::isfinite(v) ? json(v) : json(nullptr);
}
json time_or_null(double t) {
  return t > 0 ? json(t) : json(nullptr);
}

json job_json(const Job& j, bool cancel_requested) {
  json spec = json::parse(j.spec_json, nullptr, false);
  if (spec.is_discarded()) spec = nullptr;
  json progress = {{"step", j.progress_step}, {"total", j.progress_total}};
  progress["fraction"] = j.progress_total > 0
                             ? json(static_cast<double>(j.progress_step) / j.progress_total)
                             : json(nullptr);
  return {{"id", j.id},
          {"object", "job"},
          {"kind", to_string(j.kind)},
          {"name", j.name},
          {"status", to_string(j.status)},
          {"cancel_requested", cancel_requested},
          {"spec", spec},
          {"progress", progress},
          {"created_at", time_or_null(j.created_at)},
          {"started_at", time_or_null(j.started_at)},
          {"finished_at", time_or_null(j.finished_at)},
          {"error", j.error.empty() ? json(nullptr) : json(j.error)},
          {"output_dir", j.output_dir},
          {"pid", j.pid > 0 ? json(j.pid) : json(nullptr)},
          {"resume_count", j.resume_count},
          {"resume_from", j.resume_from.empty() ? json(nullptr) : json(j.resume_from)}};
}

// A LoRA checkpoint (adapter_config.json in its directory): {rank, alpha, targets, base} for the
// dashboard's "Serve adapter"; null for a full checkpoint. A file the server's loader would refuse
// still says it is an adapter, with the loader's reason in "error".
json adapter_of_checkpoint(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path config = fs::path(dir) / kAdapterConfigFile;
  if (!fs::is_regular_file(config, ec)) return nullptr;
  json out = json::object();
  try {
    const LoraConfig c = lora_config_from_peft_json(read_file(config.string()));
    json targets = json::array();
    for (LoraTarget t : c.targets) targets.push_back(std::string(lora_target_short_name(t)));
    out = {{"rank", c.rank}, {"alpha", c.alpha}, {"targets", targets}};
  } catch (const std::exception& e) {
    out["error"] = e.what();
  }
  // lora_base.json (written by the trainer) names the base checkpoint the adapter trained on.
  out["base"] = nullptr;
  try {
    if (fs::is_regular_file(fs::path(dir) / kLoraBaseFile, ec))
      out["base"] = read_lora_base(dir).base;
  } catch (const std::exception&) {
    // unreadable: the base stays unknown; the checkpoint is still listed
  }
  return out;
}

json checkpoint_json(const CheckpointRecord& c) {
  json m = json::object();
  for (const auto& [k, v] : c.metrics) m[k] = number_or_null(v);
  return {{"step", c.step},
          {"path", c.path},
          {"metrics", m},
          {"time", c.time},
          {"adapter", adapter_of_checkpoint(c.path)}};
}

int64_t int_param(const httplib::Request& req, const char* name, int64_t fallback,
                  int64_t min_value = INT64_MIN, int64_t max_value = INT64_MAX) {
  if (!req.has_param(name)) return fallback;
  std::string v = req.get_param_value(name);
  try {
    size_t used = 0;
    long long x = std::stoll(v, &used);
    if (used != v.size()) throw std::invalid_argument(v);
    if (x < min_value || x > max_value) throw std::out_of_range(v);
    return x;
  } catch (const std::exception&) {
    throw HttpError(400,
                    std::string("query parameter '") + name + "' must be an integer" +
                        (min_value > INT64_MIN ? " >= " + std::to_string(min_value) : ""),
                    "invalid_parameter", name);
  }
}

int64_t path_id(const httplib::Request& req) {
  try {
    return std::stoll(req.matches[1].str());
  } catch (const std::exception&) {
    throw HttpError(404, "job not found", "job_not_found");
  }
}

Job find_job(JobStore& store, int64_t id) {
  auto j = store.get_job(id);
  if (!j) throw HttpError(404, "job " + std::to_string(id) + " not found", "job_not_found");
  return *j;
}

// Wraps a handler: authorisation first, then errors mapped to JSON, never an escaped exception.
httplib::Server::Handler guarded(
    const JobRoutesOptions& opts,
    std::function<void(const httplib::Request&, httplib::Response&)> f) {
  return [auth = opts.authorize, f = std::move(f)](const httplib::Request& req,
                                                   httplib::Response& res) {
    if (auth && !auth(req, res)) return;
    try {
      f(req, res);
    } catch (const HttpError& e) {
      send_error(res, e.status, e.what(), e.code, e.param);
    } catch (const JobSpecError& e) {
      send_error(res, 400, e.what(), "invalid_job_spec", e.field());
    } catch (const JobNotFound& e) {
      send_error(res, 404, e.what(), "job_not_found");
    } catch (const JobStateError& e) {
      send_error(res, 409, e.what(), "invalid_job_state");
    } catch (const SqliteError& e) {
      spdlog::error("{} {}: {}", req.method, req.path, e.what());
      // A damaged ktl.db (page checksum mismatch): say so, naming the file, rather than serve
      // a wrong value; other store errors (e.g. busy) are plain internal errors.
      send_error(res, 500, e.what(), e.corrupt() ? "database_corrupt" : "internal_error");
    } catch (const std::exception& e) {
      spdlog::error("{} {}: {}", req.method, req.path, e.what());
      send_error(res, 500, std::string("internal error: ") + e.what(), "internal_error");
    }
  };
}

std::string sse_event(const EventRecord& e) {
  json data = json::parse(e.payload_json, nullptr, false);
  if (!data.is_object()) data = json::object();
  data["job_id"] = e.job_id;
  data["time"] = e.time;
  return "id: " + std::to_string(e.id) + "\nevent: " + e.type + "\ndata: " + dump(data) + "\n\n";
}

struct StreamState {
  int64_t last_id = 0;
  Clock::time_point last_write = Clock::now();
};

void stream_events(httplib::Response& res, JobStore& store, JobRunner& runner,
                   const JobRoutesOptions& opts, int64_t id, int64_t since) {
  auto state = std::make_shared<StreamState>();
  state->last_id = since;
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  auto stopping = [&runner, stop = opts.should_stop] {
    return runner.stopping() || (stop && stop());
  };
  int poll_ms = std::max(10, opts.sse_poll_ms), keepalive_ms = opts.sse_keepalive_ms;
  res.set_chunked_content_provider(
      "text/event-stream",
      [&store, id, state, stopping, poll_ms, keepalive_ms](size_t, httplib::DataSink& sink) {
        auto write = [&](const std::string& s) {
          state->last_write = Clock::now();
          return sink.write(s.data(), s.size());
        };
        // The provider runs outside the route's guard: a store error (a corrupt page) ends the
        // stream with an error event instead of escaping into the HTTP thread (terminate).
        std::optional<Job> job;
        std::vector<EventRecord> events;
        try {
          job = store.get_job(id);
          events = store.events_since(id, state->last_id, 500);
        } catch (const std::exception& e) {
          spdlog::error("job {} events: {}", id, e.what());
          const json err = {{"job_id", id}, {"message", e.what()}};
          write("event: error\ndata: " + dump(err) + "\n\n");
          sink.done();
          return true;
        }
        // Read the status before the events: a terminal status is written after (or with)
        // the job's last events, so "terminal and nothing new" means drained.
        bool terminal = !job || job_status_is_terminal(job->status);
        std::string out;
        for (const auto& e : events) {
          out += sse_event(e);
          state->last_id = e.id;
        }
        if (!out.empty() && !write(out)) return false;  // client gone
        if (events.size() == 500) return true;          // more to replay at once
        if ((terminal && events.empty()) || stopping()) {
          json end = {{"job_id", id}, {"status", job ? to_string(job->status) : "unknown"}};
          write("event: end\ndata: " + dump(end) + "\n\n");
          sink.done();
          return true;
        }
        if (Clock::now() - state->last_write > std::chrono::milliseconds(keepalive_ms) &&
            !write(": keep-alive\n\n"))
          return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
        return true;
      });
}

void register_reads(httplib::Server& server, JobStore& store, JobRunner& runner,
                    const JobRoutesOptions& opts) {
  server.Get("/v1/jobs", guarded(opts, [&store, &runner](const auto& req, auto& res) {
               std::optional<JobStatus> status;
               if (req.has_param("status")) {
                 status = parse_job_status(req.get_param_value("status"));
                 if (!status)
                   throw HttpError(
                       400,
                       "unknown status '" + req.get_param_value("status") +
                           "' (queued, running, succeeded, failed, cancelled, interrupted)",
                       "invalid_parameter", "status");
               }
               int limit = static_cast<int>(int_param(req, "limit", 100, 1, 10000));
               json data = json::array();
               for (const Job& j : store.list_jobs(status, limit))
                 data.push_back(job_json(j, runner.cancel_requested(j.id)));
               send_json(res, 200, {{"object", "list"}, {"data", data}});
             }));

  server.Get(
      R"(/v1/jobs/(\d+))", guarded(opts, [&store, &runner](const auto& req, auto& res) {
        Job j = find_job(store, path_id(req));
        json out = job_json(j, runner.cancel_requested(j.id));
        json latest = json::object();
        for (const auto& m : store.latest_metrics(j.id))
          latest[m.key] = {{"step", m.step}, {"value", number_or_null(m.value)}, {"time", m.time}};
        out["latest_metrics"] = latest;
        json cps = json::array();
        for (const auto& c : store.checkpoints(j.id)) cps.push_back(checkpoint_json(c));
        out["checkpoints"] = cps;
        send_json(res, 200, out);
      }));

  server.Get(R"(/v1/jobs/(\d+)/metrics)", guarded(opts, [&store](const auto& req, auto& res) {
               Job j = find_job(store, path_id(req));
               std::string key = req.has_param("key") ? req.get_param_value("key") : "";
               int64_t since = int_param(req, "since_step", INT64_MIN);
               int limit = static_cast<int>(int_param(req, "limit", 100000, 1, 1000000));
               json series = json::object();
               for (const auto& m : store.metrics(j.id, key, since, limit))
                 series[m.key].push_back(
                     {{"step", m.step}, {"value", number_or_null(m.value)}, {"time", m.time}});
               send_json(res, 200, {{"object", "metrics"}, {"job_id", j.id}, {"series", series}});
             }));

  server.Get(R"(/v1/jobs/(\d+)/samples)", guarded(opts, [&store](const auto& req, auto& res) {
               Job j = find_job(store, path_id(req));
               int64_t since = int_param(req, "since_step", INT64_MIN);
               int limit = static_cast<int>(int_param(req, "limit", 1000, 1, 100000));
               json data = json::array();
               for (const auto& s : store.samples(j.id, since, limit))
                 data.push_back({{"step", s.step},
                                 {"prompt", s.prompt},
                                 {"text", s.text},
                                 {"kind", s.kind},
                                 {"time", s.time}});
               send_json(res, 200, {{"object", "list"}, {"job_id", j.id}, {"data", data}});
             }));

  server.Get(
      R"(/v1/jobs/(\d+)/logs)", guarded(opts, [&store](const auto& req, auto& res) {
        Job j = find_job(store, path_id(req));
        std::vector<LogLine> lines;
        if (req.has_param("since_id"))
          lines = store.logs_since(j.id, int_param(req, "since_id", 0, 0),
                                   static_cast<int>(int_param(req, "limit", 1000, 1, 100000)));
        else
          lines = store.logs_tail(j.id, static_cast<int>(int_param(req, "tail", 200, 1, 100000)));
        json data = json::array();
        for (const auto& l : lines)
          data.push_back({{"id", l.id}, {"line", l.line}, {"time", l.time}});
        send_json(res, 200, {{"object", "list"}, {"job_id", j.id}, {"data", data}});
      }));

  server.Get(R"(/v1/jobs/(\d+)/events)",
             guarded(opts, [&store, &runner, opts](const auto& req, auto& res) {
               Job j = find_job(store, path_id(req));
               int64_t since = int_param(req, "since", 0, 0);
               if (req.has_header("Last-Event-ID")) {
                 // The server refuses a malformed one before routing; this keeps the route
                 // strict on its own ("5abc" is not event 5).
                 auto id = parse_decimal_int64(req.get_header_value("Last-Event-ID"));
                 if (!id)
                   throw HttpError(400, "Last-Event-ID must be an event id", "invalid_parameter",
                                   "Last-Event-ID");
                 since = *id;
               }
               stream_events(res, store, runner, opts, j.id, since);
             }));
}

// A sweep job's state file (written by the sweep child after every finished rung).
json read_sweep_state(const Job& j) {
  if (j.kind != JobKind::kSweep)
    throw HttpError(
        409, "job " + std::to_string(j.id) + " is a " + to_string(j.kind) + " job, not a sweep",
        "not_a_sweep");
  const std::filesystem::path p = std::filesystem::path(j.output_dir) / "sweep_state.json";
  std::error_code ec;
  if (!std::filesystem::exists(p, ec)) return json::object();  // no rung finished yet
  json s = json::parse(read_file(p), nullptr, false);
  if (s.is_discarded())
    throw HttpError(500, "sweep state of job " + std::to_string(j.id) + " is not valid JSON",
                    "corrupt_state");
  return s;
}

void register_sweep_routes(httplib::Server& server, JobStore& store, const JobRoutesOptions& opts) {
  server.Get(R"(/v1/jobs/(\d+)/sweep)", guarded(opts, [&store](const auto& req, auto& res) {
               Job j = find_job(store, path_id(req));
               json s = read_sweep_state(j);
               json out = {{"object", "sweep"},
                           {"job_id", j.id},
                           {"ranking", s.value("ranking", json::array())},
                           {"rungs", s.contains("halving") ? s["halving"].value("rungs", json())
                                                           : json(nullptr)},
                           {"elapsed_s", s.value("elapsed_s", 0.0)},
                           {"budget_minutes", s.value("budget_minutes", 0.0)},
                           {"precision", s.value("precision", "")},
                           {"finished", s.value("finished", false)}};
               const auto recipe = std::filesystem::path(j.output_dir) / "recipe.yaml";
               std::error_code ec;
               out["recipe"] =
                   std::filesystem::exists(recipe, ec) ? json(read_file(recipe)) : json(nullptr);
               send_json(res, 200, out);
             }));

  // Saves the finished sweep's best config as DATA_DIR/recipes/<name>.yaml.
  server.Post(
      R"(/v1/jobs/(\d+)/recipe)", guarded(opts, [&store, opts](const auto& req, auto& res) {
        Job j = find_job(store, path_id(req));
        read_sweep_state(j);  // 409 unless a sweep
        json body = json::parse(req.body, nullptr, false);
        if (!body.is_object() || !body.contains("name") || !body["name"].is_string())
          throw HttpError(400, "body must be {\"name\": \"recipe-name\"}", "invalid_request",
                          "name");
        const std::string name = body["name"].get<std::string>();
        static const std::regex kName("[a-z0-9][a-z0-9_-]{0,63}");
        if (!std::regex_match(name, kName))
          throw HttpError(400, "name must be 1-64 of a-z, 0-9, _ and - (e.g. tiny)",
                          "invalid_parameter", "name");
        const auto recipe = std::filesystem::path(j.output_dir) / "recipe.yaml";
        std::error_code ec;
        if (!std::filesystem::exists(recipe, ec))
          throw HttpError(409, "sweep " + std::to_string(j.id) + " has no recipe yet", "no_recipe");
        const auto dir = std::filesystem::path(opts.spec_ctx.data_dir) / "recipes";
        std::filesystem::create_directories(dir);
        const auto path = dir / (name + ".yaml");
        write_file_atomic(path, read_file(recipe));
        send_json(res, 201, {{"object", "recipe"}, {"name", name}, {"path", path.string()}});
      }));
}

void register_writes(httplib::Server& server, JobStore& store, JobRunner& runner,
                     const JobRoutesOptions& opts) {
  server.Post("/v1/jobs", guarded(opts, [&runner, opts](const auto& req, auto& res) {
                if (req.body.size() > opts.max_spec_bytes)
                  throw HttpError(
                      413, "job spec larger than " + std::to_string(opts.max_spec_bytes) + " bytes",
                      "payload_too_large");
                ValidatedSpec spec = validate_job_spec_text(req.body, opts.spec_ctx);
                Job j = runner.submit(spec);
                res.set_header("Location", "/v1/jobs/" + std::to_string(j.id));
                send_json(res, 201, job_json(j, false));
              }));

  server.Post(R"(/v1/jobs/(\d+)/cancel)", guarded(opts, [&runner](const auto& req, auto& res) {
                int64_t id = path_id(req);
                Job j = runner.cancel(id);
                send_json(res, 200, job_json(j, runner.cancel_requested(id)));
              }));

  server.Post(R"(/v1/jobs/(\d+)/resume)", guarded(opts, [&runner](const auto& req, auto& res) {
                Job j = runner.resume(path_id(req));
                send_json(res, 200, job_json(j, false));
              }));
}

}  // namespace

void register_job_routes(httplib::Server& server, JobStore& store, JobRunner& runner,
                         const JobRoutesOptions& opts) {
  register_reads(server, store, runner, opts);
  register_writes(server, store, runner, opts);
  register_sweep_routes(server, store, opts);
}

void register_job_routes(httplib::Server& server, JobStore& store, JobRunner& runner,
                         const JobSpecContext& spec_ctx, JobAuthorizeFn authorize) {
  JobRoutesOptions opts;
  opts.spec_ctx = spec_ctx;
  opts.authorize = std::move(authorize);
  register_job_routes(server, store, runner, opts);
}

}  // namespace ktl::server
