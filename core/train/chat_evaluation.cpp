#include "core/train/chat_evaluation.h"

#include <torch/torch.h>

#include <cmath>

#include "core/data/chat_metrics.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer.h"
#include "core/train/checkpointed_forward.h"

namespace ktl {
namespace {

struct EvalModeScope {
  explicit EvalModeScope(TransformerImpl& m) : model(m), was_training(m.is_training()) { m.eval(); }
  ~EvalModeScope() { model.train(was_training); }
  TransformerImpl& model;
  bool was_training;
};

}  // namespace

torch::Tensor sft_loss_sum(TransformerImpl& model, const SftBatch& b, bool packed,
                           int64_t* n_targets, const torch::Device& device,
                           bool checkpoint_blocks) {
  auto inputs = b.inputs.to(device), targets = b.targets.to(device);  // [B, T]
  auto h = training_hidden(model, inputs, packed ? b.segments.to(device) : torch::Tensor(),
                           checkpoint_blocks);  // [B, T, D]
  if (n_targets) *n_targets = (b.targets != kIgnoreIndex).sum().item<int64_t>();
  return -target_logprobs(model, h, targets, kIgnoreIndex).sum();
}

EvalResult evaluate_sft(TransformerImpl& model, const SftBatches& batches, int batch_size,
                        Precision precision, const torch::Device& device) {
  EvalModeScope mode(model);
  torch::NoGradGuard no_grad;
  double nats = 0;
  int64_t tokens = 0;
  for (int64_t first = 0; first < batches.num_rows(); first += batch_size) {
    int64_t n = 0;
    torch::Tensor sum;
    {
      AutocastScope autocast(precision, device);
      sum = sft_loss_sum(model, batches.range(first, batch_size), batches.packed(), &n, device);
    }
    nats += sum.item<double>();
    tokens += n;
  }
  EvalResult r;
  r.tokens = tokens;
  r.loss = tokens > 0 ? nats / double(tokens) : 0.0;
  r.ppl = std::exp(r.loss);
  return r;
}

std::string generate_chat_reply(TransformerImpl& model, const ChatTemplate& tmpl,
                                const Tokenizer& tok, const std::vector<ChatMessage>& messages,
                                int max_new_tokens, Precision precision,
                                const torch::Device& device) {
  EvalModeScope mode(model);
  torch::NoGradGuard no_grad;
  const RenderedChat prompt = tmpl.render(messages, true);
  std::vector<int64_t> ids(prompt.ids.begin(), prompt.ids.end());
  std::vector<int> reply;
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
    const int64_t next = logits[0][-1].to(torch::kFloat32).argmax().item<int64_t>();
    if (next == tmpl.end_of_turn_id() || next == tok.eos_id()) break;
    ids.push_back(next);
    reply.push_back(int(next));
  }
  return tok.decode(reply);
}

ChatEvalResult evaluate_chat(TransformerImpl& model, const ChatTemplate& tmpl, const Tokenizer& tok,
                             const std::vector<ChatConversation>& convs, int seq_len,
                             int batch_size, int max_answers, int max_new_tokens,
                             Precision precision, const torch::Device& device) {
  ChatEvalResult r;
  const auto chats = tokenize_conversations(tmpl, convs, int64_t(seq_len) + 1);
  r.loss =
      evaluate_sft(model, SftBatches(chats, seq_len, /*pack=*/true), batch_size, precision, device);
  std::vector<std::string> hyps, refs;
  for (const auto& c : convs) {
    if (int(r.answers.size()) >= max_answers) break;
    if (c.messages.size() < 2 || c.messages.back().role != "assistant") continue;
    std::vector<ChatMessage> prompt(c.messages.begin(), c.messages.end() - 1);
    if (prompt.back().role != "user") continue;
    ChatAnswer a;
    a.prompt = prompt.back().content;
    a.reference = c.messages.back().content;
    a.answer = generate_chat_reply(model, tmpl, tok, prompt, max_new_tokens, precision, device);
    hyps.push_back(a.answer);
    refs.push_back(a.reference);
    r.answers.push_back(std::move(a));
  }
  r.chrf_ci = chrf_interval(hyps, refs);
  r.rouge_l_ci = rouge_l_interval(hyps, refs);
  r.chrf = r.chrf_ci.value;
  r.rouge_l = r.rouge_l_ci.value;
  return r;
}

}  // namespace ktl
