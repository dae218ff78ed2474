// ktl bench: inference throughput of the engine (prefill and decode tokens/s, TTFT, per-token
// latency, peak RSS) for 1 or N concurrent streams, fp32 / bf16 / int8. Random prompt tokens:
// speed does not depend on the text, and distinct prompts keep the prefix cache out of it.
// --adapters K: every stream count runs twice, on the base alone and with its streams spread
// over K random LoRA adapters (round-robin), and the adapters' load time is printed.
#include <stdlib.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "cli/bench_profile.h"
#include "cli/bench_speculative.h"
#include "cli/command.h"
#include "cli/engine_device.h"
#include "cli/kernels_flag.h"
#include "cli/speculative_flags.h"
#include "core/adapters/lora_adapter.h"
#include "core/base/blas_tuning.h"
#include "core/base/cpu_features.h"
#include "core/base/file_util.h"
#include "core/engine/draft_runner.h"
#include "core/engine/engine_checkpoint.h"
#include "core/engine/llm_engine.h"
#include "core/engine/packed_linear.h"
#include "core/grammar/compiled_grammar.h"
#include "core/grammar/json_schema_compiler.h"
#include "core/kernels/int8_gemm.h"
#include "core/model/model.h"
#include "core/model/model_config.h"
#include "core/tokenizer/tokenizer.h"
#include "server/structured_output.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using ktl::cli::Args;
using ktl::cli::UsageError;

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;
}

double ms_since(Clock::time_point t0, Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(t - t0).count();
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

struct StreamTrace {
  std::vector<Clock::time_point> token_times;
  double ttft_ms = 0;
};

std::vector<int> random_prompt(int n, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int> v(n);
  v[0] = 2;  // BOS
  for (int i = 1; i < n; ++i) v[i] = 4 + static_cast<int>(rng() % uint64_t(vocab - 4));
  return v;
}

// How every stream samples: greedy by default; --json-schema samples at temperature 1 (greedy on
// a random model loops in whitespace) with the schema's grammar on the constrained runs.
struct StreamSampling {
  float temperature = 0;
  std::shared_ptr<const ktl::grammar::CompiledGrammar> grammar;
};

// Runs `streams` concurrent requests; one consumer thread per stream records token times.
// With `adapters`, stream s runs on adapters[s % K].
std::vector<StreamTrace> run_streams(ktl::Engine& e, int streams, int prompt_tokens, int gen_tokens,
                                     int vocab, uint64_t seed, const StreamSampling& how = {},
                                     const std::vector<std::string>& adapters = {}) {
  std::vector<StreamTrace> traces(streams);
  std::vector<std::shared_ptr<ktl::RequestHandle>> hs;
  for (int s = 0; s < streams; ++s) {
    ktl::GenerationRequest r;
    r.prompt_tokens = random_prompt(prompt_tokens, vocab, seed + s);
    r.sampling.temperature = how.temperature;
    r.sampling.max_tokens = gen_tokens;
    r.sampling.ignore_eos = true;
    r.sampling.seed = seed + s;
    r.grammar = how.grammar;
    if (!adapters.empty()) r.adapter = adapters[s % adapters.size()];
    hs.push_back(e.submit(std::move(r)));
  }
  std::vector<std::thread> ts;
  for (int s = 0; s < streams; ++s) {
    ts.emplace_back([&, s] {
      ktl::GenerationEvent ev;
      while (true) {
        if (!hs[s]->next(&ev, std::chrono::milliseconds(600000))) return;
        const auto now = Clock::now();
        for (size_t i = 0; i < ev.token_ids.size(); ++i) traces[s].token_times.push_back(now);
        if (ev.finish != ktl::FinishReason::kNone) {
          traces[s].ttft_ms = ev.ttft_ms;
          if (ev.finish == ktl::FinishReason::kError)
            std::fprintf(stderr, "error: %s\n", ev.error.c_str());
          return;
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  return traces;
}

// `profiled`: the engine, profiling on (--profile); its decode steps of the streams' run go
// into "profile".
nlohmann::json bench_once(ktl::Engine& e, int streams, int P, int G, int vocab,
                          const StreamSampling& how, const std::vector<std::string>& adapters = {},
                          ktl::LlmEngine* profiled = nullptr) {
  static uint64_t seed = 1000;
  // Prefill speed: one request, one new token; the better of two (the first touches this
  // length's activation buffers, as llama-bench's warm-up run does). Different prompts: no
  // prefix-cache hit.
  double prefill_ms = 1e300;
  for (int i = 0; i < 2; ++i)
    prefill_ms = std::min(prefill_ms, run_streams(e, 1, P, 1, vocab, seed += 100)[0].ttft_ms);
  const double prefill_tok_s = P / (prefill_ms / 1000.0);
  if (profiled) profiled->decode_step_profile(/*reset=*/true);
  const auto t0 = Clock::now();
  auto traces = run_streams(e, streams, P, G, vocab, seed += 100, how, adapters);
  const auto t_end = Clock::now();
  std::vector<double> itl, ttft, per_stream;
  Clock::time_point first_decode = t_end, last_token = t0;
  size_t decode_tokens = 0;
  for (const auto& t : traces) {
    ttft.push_back(t.ttft_ms);
    if (t.token_times.size() < 2) continue;
    for (size_t i = 1; i < t.token_times.size(); ++i)
      itl.push_back(ms_since(t.token_times[i - 1], t.token_times[i]));
    const double span = ms_since(t.token_times.front(), t.token_times.back()) / 1000.0;
    per_stream.push_back((t.token_times.size() - 1) / std::max(span, 1e-9));
    first_decode = std::min(first_decode, t.token_times.front());
    last_token = std::max(last_token, t.token_times.back());
    decode_tokens += t.token_times.size() - 1;
  }
  const double agg_span = ms_since(first_decode, last_token) / 1000.0;
  double mean_stream = 0;
  for (double v : per_stream) mean_stream += v / per_stream.size();
  nlohmann::json j;
  j["streams"] = streams;
  j["prompt_tokens"] = P;
  j["gen_tokens"] = G;
  j["prefill_tok_s"] = prefill_tok_s;
  j["decode_tok_s"] = mean_stream;
  j["aggregate_tok_s"] = decode_tokens / std::max(agg_span, 1e-9);
  j["total_tok_s"] = double(streams) * G / (ms_since(t0, t_end) / 1000.0);
  j["ttft_ms_p50"] = percentile(ttft, 0.5);
  j["ttft_ms_max"] = percentile(ttft, 1.0);
  j["itl_ms_p50"] = percentile(itl, 0.5);
  j["itl_ms_p99"] = percentile(itl, 0.99);
  j["peak_rss_mb"] = peak_rss_mb();
  if (profiled) {
    // The last tokens leave inside the last step, which is summed when it ends: wait for it.
    for (int i = 0; i < 1000 && e.stats().running != 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    j["profile"] = ktl::cli::bench_profile_json(profiled->decode_step_profile());
  }
  return j;
}

// What the figures were measured with: CPU features (under the kernel ceiling), the kernels,
// OpenBLAS's kernel set.
void add_machine(nlohmann::json& j) {
  j["kernels"] = ktl::cli::kernels_json();
  const ktl::CpuFeatures cpu = ktl::detect_cpu_features();
  nlohmann::json flags = nlohmann::json::object();
  for (const auto& [name, on] : ktl::cpu_feature_flags(cpu)) flags[name] = on;
  j["cpu_features"] = flags;
  j["cpu"] =
      cpu.vendor + " family " + std::to_string(cpu.family) + " model " + std::to_string(cpu.model);
  const ktl::BlasStatus blas = ktl::blas_status();
  j["blas_core"] = blas.core;
  j["blas_core_chosen_by_ktl"] = blas.chosen_by_ktl;
  j["blas_note"] = blas.note;
}

std::vector<int> parse_streams(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      out.push_back(std::stoi(item));
    } catch (...) {
      throw UsageError("--streams must be a number or a list like 1,4,8,16");
    }
    if (out.back() <= 0) throw UsageError("--streams must be positive");
  }
  return out;
}

// Perplexity of `m` on `ids`, in windows of the model's context (KV pool sized for one window).
double perplexity(const ktl::EngineModel& m, const std::vector<int>& ids) {
  const int T = m.config().max_seq_length, bs = 16;
  ktl::PagedKvPool pool(m.config().num_layers, T / bs + 1, bs, m.config().num_kv_heads,
                        m.config().head_dim());
  double nll = 0;
  int64_t n = 0;
  for (size_t begin = 0; begin + 1 < ids.size(); begin += T) {
    const int len = static_cast<int>(std::min<size_t>(T, ids.size() - begin));
    if (len < 2) break;
    std::vector<int> chunk(ids.begin() + begin, ids.begin() + begin + len), rows(len);
    ktl::AttnSeq seq{0, len, 0, {}};
    for (int b = 0; b <= T / bs; ++b) seq.block_table.push_back(b);
    for (int i = 0; i < len; ++i) rows[i] = i;
    auto logits = m.forward(chunk, {seq}, pool, rows);  // [len, V]
    auto logp = torch::log_softmax(logits.narrow(0, 0, len - 1), 1);
    std::vector<int64_t> next(chunk.begin() + 1, chunk.end());
    auto tgt = torch::tensor(next, torch::kLong).unsqueeze(1);
    nll -= logp.gather(1, tgt).sum().item<double>();
    n += len - 1;
  }
  return std::exp(nll / std::max<int64_t>(n, 1));
}

int run_eval(const Args& a, ktl::WeightDtype dtype) {
  if (!a.has("model")) throw UsageError("--eval-text needs --model DIR");
  const std::string text = ktl::read_file(a.get("eval-text"));
  auto fp32 = ktl::load_engine_model(a.get("model"), ktl::WeightDtype::kFp32);
  auto ids = fp32.tokenizer->encode(text);
  const size_t max_tokens = static_cast<size_t>(a.get_int("eval-tokens", 8192));
  if (ids.size() > max_tokens) ids.resize(max_tokens);
  ids.insert(ids.begin(), fp32.tokenizer->bos_id());
  c10::InferenceMode guard;
  nlohmann::json j;
  j["eval_tokens"] = ids.size();
  j["ppl_fp32"] = perplexity(*fp32.model, ids);
  auto other = ktl::load_engine_model(a.get("model"), dtype);
  j["dtype"] = ktl::to_string(dtype);
  j["ppl"] = perplexity(*other.model, ids);
  j["ppl_change_pct"] = 100.0 * (j["ppl"].get<double>() / j["ppl_fp32"].get<double>() - 1.0);
  j["model_bytes"] = other.bytes_on_disk;
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

// A directory under the system temp dir, removed with everything in it on destruction.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag) {
    std::string tmpl = (fs::temp_directory_path() / (tag + "-XXXXXX")).string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("cannot create a temp directory");
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// K random adapters (rank r, every projection) written as PEFT directories under `dir` and
// loaded into `e` (files read and converted as a served adapter is); returns their names and
// puts each one's load time into `load_ms`.
std::vector<std::string> load_random_adapters(ktl::Engine& e, const ktl::ModelConfig& mc, int K,
                                              int r, const fs::path& dir,
                                              std::vector<double>* load_ms) {
  std::vector<std::string> names;
  for (int k = 0; k < K; ++k) {
    ktl::LoraAdapter a;
    a.config.rank = r;
    a.config.alpha = 2.0 * r;
    a.layers.resize(mc.num_layers);
    torch::manual_seed(1000 + k);
    for (auto& layer : a.layers) {
      for (auto t : ktl::kAllLoraTargets) {
        const auto [out, in] = ktl::lora_target_shape(mc, t);
        layer[static_cast<int>(t)] = {torch::randn({r, in}) / std::sqrt(double(in)),
                                      torch::randn({out, r}) * 0.01};
      }
    }
    const std::string name = "bench-" + std::to_string(k);
    ktl::save_peft_adapter((dir / name).string(), a);
    load_ms->push_back(e.load_adapter(name, (dir / name).string()).load_ms);
    names.push_back(name);
  }
  return names;
}

int run_bench(const Args& a) {
  ktl::cli::check_engine_device(a);
  ktl::cli::check_kernels_flag(a);
  const int P = static_cast<int>(a.get_int("prompt-tokens", 128));
  const int G = static_cast<int>(a.get_int("gen-tokens", 128));
  if (P < 2 || G < 2) throw UsageError("--prompt-tokens and --gen-tokens must be >= 2");
  const auto streams = parse_streams(a.get("streams", "1"));
  ktl::EngineConfig cfg;
  cfg.dtype = a.get("dtype", "auto");
  cfg.device = a.get("device", "auto");
  cfg.torch_ops = a.get_bool("torch-ops");
  cfg.num_threads = static_cast<int>(a.get_int("threads", 2));
  cfg.kv_cache_mb = static_cast<int>(a.get_int("kv-cache-mb", 0));  // 0: sized by the engine
  const int max_streams = *std::max_element(streams.begin(), streams.end());
  cfg.max_num_seqs = std::max(cfg.max_num_seqs, max_streams);
  cfg.max_batched_tokens = static_cast<int>(a.get_int("max-batched-tokens", 512));
  ktl::WeightDtype dtype;
  try {
    dtype = ktl::engine_dtype_for(cfg.dtype);  // auto: what serving runs (int8)
    cfg.dtype = ktl::to_string(dtype);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  if (a.has("eval-text")) return run_eval(a, dtype);
  std::shared_ptr<ktl::EngineModel> model;
  std::shared_ptr<ktl::Tokenizer> tok;
  int64_t model_bytes = 0;
  std::string name;
  if (a.get_bool("random-init")) {
    if (!a.has("model-config")) throw UsageError("--random-init needs --model-config FILE.yaml");
    auto mc = ktl::load_model_config_yaml(a.get("model-config"));
    // Drawn one tensor at a time: no fp32 training module next to an int8/bf16 engine.
    model = std::make_shared<ktl::EngineModel>(ktl::EngineModel::random_init(mc, dtype, 1));
    model_bytes = model->weight_bytes();
    name = "random-init:" + fs::path(a.get("model-config")).stem().string();
  } else {
    if (!a.has("model")) throw UsageError("give --model DIR, or --random-init --model-config FILE");
    auto m = ktl::load_engine_model(a.get("model"), dtype);
    model = m.model;
    tok = m.tokenizer;
    model_bytes = m.bytes_on_disk;
    name = a.get("model");
  }
  if (!a.has("prompts") && P + G > model->config().max_seq_length)
    throw UsageError("--prompt-tokens + --gen-tokens exceed the context (" +
                     std::to_string(model->config().max_seq_length) + ")");
  ktl::place_engine_model(*model, cfg);  // off the CPU: weights moved there, torch ops
  const std::string device = model->device().str();
  cfg.speculative = ktl::cli::speculative_from_args(a);
  std::shared_ptr<ktl::EngineModel> draft;
  if (!cfg.speculative.draft_model.empty()) {
    if (!a.has("model")) throw UsageError("--draft-model needs --model DIR");
    draft = ktl::load_draft_model(cfg.speculative.draft_model, a.get("model"), cfg);
  }
  if (a.has("prompts")) {  // plain against speculative decoding on real prompts
    if (!cfg.speculative.enabled())
      throw UsageError("--prompts compares speculative decoding: give --draft-model or "
                       "--prompt-lookup");
    return ktl::cli::run_speculative_bench(a, {model, draft, tok, cfg, name, streams, G});
  }
  ktl::LlmEngine engine(model, tok, cfg, name, nullptr, draft);
  StreamSampling sampling;  // unconstrained
  std::shared_ptr<const ktl::grammar::CompiledGrammar> grammar;
  double compile_ms = 0;
  if (a.has("json-schema")) {
    if (!tok) throw UsageError("--json-schema needs --model DIR (a checkpoint with a tokenizer)");
    const auto t0 = Clock::now();
    try {
      grammar = ktl::grammar::CompiledGrammar::compile(
          ktl::grammar::json_schema_to_gbnf(ktl::read_file(a.get("json-schema"))),
          ktl::server::token_vocab_for(*tok));
    } catch (const std::invalid_argument& e) {
      throw UsageError(std::string("--json-schema: ") + e.what());
    }
    compile_ms = ms_since(t0, Clock::now());
    sampling.temperature = 1.0f;
  }
  run_streams(engine, 1, 16, 4, model->config().vocab_size, 1);  // warm-up
  const bool profile = a.get_bool("profile");
  engine.set_step_profiling(profile);  // off: the engine takes no timings
  const int num_adapters = static_cast<int>(a.get_int("adapters", 0));
  if (num_adapters < 0) throw UsageError("--adapters must be >= 0");
  if (num_adapters > 0 && grammar) throw UsageError("--adapters and --json-schema: one at a time");
  std::vector<std::string> adapter_names;
  std::vector<double> adapter_load_ms;
  std::optional<ScratchDir> adapter_dir;
  if (num_adapters > 0) {
    const int rank = static_cast<int>(a.get_int("adapter-rank", 16));
    if (rank < 1) throw UsageError("--adapter-rank must be >= 1");
    adapter_dir.emplace("ktl-bench-adapters");
    adapter_names = load_random_adapters(engine, model->config(), num_adapters, rank,
                                         adapter_dir->path(), &adapter_load_ms);
    run_streams(engine, 1, 16, 4, model->config().vocab_size, 2, {}, adapter_names);  // warm-up
  }
  // With --json-schema (--adapters) every stream count runs twice: unconstrained (on the base
  // alone) then constrained (spread over the adapters).
  std::vector<std::pair<int, bool>> runs;
  for (int n : streams) {
    runs.emplace_back(n, false);
    if (grammar || num_adapters > 0) runs.emplace_back(n, true);
  }
  double base_agg = 0;
  for (auto [n, constrained] : runs) {
    const bool with_adapters = constrained && num_adapters > 0;
    sampling.grammar = constrained ? grammar : nullptr;
    nlohmann::json j = bench_once(engine, n, P, G, model->config().vocab_size, sampling,
                                  with_adapters ? adapter_names : std::vector<std::string>{},
                                  profile ? &engine : nullptr);
    if (!constrained) base_agg = j["aggregate_tok_s"].get<double>();
    if (num_adapters > 0) {
      j["adapters"] = with_adapters ? num_adapters : 0;
      if (with_adapters) {
        j["adapter_rank"] = a.get_int("adapter-rank", 16);
        j["adapter_load_ms_mean"] =
            std::accumulate(adapter_load_ms.begin(), adapter_load_ms.end(), 0.0) /
            adapter_load_ms.size();
        j["adapter_load_ms_max"] =
            *std::max_element(adapter_load_ms.begin(), adapter_load_ms.end());
        j["aggregate_vs_base"] = j["aggregate_tok_s"].get<double>() / std::max(base_agg, 1e-9);
      }
    }
    j["json_schema"] = constrained && grammar != nullptr;
    if (constrained) j["grammar_compile_ms"] = compile_ms;
    j["model"] = name;
    j["dtype"] = cfg.dtype;
    j["device"] = device;
    j["torch_ops"] = model->torch_ops();
    j["compute_dtype"] = ktl::to_string(model->dtype());  // int8 runs as bf16 off the CPU
    j["threads"] = cfg.num_threads;
    j["kernel_threads"] = engine.kernel_threads();  // 1 would mean ktl's kernels run serially
    j["model_bytes"] = model_bytes;
    j["weight_bytes_in_memory"] = model->weight_bytes();
    j["kv_bytes"] = engine.kv_bytes();
    add_machine(j);
    if (dtype == ktl::WeightDtype::kInt8) {
      // Decode-sized int8 batches: integer kernels picked from cpuid, or the weight-only path.
      j["int8_kernels"] = ktl::int8_decode_activations() == ktl::Int8Activations::kInt8
                              ? ktl::to_string(ktl::best_int8_kernels())
                              : "weight-only (fp32 activations)";
      j["int8_prefill"] = ktl::int8_prefill_path();
    }
    if (a.get_bool("json")) {
      std::printf("%s\n", j.dump().c_str());
    } else {
      if (with_adapters)
        std::printf("[%d adapters, r = %lld, load %.1f ms mean, %.1f ms max; %.1f%% of the base's "
                    "aggregate] ",
                    num_adapters, static_cast<long long>(a.get_int("adapter-rank", 16)),
                    j["adapter_load_ms_mean"].get<double>(), j["adapter_load_ms_max"].get<double>(),
                    100.0 * j["aggregate_vs_base"].get<double>());
      std::printf(
          "%s%s %s on %s, %d stream(s), prompt %d, gen %d: prefill %.0f tok/s | decode %.1f tok/s "
          "per "
          "stream, %.1f tok/s aggregate | TTFT p50 %.0f ms | ITL p50 %.1f ms p99 %.1f ms | peak "
          "RSS %.0f MB | weights %.1f MB | KV %.1f MB\n",
          constrained && grammar ? "[json-schema] " : "", name.c_str(), cfg.dtype.c_str(), device.c_str(), n,
          P, G, j["prefill_tok_s"].get<double>(), j["decode_tok_s"].get<double>(),
          j["aggregate_tok_s"].get<double>(), j["ttft_ms_p50"].get<double>(),
          j["itl_ms_p50"].get<double>(), j["itl_ms_p99"].get<double>(),
          j["peak_rss_mb"].get<double>(), model->weight_bytes() / 1048576.0,
          engine.kv_bytes() / 1048576.0);
      if (profile)
        std::printf("%s", ktl::cli::bench_profile_table(engine.decode_step_profile()).c_str());
    }
    std::fflush(stdout);
  }
  engine.shutdown();
  return 0;
}

KTL_COMMAND(ktl::cli::Command{
    "bench",
    "Benchmark inference: prefill/decode tok/s, TTFT, per-token latency, peak RSS.",
    ktl::cli::with_speculative_flags({{"model", "checkpoint directory (or --random-init)", ""},
     {"random-init", "benchmark an untrained model of --model-config's shape", "", true},
     {"model-config", "model YAML for --random-init (e.g. configs/model_small.yaml)", ""},
     {"streams", "concurrent streams, or a list: 1,4,8,16", "1"},
     {"prompt-tokens", "prompt length", "128"},
     {"gen-tokens", "tokens generated per stream", "128"},
     {"dtype", "auto | fp32 | bf16 | int8 (auto: int8, the serving default)", "auto"},
     {"threads", "CPU threads", "2"},
     ktl::cli::engine_device_flag(),
     ktl::cli::kernels_flag(),
     {"torch-ops", "on the CPU too, run the device path (torch ops) instead of the kernels", "",
      true},
     {"kv-cache-mb", "KV cache budget (default: the streams' full contexts, <= 1 GiB)", "auto"},
     {"max-batched-tokens", "prefill chunk budget per step", "512"},
     {"json", "one JSON object per stream count", "", true},
     {"profile", "where a decode step's time goes (matmuls, attention, sampling, ...)", "", true},
     {"adapters", "also run every stream count spread over K random LoRA adapters", "0"},
     {"adapter-rank", "--adapters: their rank (every projection)", "16"},
     {"json-schema", "also run every stream count with this JSON schema on every stream", ""},
     {"eval-text", "instead: perplexity of --dtype vs fp32 on this UTF-8 text file", ""},
     {"eval-tokens", "with --eval-text: tokens to evaluate", "8192"},
     {"prompts", "instead: plain vs speculative decoding (greedy) on these prompts, one per line",
      ""},
     {"num-prompts", "with --prompts: how many lines to use", "100"},
     {"prompt-max-tokens", "with --prompts: cut each prompt to this many tokens", "64"},
     {"rounds", "with --prompts: interleaved rounds (plain and speculative alternate)", "1"},
     {"temperature", "with --prompts: sample at this temperature (0: greedy, outputs compared)", "0"},
     {"top-p", "with --prompts and --temperature: nucleus", "1"}}),
    run_bench});

}  // namespace
