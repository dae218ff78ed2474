// ktl serve: the local HTTP service (OpenAI-compatible generation, serving metrics, the
// training-jobs API and the dashboard). See docs/inference-guide.md, "HTTP API".
#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>

#include "cli/command.h"
#include "cli/engine_device.h"
#include "cli/kernels_flag.h"
#include "cli/speculative_flags.h"
#include "cli/verify_flag.h"
#include "core/base/file_util.h"
#include "server/http_server.h"

namespace {

namespace fs = std::filesystem;
using ktl::cli::Args;
using ktl::cli::UsageError;

int g_signal_pipe[2] = {-1, -1};
pid_t g_server_pid = 0;

void on_stop_signal(int sig) {
  // A forked job child must never stop the server (ChildProcess already blocks signals
  // until the child has reset its handlers; this is the second guard).
  if (getpid() != g_server_pid) return;
  const int saved_errno = errno;
  const unsigned char b = static_cast<unsigned char>(sig);
  ssize_t r = write(g_signal_pipe[1], &b, 1);
  (void)r;
  errno = saved_errno;
}

fs::path exe_dir() {
  const std::string exe = ktl::executable_path();
  return exe.empty() ? fs::current_path() : fs::path(exe).parent_path();
}

// The flag, else the environment variable, else <exe_dir>/../<name> when it exists.
std::string locate_dir(const Args& args, const char* flag, const char* env, const char* name) {
  if (args.has(flag)) return args.get(flag);
  if (const char* v = std::getenv(env); v && *v) return v;
  std::error_code ec;
  for (const fs::path& p : {exe_dir() / ".." / name, exe_dir() / name})
    if (fs::is_directory(p, ec)) return fs::weakly_canonical(p, ec).string();
  return "";
}

int positive(const Args& args, const char* flag, long long fallback, long long max = 1 << 30) {
  long long v = args.get_int(flag, fallback);
  if (v < 0 || v > max)
    throw UsageError(std::string("--") + flag + " must be between 0 and " + std::to_string(max));
  return static_cast<int>(v);
}

ktl::server::ServerConfig config_from(const Args& args) {
  ktl::server::ServerConfig c;
  c.host = args.get("host", c.host);
  c.port = positive(args, "port", c.port, 65535);
  c.api_key = args.get("api-key");
  if (c.api_key.empty())
    if (const char* k = std::getenv("KTL_API_KEY")) c.api_key = k;
  c.insecure = args.get_bool("insecure");
  const double body_mb = args.get_double("max-body-mb", 1.0);
  if (!(body_mb > 0 && body_mb <= 1024)) throw UsageError("--max-body-mb must be in (0, 1024]");
  c.max_body_bytes = static_cast<size_t>(body_mb * 1024 * 1024);
  c.max_prompt_tokens = positive(args, "max-prompt-tokens", c.max_prompt_tokens);
  c.max_tokens_limit = positive(args, "max-tokens-limit", c.max_tokens_limit);
  c.max_concurrent_streams =
      std::max(1, positive(args, "max-streams", c.max_concurrent_streams, 4096));
  c.max_queue = std::max(1, positive(args, "max-queue", c.max_queue));
  c.drain_timeout_s = positive(args, "drain-timeout", c.drain_timeout_s, 3600);
  c.max_connections = std::max(c.max_connections, c.max_concurrent_streams + 16);
  // httplib 0.11.4 answers 500 on a socket number >= FD_SETSIZE (1024): stay well below.
  c.max_connections = positive(args, "max-connections", c.max_connections, 900);
  if (c.max_connections < c.max_concurrent_streams + 16)
    throw UsageError("--max-connections must be at least --max-streams + 16 (" +
                     std::to_string(c.max_concurrent_streams + 16) +
                     "): /health, /metrics and job routes need connections while every "
                     "generation slot is busy");
  c.read_timeout_s = std::max(1, positive(args, "read-timeout", c.read_timeout_s, 3600));
  c.request_timeout_s = std::max(1, positive(args, "request-timeout", c.request_timeout_s, 3600));
  c.max_header_lines = std::max(8, positive(args, "max-headers", c.max_header_lines, 1000));
  c.data_dir = args.get("data-dir", c.data_dir);
  c.allowed_roots = args.get_all("allow-path");
  c.model_dir = args.get("model");
  for (const std::string& spec : args.get_all("adapter")) {
    const size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
      throw UsageError("--adapter must be NAME=DIR (a PEFT adapter directory), not '" + spec + "'");
    c.adapters.emplace_back(spec.substr(0, eq), spec.substr(eq + 1));
  }
  if (!c.adapters.empty() && c.model_dir.empty())
    throw UsageError("--adapter needs --model (the base model the adapters were trained on)");
  // Unset: 0, the engine sizes the pool for --max-num-seqs full contexts (core/engine/kv_budget.h).
  c.kv_cache_mb = args.has("kv-cache-mb") ? std::max(1, positive(args, "kv-cache-mb", 1)) : 0;
  c.dtype = args.get("dtype", c.dtype);
  c.device = args.get("device", c.device);
  c.max_num_seqs = std::max(1, positive(args, "max-num-seqs", c.max_num_seqs, 1024));
  c.num_threads = positive(args, "threads", c.num_threads, 1024);
  c.verify_checksums = !args.get_bool("no-verify");
  c.speculative = ktl::cli::speculative_from_args(args);
  c.quickstart = args.get_bool("quickstart");
  c.quickstart_steps = std::max(1, positive(args, "quickstart-steps", c.quickstart_steps));
  c.max_jobs = std::max(1, positive(args, "max-jobs", c.max_jobs, 64));
  c.auto_resume_jobs = args.get_bool("auto-resume");
  c.web_root = locate_dir(args, "web-root", "KTL_WEB_ROOT", "web");
  c.configs_dir = locate_dir(args, "configs-dir", "KTL_CONFIG_DIR", "configs");
  c.ktl_binary = ktl::executable_path();
  if (c.dtype != "auto" && c.dtype != "fp32" && c.dtype != "bf16" && c.dtype != "int8")
    throw UsageError("--dtype must be auto, fp32, bf16 or int8");
  return c;
}

int run_serve(const Args& args) {
  ktl::cli::check_engine_device(args);
  ktl::cli::check_kernels_flag(args);
  ktl::server::ServerConfig cfg = config_from(args);
  spdlog::set_level(spdlog::level::from_str(args.get("log-level", "info")));
  ktl::server::check_bind_safety(cfg);
  if (!cfg.model_dir.empty() && !fs::is_directory(cfg.model_dir))
    throw std::runtime_error("--model " + cfg.model_dir + " is not a directory");

  // SIGINT/SIGTERM only write to a pipe (async-signal-safe); a thread reads it and drains.
  // (Masking with sigwait is not enough: libraries start threads before this runs.)
  // CLOEXEC: no child program inherits the write end.
  if (pipe(g_signal_pipe) != 0) throw std::runtime_error("pipe() failed");
  for (int fd : g_signal_pipe) fcntl(fd, F_SETFD, FD_CLOEXEC);
  g_server_pid = getpid();
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  ktl::server::HttpServer server(cfg);
  const int port = server.bind();
  std::cout << "ktl serve: listening on http://" << cfg.host << ":" << port
            << (cfg.api_key.empty() ? "" : " (API key required on /v1)") << std::endl;
  if (!cfg.web_root.empty())
    spdlog::info("dashboard: http://{}:{}/ (from {})", cfg.host, port, cfg.web_root);
  if (cfg.model_dir.empty() && !cfg.quickstart)
    spdlog::info("{}",
                 "no model loaded: POST /v1/models/load {\"path\": DIR} or restart with --model");

  std::thread waiter([&server] {
    unsigned char sig = 0;
    while (read(g_signal_pipe[0], &sig, 1) < 0 && errno == EINTR) {
    }
    if (sig) spdlog::info("signal {}: draining and stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    server.shutdown();
  });
  const bool ok = server.serve();
  if (server.phase() != ktl::server::ServerPhase::kDraining &&
      server.phase() != ktl::server::ServerPhase::kStopped) {
    const unsigned char none = 0;  // the listener ended on its own: wake the waiter
    if (write(g_signal_pipe[1], &none, 1) < 0) spdlog::warn("cannot wake the signal thread");
  }
  waiter.join();
  spdlog::info("stopped");
  return ok || server.phase() == ktl::server::ServerPhase::kStopped ? 0 : 1;
}

KTL_COMMAND(ktl::cli::Command{
    "serve",
    "Serve a model over HTTP (OpenAI-compatible), the training-jobs API and the dashboard.",
    ktl::cli::with_speculative_flags({{"model", "checkpoint directory to serve (optional: load one later)", ""},
     {"host", "address to listen on (non-loopback needs --api-key or --insecure)", "127.0.0.1"},
     {"port", "port (0 = any free port)", "8080"},
     {"data-dir", "jobs database, runs and checkpoints", "var"},
     {"api-key", "require 'Authorization: Bearer KEY' on /v1 routes (or $KTL_API_KEY)", ""},
     {"insecure", "allow a non-loopback --host without an API key", "", true},
     {"web-root", "dashboard directory (or $KTL_WEB_ROOT)", "<exe>/../web"},
     {"configs-dir", "model/training YAMLs for --quickstart (or $KTL_CONFIG_DIR)",
      "<exe>/../configs"},
     {"kv-cache-mb", "KV-cache budget (default: --max-num-seqs full contexts, <= 1 GiB)", "auto"},
     {"dtype", "auto | fp32 | bf16 | int8 (auto: int8, the serving default)", "auto"},
     {"max-num-seqs", "sequences batched per engine step", "16"},
     {"threads", "engine threads (0 = all cores)", "0"},
     ktl::cli::no_verify_flag(),
     ktl::cli::engine_device_flag(),
     ktl::cli::kernels_flag(),
     {"max-streams", "generation requests in flight before 429", "64"},
     {"max-queue", "engine queue length before 429", "256"},
     {"max-body-mb", "largest request body before 413", "1"},
     {"max-prompt-tokens", "longest prompt (0 = the model's context - 1)", "0"},
     {"max-tokens-limit", "largest max_tokens a request may ask for", "4096"},
     {"drain-timeout", "seconds to let streams finish on SIGTERM", "30"},
     {"max-connections", "open HTTP connections before 503 (>= --max-streams + 16)",
      "max(256, streams + 16)"},
     {"read-timeout", "seconds one read of a request may wait for bytes (408 after)", "5"},
     {"request-timeout", "seconds to receive a whole request: line, headers, body (408)", "30"},
     {"max-headers", "header lines per request (400 beyond)", "64"},
     {"quickstart", "no model? train a tiny one as a job and serve it when ready", "", true},
     {"quickstart-steps", "training steps of the quickstart job", "300"},
     {"adapter", "LoRA adapter served beside --model, named in a request's \"model\": NAME=DIR",
      "", false, false, true},
     {"allow-path", "another root that job specs and model loads may use", "", false, false, true},
     {"auto-resume", "at start-up, resume jobs interrupted by a crash or a stop", "", true},
     {"max-jobs", "training jobs running at once", "1"},
     {"log-level", "trace | debug | info | warn | error", "info"}}),
    run_serve});

}  // namespace
