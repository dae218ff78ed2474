#include "core/engine/generator.h"

#include <chrono>
#include <stdexcept>

#include "core/tokenizer/tokenizer.h"

namespace ktl {

std::unique_ptr<Generator> Generator::from_pretrained(const std::string& dir,
                                                      const EngineConfig& cfg) {
  return std::make_unique<Generator>(Engine::load(dir, cfg));
}

std::string Generator::generate(const std::string& prompt, int max_length, float temperature,
                                float top_p, const TokenCallback& on_text) {
  SamplingParams p;
  p.max_tokens = max_length;
  p.temperature = temperature;
  p.top_p = top_p;
  return generate(prompt, p, on_text).text;
}

GenerationResult Generator::generate(const std::string& prompt, const SamplingParams& params,
                                     const TokenCallback& on_text) {
  const auto t0 = std::chrono::steady_clock::now();
  const Tokenizer& tok = engine_->tokenizer();
  GenerationRequest req;
  req.prompt_tokens.push_back(tok.bos_id());
  for (int id : tok.encode(prompt)) req.prompt_tokens.push_back(id);
  req.sampling = params;
  GenerationResult res;
  res.prompt_token_ids = req.prompt_tokens;
  auto handle = engine_->submit(std::move(req));
  GenerationEvent ev;
  while (true) {
    if (!handle->next(&ev, std::chrono::milliseconds(1000))) continue;
    res.token_ids.insert(res.token_ids.end(), ev.token_ids.begin(), ev.token_ids.end());
    if (!ev.text.empty()) {
      res.text += ev.text;
      if (on_text) on_text(ev.text);
    }
    if (ev.finish != FinishReason::kNone) break;
  }
  if (ev.finish == FinishReason::kError) throw std::runtime_error("generation failed: " + ev.error);
  res.finish = ev.finish;
  res.prompt_tokens = ev.prompt_tokens;
  res.completion_tokens = ev.completion_tokens;
  res.ttft_ms = ev.ttft_ms;
  res.total_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace ktl
