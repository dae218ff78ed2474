#include "core/train/draft_agreement.h"

#include <torch/torch.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "core/train/data_loader.h"

namespace ktl {
namespace {

// Eval mode for a scope, the previous mode restored after.
struct EvalMode {
  explicit EvalMode(TransformerImpl& m) : model(m), was(m.is_training()) { m.eval(); }
  ~EvalMode() { model.train(was); }
  TransformerImpl& model;
  bool was;
};

// hidden [B, T, D] -> final-norm rows [B*T, D] in fp32.
torch::Tensor head_rows(TransformerImpl& m, const torch::Tensor& hidden) {
  return m.norm(hidden).reshape({-1, hidden.size(2)}).to(torch::kFloat32);
}

}  // namespace

DraftAgreement agreement_sums(const torch::Tensor& draft_logits,
                              const torch::Tensor& teacher_logits) {
  TORCH_CHECK(draft_logits.dim() == 2 && draft_logits.sizes() == teacher_logits.sizes(),
              "agreement_sums: draft and teacher logits [N, V] expected");
  auto lq = torch::log_softmax(draft_logits.to(torch::kFloat32), 1);    // [N, V]
  auto lp = torch::log_softmax(teacher_logits.to(torch::kFloat32), 1);  // [N, V]
  auto p = lp.exp(), q = lq.exp();
  DraftAgreement s;
  s.top1 = (lq.argmax(1) == lp.argmax(1)).sum().item<double>();
  s.acceptance = torch::minimum(p, q).sum().item<double>();
  s.kl = (p * (lp - lq)).sum().item<double>();
  s.tokens = draft_logits.size(0);
  return s;
}

DraftAgreement evaluate_draft_agreement(TransformerImpl& draft, TransformerImpl& teacher,
                                        const EvalBatches& batches, Precision precision,
                                        const torch::Device& device) {
  const int64_t V = draft.config().vocab_size;
  if (teacher.config().vocab_size != V)
    throw std::invalid_argument("draft and teacher vocabularies differ (" + std::to_string(V) +
                                " vs " + std::to_string(teacher.config().vocab_size) + ")");
  EvalMode d_mode(draft), t_mode(teacher);
  torch::NoGradGuard no_grad;
  const int64_t chunk = std::max<int64_t>(16, (int64_t(1) << 22) / V);  // ~16 MB of fp32 logits
  const auto wd = draft.output_weight().to(torch::kFloat32);            // [V, D]
  const auto wt = teacher.output_weight().to(torch::kFloat32);          // [V, Dt]
  DraftAgreement sum;
  for (int64_t i = 0; i < batches.num_batches(); ++i) {
    auto batch = batches.batch(i).to(device);             // [b, T+1]
    auto inputs = batch.narrow(1, 0, batch.size(1) - 1);  // [b, T]
    torch::Tensor hd, ht;                                 // [b*T, D], [b*T, Dt]
    {
      AutocastScope autocast(precision, device);
      hd = draft.hidden(inputs);
      ht = teacher.hidden(inputs);
    }
    hd = head_rows(draft, hd);
    ht = head_rows(teacher, ht);
    for (int64_t s = 0; s < hd.size(0); s += chunk) {
      const int64_t n = std::min(chunk, hd.size(0) - s);
      const DraftAgreement c = agreement_sums(torch::mm(hd.narrow(0, s, n), wd.t()),
                                              torch::mm(ht.narrow(0, s, n), wt.t()));
      sum.top1 += c.top1, sum.acceptance += c.acceptance, sum.kl += c.kl, sum.tokens += c.tokens;
    }
  }
  if (sum.tokens > 0) {
    const double n = double(sum.tokens);
    sum.top1 /= n, sum.acceptance /= n, sum.kl /= n;
  }
  return sum;
}

}  // namespace ktl
