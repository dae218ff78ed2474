#include "core/train/evaluation.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "core/tokenizer/tokenizer.h"
#include "core/train/data_loader.h"

namespace ktl {
namespace {

// Restores train/eval mode on scope exit.
struct EvalModeScope {
  explicit EvalModeScope(TransformerImpl& m) : model(m), was_training(m.is_training()) { m.eval(); }
  ~EvalModeScope() { model.train(was_training); }
  TransformerImpl& model;
  bool was_training;
};

}  // namespace

EvalResult evaluate(TransformerImpl& model, const EvalBatches& batches, int64_t chars,
                    Precision precision, const torch::Device& device) {
  EvalModeScope mode(model);
  torch::NoGradGuard no_grad;
  double nats = 0;
  int64_t tokens = 0;
  for (int64_t i = 0; i < batches.num_batches(); ++i) {
    auto batch = batches.batch(i).to(device);  // [b, T+1]
    const auto T = batch.size(1) - 1;
    auto inputs = batch.narrow(1, 0, T), targets = batch.narrow(1, 1, T);  // [b, T]
    torch::Tensor logits;
    {
      AutocastScope autocast(precision, device);
      logits = model.forward(inputs);  // [b, T, V]
    }
    auto loss = torch::nn::functional::cross_entropy(
        logits.to(torch::kFloat32).reshape({-1, logits.size(-1)}), targets.reshape({-1}),
        torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    nats += loss.item<double>();
    tokens += targets.numel();
  }
  EvalResult r;
  r.tokens = tokens;
  r.chars = chars;
  r.loss = tokens > 0 ? nats / double(tokens) : 0.0;
  r.ppl = std::exp(r.loss);
  r.bpc = chars > 0 ? nats / double(chars) / std::log(2.0) : 0.0;
  return r;
}

const std::vector<std::string>& sample_prompts() {
  static const std::vector<std::string> p = {"오늘 날씨가", "한국의 수도는", "옛날 옛적에",
                                             "인공지능은"};
  return p;
}

std::string generate_continuation(TransformerImpl& model, const Tokenizer& tok,
                                  const std::string& prompt, int max_new_tokens, double temperature,
                                  int top_k, uint64_t seed, Precision precision,
                                  const torch::Device& device) {
  EvalModeScope mode(model);
  torch::NoGradGuard no_grad;
  std::vector<int64_t> ids = {tok.eos_id()};
  for (int id : tok.encode(prompt)) ids.push_back(id);
  const size_t prompt_len = ids.size();
  auto gen = at::detail::createCPUGenerator(seed);
  const int64_t ctx = model.config().max_seq_length;
  for (int i = 0; i < max_new_tokens; ++i) {
    const int64_t start = std::max<int64_t>(0, int64_t(ids.size()) - ctx);
    auto input = torch::tensor(std::vector<int64_t>(ids.begin() + start, ids.end()), torch::kLong)
                     .unsqueeze(0)
                     .to(device);  // [1, t]
    torch::Tensor logits;
    {
      AutocastScope autocast(precision, device);
      logits = model.forward(input);  // [1, t, V]
    }
    auto last = logits[0][-1].to(torch::kFloat32).cpu();  // [V]
    int64_t next;
    if (temperature <= 0) {
      next = last.argmax().item<int64_t>();
    } else {
      last = last / temperature;
      if (top_k > 0 && top_k < last.size(0)) {
        auto kth = std::get<0>(last.topk(top_k)).index({top_k - 1});
        last = last.masked_fill(last < kth, -std::numeric_limits<float>::infinity());
      }
      auto probs = torch::softmax(last, 0);
      next = torch::multinomial(probs, 1, false, gen).item<int64_t>();
    }
    if (next == tok.eos_id()) break;
    ids.push_back(next);
  }
  // Raw token bytes keep the space between prompt and continuation that decode() would strip.
  std::string text;
  for (size_t i = prompt_len; i < ids.size(); ++i) text += tok.token_bytes(int(ids[i]));
  return text;
}

}  // namespace ktl
