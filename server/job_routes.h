// REST routes of the training daemon under /v1/jobs (cpp-httplib):
//   POST /v1/jobs                        submit a spec -> 201 + job
//   GET  /v1/jobs?status=&limit=         list, newest first
//   GET  /v1/jobs/{id}                   job + latest metrics + checkpoints (each with
//                                        "adapter": {rank, alpha, targets, base} when it is a
//                                        LoRA checkpoint, else null)
//   GET  /v1/jobs/{id}/metrics?key=&since_step=&limit=   series grouped by key
//   GET  /v1/jobs/{id}/samples?since_step=&limit=
//   GET  /v1/jobs/{id}/logs?tail=N | ?since_id=ID&limit=
//   POST /v1/jobs/{id}/cancel            409 unless queued or running
//   POST /v1/jobs/{id}/resume            409 unless failed, cancelled or interrupted
//   GET  /v1/jobs/{id}/sweep             a sweep's trials ranked by val loss, its recipe
//                                        (409 for other kinds)
//   POST /v1/jobs/{id}/recipe {"name"}   saves the sweep's best config as
//                                        DATA_DIR/recipes/<name>.yaml
//   GET  /v1/jobs/{id}/events            SSE: replays events after Last-Event-ID (or ?since=),
//                                        then polls; ends with "event: end" once the job is
//                                        terminal and drained, or when the client leaves.
// Errors: {"error":{"message","type","code","param"}} with 400 / 404 / 409 / 413.
// The store and runner must outlive the server. Handlers are thread-safe (store and runner are).
#pragma once

#include <functional>

#include <httplib.h>

#include "jobs/job_runner.h"
#include "jobs/job_spec.h"
#include "jobs/job_store.h"

namespace ktl::server {

// Called first on every job route; returns false after writing its own response (e.g. 401).
using JobAuthorizeFn = std::function<bool(const httplib::Request&, httplib::Response&)>;

struct JobRoutesOptions {
  JobAuthorizeFn authorize;         // null = every request allowed
  jobs::JobSpecContext spec_ctx;    // roots submitted specs are confined to
  int sse_poll_ms = 250;            // how often an event stream looks for new events
  int sse_keepalive_ms = 15000;     // comment line sent when idle (notices gone clients)
  size_t max_spec_bytes = 1 << 20;  // bigger POST bodies -> 413
  // Event streams end when this returns true (server shutdown); they also end once the
  // runner is stopping.
  std::function<bool()> should_stop;
};

void register_job_routes(httplib::Server& server, jobs::JobStore& store, jobs::JobRunner& runner,
                         const JobRoutesOptions& opts);

// Convenience: default options with these roots and this authorisation check.
void register_job_routes(httplib::Server& server, jobs::JobStore& store, jobs::JobRunner& runner,
                         const jobs::JobSpecContext& spec_ctx, JobAuthorizeFn authorize = nullptr);

}  // namespace ktl::server
