// Configuration of `ktl serve`: one struct, every field with a default. Plain data.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/speculative/speculative_config.h"

namespace ktl::server {

struct ServerConfig {
  std::string host = "127.0.0.1";   // non-loopback needs api_key or insecure
  int port = 8080;                  // 0 = any free port (printed at start)
  std::string api_key;              // "" = no auth; also read from $KTL_API_KEY by the CLI
  bool insecure = false;            // allow a non-loopback host without a key
  size_t max_body_bytes = 1 << 20;  // larger bodies -> 413
  int max_prompt_tokens = 0;        // 0 = the model's context - 1; longer prompts -> 400
  int max_tokens_limit = 4096;      // larger max_tokens -> 400; otherwise clamped to the context
  int max_concurrent_streams = 64;  // generation requests in flight (streamed or not) -> 429
  int max_queue = 256;              // engine queue; submit() beyond it -> 429
  int drain_timeout_s = 30;         // SIGTERM: wait this long for in-flight streams
  int max_connections = 256;        // open HTTP connections; more -> 503 (>= streams + 16)
  int read_timeout_s = 5;           // a read of a request waits this long for bytes -> 408
  int request_timeout_s = 30;       // a whole request (line, headers, body) -> 408
  int max_header_lines = 64;        // header lines per request; more -> 400
  std::string web_root;             // static files (the dashboard); "" = none
  std::string data_dir = "var";     // jobs database, runs, checkpoints
  std::vector<std::string> allowed_roots;  // besides data_dir, where models may be loaded from
  std::string model_dir;                   // loaded at start when set
  // LoRA adapters {name, PEFT dir} loaded into the engine of model_dir whenever it is loaded
  // (--adapter NAME=DIR); one that fails to load fails that model load.
  std::vector<std::pair<std::string, std::string>> adapters;
  int kv_cache_mb = 512;                   // engine KV pool
  std::string dtype = "auto";              // auto (int8) | fp32 | bf16 | int8
  std::string device = "auto";             // auto | cpu | cuda | mps
  int max_num_seqs = 16;                   // engine batch
  int num_threads = 0;                     // engine threads; 0 = all cores
  bool verify_checksums = true;            // sha256 of every checkpoint file before a load
  SpeculativeConfig speculative;           // speculative decoding (--speculative, --draft-model)
  bool quickstart = false;                 // train a tiny model when none exists (make run)
  int quickstart_steps = 300;              // training steps of the quickstart job
  std::string configs_dir = "configs";     // model_tiny.yaml and training.yaml for quickstart
  int max_jobs = 1;                        // concurrent training jobs
  bool auto_resume_jobs = false;           // resume jobs a crash left interrupted, at start-up
  std::string ktl_binary;                  // for job child processes; "" = /proc/self/exe
};

}  // namespace ktl::server
