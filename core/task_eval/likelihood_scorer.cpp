#include "core/task_eval/likelihood_scorer.h"

#include <algorithm>

#include "core/tokenizer/tokenizer.h"

namespace ktl {

ScoredSequence mc_sequence(const Tokenizer& tok, const std::string& context,
                           const std::string& choice, int max_len) {
  std::vector<int> ctx = tok.encode(context);
  const std::vector<int> cont = tok.encode(choice);
  ScoredSequence s;
  s.n_cont = static_cast<int>(cont.size());
  // Keep BOS, the continuation and as much of the context's end as fits.
  const int room = std::max(0, max_len - 1 - s.n_cont);
  if (static_cast<int>(ctx.size()) > room) ctx.erase(ctx.begin(), ctx.end() - room);
  s.ids.reserve(1 + ctx.size() + cont.size());
  s.ids.push_back(tok.bos_id());
  s.ids.insert(s.ids.end(), ctx.begin(), ctx.end());
  s.ids.insert(s.ids.end(), cont.begin(), cont.end());
  return s;
}

std::vector<double> continuation_logliks(Transformer& model,
                                         const std::vector<ScoredSequence>& seqs, int batch_size,
                                         const torch::Device& device) {
  torch::NoGradGuard no_grad;
  std::vector<double> out(seqs.size(), 0.0);
  // Batches of similar lengths waste little on padding.
  std::vector<size_t> order(seqs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return seqs[a].ids.size() < seqs[b].ids.size(); });
  for (size_t b0 = 0; b0 < order.size(); b0 += batch_size) {
    const size_t b1 = std::min(order.size(), b0 + batch_size);
    int64_t T = 0;
    for (size_t k = b0; k < b1; ++k) T = std::max<int64_t>(T, seqs[order[k]].ids.size());
    auto ids = torch::full({int64_t(b1 - b0), T}, int64_t(SpecialIds::kPad), torch::kLong);
    auto acc = ids.accessor<int64_t, 2>();
    std::vector<int64_t> rows;  // flattened [b * T + t - 1] of every continuation token
    for (size_t k = b0; k < b1; ++k) {
      const auto& s = seqs[order[k]];
      const int64_t n = static_cast<int64_t>(s.ids.size());
      for (int64_t t = 0; t < n; ++t) acc[k - b0][t] = s.ids[t];
      for (int64_t t = n - s.n_cont; t < n; ++t) rows.push_back(int64_t(k - b0) * T + t - 1);
    }
    const auto logits = model->forward(ids.to(device));  // [B, T, V]
    const auto picked = logits.reshape({-1, logits.size(-1)})
                            .index_select(0, torch::tensor(rows).to(device));  // [R, V]
    const auto logp = torch::log_softmax(picked.to(torch::kFloat32), -1).cpu().contiguous();
    const auto lp = logp.accessor<float, 2>();
    size_t r = 0;
    for (size_t k = b0; k < b1; ++k) {
      const auto& s = seqs[order[k]];
      const int64_t n = static_cast<int64_t>(s.ids.size());
      double sum = 0;
      for (int64_t t = n - s.n_cont; t < n; ++t) sum += lp[int64_t(r++)][s.ids[t]];
      out[order[k]] = sum;
    }
  }
  return out;
}

McScore evaluate_mc_task(Transformer& model, const Tokenizer& tok, const McTask& task,
                         const McEvalOptions& opts, const torch::Device& device) {
  const int max_len = model->config().max_seq_length;
  std::vector<ScoredSequence> seqs;
  std::vector<size_t> first;  // the first sequence of each example
  for (size_t i = 0; i < task.examples.size(); ++i) {
    const std::string ctx = few_shot_context(task, i, opts.shots, opts.seed);
    first.push_back(seqs.size());
    for (const auto& c : task.examples[i].choices)
      seqs.push_back(mc_sequence(tok, ctx, c, max_len));
  }
  const bool was_training = model->is_training();
  model->eval();
  const std::vector<double> ll = continuation_logliks(model, seqs, opts.batch_size, device);
  if (was_training) model->train();
  std::vector<std::vector<double>> per_example(task.examples.size());
  for (size_t i = 0; i < task.examples.size(); ++i)
    per_example[i].assign(ll.begin() + first[i],
                          ll.begin() + first[i] + task.examples[i].choices.size());
  return score_mc(task, per_example, opts.shots);
}

}  // namespace ktl
