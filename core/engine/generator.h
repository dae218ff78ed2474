// A simple blocking API over the engine, the C++ counterpart of
//   Generator.from_pretrained("checkpoints/final").generate(prompt, max_length, temperature, top_p)
//
//   auto gen = ktl::Generator::from_pretrained("checkpoints/final");
//   std::string text = gen->generate("오늘 날씨가", 100, 0.8f, 0.95f,
//                                    [](const std::string& piece) { std::cout << piece; });
//
// The prompt is encoded with BOS; the result is the continuation only (complete UTF-8, stop
// strings cut). Thread-safety: generate() may be called from several threads at once; the
// requests are batched together by the engine.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/engine/engine.h"
#include "core/tokenizer/chat_template.h"

namespace ktl {

struct GenerationResult {
  std::string text;
  FinishReason finish = FinishReason::kNone;
  int prompt_tokens = 0;
  int completion_tokens = 0;
  std::vector<int> prompt_token_ids;  // the prompt as the model saw it (BOS first)
  std::vector<int> token_ids;         // the generated tokens, in order
  double ttft_ms = 0;
  double total_ms = 0;
};

class Generator {
 public:
  static std::unique_ptr<Generator> from_pretrained(const std::string& dir,
                                                    const EngineConfig& cfg = {});
  explicit Generator(std::unique_ptr<Engine> engine) : engine_(std::move(engine)) {}

  using TokenCallback = std::function<void(const std::string& text_piece)>;
  std::string generate(const std::string& prompt, int max_length = 128, float temperature = 1.0f,
                       float top_p = 1.0f, const TokenCallback& on_text = {});
  // Full control; throws std::runtime_error when the engine reports an error.
  GenerationResult generate(const std::string& prompt, const SamplingParams& params,
                            const TokenCallback& on_text = {});

  // A chat turn: messages rendered by the checkpoint's chat template (core/tokenizer/
  // chat_template.h) with the assistant prompt; stops at the end-of-turn token. Throws when
  // the checkpoint has no chat markers.
  GenerationResult chat(const std::vector<ChatMessage>& messages, const SamplingParams& params,
                        const TokenCallback& on_text = {});
  // Already-tokenized prompt (BOS included when wanted).
  GenerationResult generate_ids(std::vector<int> prompt_ids, const SamplingParams& params,
                                const TokenCallback& on_text = {});
  Engine& engine() { return *engine_; }
  // Runs every later request under the LoRA adapter `name` (Engine::load_adapter); "" = base.
  void use_adapter(std::string name) { adapter_ = std::move(name); }

 private:
  std::unique_ptr<Engine> engine_;
  std::string adapter_;
};

}  // namespace ktl
