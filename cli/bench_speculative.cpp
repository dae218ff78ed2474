#include "cli/bench_speculative.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/base/file_util.h"
#include "core/engine/llm_engine.h"
#include "core/scheduling/sampler.h"
#include "core/tokenizer/tokenizer.h"

namespace ktl::cli {

namespace {

using Clock = std::chrono::steady_clock;

struct RunResult {
  std::vector<std::vector<int>> outputs;  // per prompt
  double decode_tokens = 0;               // tokens after each request's first
  double decode_seconds = 0;              // summed per request: first token to last
  double wall_seconds = 0;
  EngineStats before, after;
};

// Every prompt once, `streams` at a time (a finished request makes room for the next).
// Greedy unless `sampling` says otherwise (then the seed is the prompt's index, so two runs of
// one engine repeat; a speculative run draws other numbers than a plain one, so their outputs
// differ while following the same distribution).
RunResult run_prompts(LlmEngine& e, const std::vector<std::vector<int>>& prompts, int streams,
                      int gen_tokens, const SamplingParams& sampling = {}) {
  RunResult out;
  out.outputs.resize(prompts.size());
  out.before = e.stats();
  std::atomic<size_t> next{0};
  std::mutex mu;
  const auto t0 = Clock::now();
  std::vector<std::thread> ts;
  for (int w = 0; w < streams; ++w) {
    ts.emplace_back([&] {
      for (size_t i = next++; i < prompts.size(); i = next++) {
        GenerationRequest r;
        r.prompt_tokens = prompts[i];
        r.sampling = sampling;
        r.sampling.max_tokens = gen_tokens;
        r.sampling.ignore_eos = true;
        r.sampling.seed = i;
        auto h = e.submit(std::move(r));
        GenerationEvent ev;
        std::vector<int> toks;
        Clock::time_point first{}, last{};
        while (h->next(&ev, std::chrono::minutes(10))) {
          if (!ev.token_ids.empty()) {
            last = Clock::now();
            if (toks.empty()) first = last;
          }
          toks.insert(toks.end(), ev.token_ids.begin(), ev.token_ids.end());
          if (ev.finish != FinishReason::kNone) break;
        }
        std::lock_guard<std::mutex> lk(mu);
        if (toks.size() > 1) {
          out.decode_tokens += static_cast<double>(toks.size() - 1);
          out.decode_seconds += std::chrono::duration<double>(last - first).count();
        }
        out.outputs[i] = std::move(toks);
      }
    });
  }
  for (auto& t : ts) t.join();
  out.wall_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  for (int i = 0; i < 1000 && e.stats().running != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  out.after = e.stats();
  return out;
}

std::vector<std::vector<int>> read_prompts(const Args& a, const Tokenizer& tok) {
  const int max_tokens = static_cast<int>(a.get_int("prompt-max-tokens", 64));
  const int limit = static_cast<int>(a.get_int("num-prompts", 100));
  std::vector<std::vector<int>> prompts;
  const std::string text = read_file(a.get("prompts"));
  size_t pos = 0;
  while (pos < text.size() && static_cast<int>(prompts.size()) < limit) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    const std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    // "\n" written as two characters stands for a newline (multi-line prompts on one line).
    std::string body;
    for (size_t i = 0; i < line.size(); ++i) {
      if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == 'n') {
        body += '\n';
        ++i;
      } else {
        body += line[i];
      }
    }
    std::vector<int> ids = tok.encode(body);
    if (static_cast<int>(ids.size()) > max_tokens) ids.resize(max_tokens);
    ids.insert(ids.begin(), tok.bos_id());
    prompts.push_back(std::move(ids));
  }
  if (prompts.empty()) throw UsageError("--prompts " + a.get("prompts") + " has no prompt");
  return prompts;
}

}  // namespace

int run_speculative_bench(const Args& a, const SpeculativeBenchSetup& s) {
  if (!s.tokenizer) throw UsageError("--prompts needs --model DIR (a checkpoint with a tokenizer)");
  const auto prompts = read_prompts(a, *s.tokenizer);
  const int rounds = std::max<int>(1, static_cast<int>(a.get_int("rounds", 1)));
  SamplingParams sampling;
  sampling.temperature = static_cast<float>(a.get_double("temperature", 0.0));
  sampling.top_p = static_cast<float>(a.get_double("top-p", 1.0));
  try {
    Sampler::validate(sampling);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  const bool greedy = sampling.temperature == 0.0f;
  EngineConfig plain_cfg = s.cfg;
  plain_cfg.speculative = {};
  LlmEngine plain(s.model, s.tokenizer, plain_cfg, s.name);
  LlmEngine spec(s.model, s.tokenizer, s.cfg, s.name, nullptr, s.draft);
  // Warm-up: the kernels' first calls, and the first prompts' blocks in both prefix caches.
  run_prompts(plain, {prompts.front()}, 1, 8);
  run_prompts(spec, {prompts.front()}, 1, 8);
  for (int streams : s.streams) {
    double plain_tok = 0, plain_s = 0, spec_tok = 0, spec_s = 0, plain_wall = 0, spec_wall = 0;
    size_t identical = 0, compared = 0;
    uint64_t proposed = 0, accepted = 0, verifications = 0;
    for (int round = 0; round < rounds; ++round) {
      // Interleaved, the order alternating by round: drift on a noisy machine hits both.
      RunResult p, q;
      if (round % 2 == 0) {
        p = run_prompts(plain, prompts, streams, s.gen_tokens, sampling);
        q = run_prompts(spec, prompts, streams, s.gen_tokens, sampling);
      } else {
        q = run_prompts(spec, prompts, streams, s.gen_tokens, sampling);
        p = run_prompts(plain, prompts, streams, s.gen_tokens, sampling);
      }
      plain_tok += p.decode_tokens;
      plain_s += p.decode_seconds;
      plain_wall += p.wall_seconds;
      spec_tok += q.decode_tokens;
      spec_s += q.decode_seconds;
      spec_wall += q.wall_seconds;
      for (size_t i = 0; i < prompts.size(); ++i) {
        identical += p.outputs[i] == q.outputs[i];
        ++compared;
      }
      proposed += q.after.spec_proposed - q.before.spec_proposed;
      accepted += q.after.spec_accepted - q.before.spec_accepted;
      verifications += q.after.spec_verifications - q.before.spec_verifications;
    }
    nlohmann::json j;
    j["model"] = s.name;
    j["draft"] = s.draft ? s.cfg.speculative.draft_model : "prompt-lookup";
    j["speculative"] = to_string(s.cfg.speculative.mode);
    j["k"] = s.cfg.speculative.num_tokens;
    j["prompt_lookup"] = s.cfg.speculative.prompt_lookup;
    j["dtype"] = s.cfg.dtype;
    j["threads"] = s.cfg.num_threads;
    j["streams"] = streams;
    j["prompts"] = prompts.size();
    j["gen_tokens"] = s.gen_tokens;
    j["rounds"] = rounds;
    // Per stream: decode tokens over each request's own decode time. Aggregate: all tokens
    // over the wall time of the run (what a loaded server delivers).
    j["plain_decode_tok_s"] = plain_tok / std::max(plain_s, 1e-9);
    j["spec_decode_tok_s"] = spec_tok / std::max(spec_s, 1e-9);
    j["decode_ratio"] =
        j["spec_decode_tok_s"].get<double>() / j["plain_decode_tok_s"].get<double>();
    j["plain_aggregate_tok_s"] = plain_tok / std::max(plain_wall, 1e-9);
    j["spec_aggregate_tok_s"] = spec_tok / std::max(spec_wall, 1e-9);
    j["aggregate_ratio"] = plain_wall / std::max(spec_wall, 1e-9);
    j["temperature"] = sampling.temperature;
    j["top_p"] = sampling.top_p;
    // Sampled outputs differ by construction (other random numbers): only greedy is compared.
    j["identical_outputs"] = greedy ? nlohmann::json(identical) : nlohmann::json(nullptr);
    j["compared_outputs"] = greedy ? compared : 0;
    j["draft_tokens"] = proposed;
    j["acceptance_rate"] = proposed ? static_cast<double>(accepted) / proposed : 0.0;
    j["mean_accepted_length"] = verifications ? static_cast<double>(accepted) / verifications : 0.0;
    if (a.get_bool("json")) {
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf(
          "%s %s, %d stream(s), %zu prompts x %d tokens, %s, %s (k %d%s): decode %.1f -> %.1f "
          "tok/s per stream (%.2fx), aggregate %.1f -> %.1f tok/s (%.2fx) | identical %s | "
          "acceptance %.1f%%, mean accepted length %.2f\n",
          s.name.c_str(), s.cfg.dtype.c_str(), streams, prompts.size(), s.gen_tokens,
          greedy ? "greedy"
                 : ("temperature " + std::to_string(sampling.temperature).substr(0, 4) +
                    ", top-p " + std::to_string(sampling.top_p).substr(0, 4))
                       .c_str(),
          j["draft"].get<std::string>().c_str(), s.cfg.speculative.num_tokens,
          s.cfg.speculative.mode == SpeculativeMode::kAuto ? " max, auto" : "",
          j["plain_decode_tok_s"].get<double>(), j["spec_decode_tok_s"].get<double>(),
          j["decode_ratio"].get<double>(), j["plain_aggregate_tok_s"].get<double>(),
          j["spec_aggregate_tok_s"].get<double>(), j["aggregate_ratio"].get<double>(),
          greedy ? (std::to_string(identical) + "/" + std::to_string(compared)).c_str()
                 : "n/a (sampled)",
          100.0 * j["acceptance_rate"].get<double>(), j["mean_accepted_length"].get<double>());
    }
    std::fflush(stdout);
  }
  plain.shutdown();
  spec.shutdown();
  return 0;
}

}  // namespace ktl::cli
