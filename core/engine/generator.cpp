#include "core/engine/generator.h"

#include <chrono>
#include <stdexcept>

#include "core/tokenizer/chat_template.h"
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
  const Tokenizer& tok = engine_->tokenizer();
  std::vector<int> ids = {tok.bos_id()};
  for (int id : tok.encode(prompt)) ids.push_back(id);
  return generate_ids(std::move(ids), params, on_text);
}

GenerationResult Generator::chat(const std::vector<ChatMessage>& messages,
                                 const SamplingParams& params, const TokenCallback& on_text) {
  // The aliasing pointer ties the template's tokenizer to this generator's engine.
  std::shared_ptr<const Tokenizer> tok(std::shared_ptr<Engine>(), &engine_->tokenizer());
  const ChatTemplate tmpl = ChatTemplate::require(tok);
  SamplingParams p = params;
  p.stop_token_ids.push_back(tmpl.end_of_turn_id());
  // The reply's first piece carries SentencePiece's dummy-prefix space: not part of the answer.
  bool first = true;
  auto strip = [&](const std::string& piece) {
    if (!on_text) return;
    if (first && !piece.empty()) {
      first = false;
      if (piece[0] == ' ') return on_text(piece.substr(1));
    }
    on_text(piece);
  };
  auto res = generate_ids(tmpl.render(messages, /*add_generation_prompt=*/true).ids, p, strip);
  if (!res.text.empty() && res.text[0] == ' ') res.text.erase(0, 1);
  return res;
}

GenerationResult Generator::generate_ids(std::vector<int> prompt_ids, const SamplingParams& params,
                                         const TokenCallback& on_text) {
  const auto t0 = std::chrono::steady_clock::now();
  GenerationRequest req;
  req.prompt_tokens = std::move(prompt_ids);
  req.sampling = params;
  GenerationResult res;
  res.prompt_token_ids = req.prompt_tokens;
  req.adapter = adapter_;
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
