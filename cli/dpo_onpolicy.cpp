#include "cli/dpo_onpolicy.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

#include "core/engine/generator.h"
#include "core/tokenizer/chat_template.h"

namespace ktl::cli {

namespace {

constexpr int kRetries = 3;

std::string trimmed(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\r\n") - a + 1);
}

enum class Outcome { kSampled, kResampled, kKept };

// The template renders `reply` after the prompt (it refuses a reply holding a chat marker, which
// a model can sample as text).
bool renders(const ChatTemplate& tmpl, std::vector<ChatMessage> msgs, const std::string& reply) {
  msgs.push_back({"assistant", reply});
  try {
    tmpl.render(msgs, false);
    return true;
  } catch (const std::invalid_argument&) {
    return false;
  }
}

// One pair: the first draw that is not empty, not the chosen answer and renders.
Outcome sample_one(Generator& gen, const ChatTemplate& tmpl, PreferencePair& pair, size_t i,
                   const OnPolicySampling& o, int64_t* tokens) {
  const std::string chosen = trimmed(pair.chosen);
  for (int attempt = 0; attempt <= kRetries; ++attempt) {
    SamplingParams p;
    p.max_tokens = o.max_tokens;
    p.temperature = o.temperature;
    p.top_p = o.top_p;
    p.seed = o.seed + 4 * uint64_t(i) + uint64_t(attempt);
    GenerationResult r;
    try {
      r = gen.chat(pair.prompt, p);
    } catch (const std::invalid_argument&) {
      return Outcome::kKept;  // the prompt alone does not fit the model's context
    }
    const std::string text = trimmed(r.text);
    if (text.empty() || text == chosen || !renders(tmpl, pair.prompt, text)) continue;
    pair.rejected = text;
    *tokens += r.completion_tokens;
    return attempt == 0 ? Outcome::kSampled : Outcome::kResampled;
  }
  return Outcome::kKept;
}

}  // namespace

OnPolicyReport sample_rejected_from_model(const std::string& model_dir,
                                          std::vector<PreferencePair>& pairs,
                                          const OnPolicySampling& o,
                                          const std::function<void(const std::string&)>& log) {
  const auto t0 = std::chrono::steady_clock::now();
  EngineConfig ec;
  ec.device = o.device;
  ec.num_threads = o.num_threads;
  ec.max_num_seqs = std::max(1, o.parallel);
  ec.max_queue = std::max(ec.max_queue, ec.max_num_seqs);
  auto gen = Generator::from_pretrained(model_dir, ec);
  // The aliasing pointer ties the template's tokenizer to the generator's engine.
  std::optional<ChatTemplate> tmpl = ChatTemplate::for_tokenizer(
      std::shared_ptr<const Tokenizer>(std::shared_ptr<Generator>(), &gen->engine().tokenizer()));
  if (!tmpl)
    throw std::runtime_error("--rejected-from-model: " + model_dir +
                             " has no chat template (sample from an SFT checkpoint)");
  OnPolicyReport rep;
  std::mutex mu;
  std::exception_ptr error;
  std::atomic<size_t> next{0};
  size_t done = 0, next_report = pairs.size() / 10 + 1;
  auto worker = [&] {
    int64_t tokens = 0;
    for (size_t i; (i = next.fetch_add(1)) < pairs.size();) {
      Outcome out = Outcome::kKept;
      try {
        out = sample_one(*gen, *tmpl, pairs[i], i, o, &tokens);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!error) error = std::current_exception();
        next.store(pairs.size());
        return;
      }
      std::lock_guard<std::mutex> lock(mu);
      rep.sampled += out != Outcome::kKept;
      rep.resampled += out == Outcome::kResampled;
      rep.kept_original += out == Outcome::kKept;
      if (++done >= next_report || done == pairs.size()) {
        next_report = done + pairs.size() / 10 + 1;
        log("rejected from model: " + std::to_string(done) + "/" + std::to_string(pairs.size()) +
            " pairs");
      }
    }
    std::lock_guard<std::mutex> lock(mu);
    rep.tokens += tokens;
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < ec.max_num_seqs; ++t) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  gen->engine().shutdown();
  if (error) std::rethrow_exception(error);
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

}  // namespace ktl::cli
