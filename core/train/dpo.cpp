#include "core/train/dpo.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdio>

#include "core/tokenizer/chat_template.h"
#include "core/train/adamw.h"
#include "core/train/data_loader.h"
#include "core/train/lr_schedule.h"

namespace ktl {

torch::Tensor dpo_loss(const torch::Tensor& pc, const torch::Tensor& pr, const torch::Tensor& rc,
                       const torch::Tensor& rr, double beta, DpoStats* stats) {
  auto chosen_reward = beta * (pc - rc);    // [B]
  auto rejected_reward = beta * (pr - rr);  // [B]
  auto margin = chosen_reward - rejected_reward;
  auto loss = -torch::nn::functional::logsigmoid(margin).mean();
  if (stats) {
    torch::NoGradGuard no_grad;
    stats->loss = loss.item<double>();
    stats->reward_margin = margin.mean().item<double>();
    stats->reward_accuracy = (margin > 0).to(torch::kFloat64).mean().item<double>();
    stats->chosen_reward = chosen_reward.mean().item<double>();
    stats->rejected_reward = rejected_reward.mean().item<double>();
    stats->pairs = margin.size(0);
  }
  return loss;
}

torch::Tensor reply_logprobs(TransformerImpl& model, const SftBatch& b,
                             const torch::Device& device) {
  auto inputs = b.inputs.to(device), targets = b.targets.to(device);              // [B, T]
  auto logp = torch::log_softmax(model.forward(inputs).to(torch::kFloat32), -1);  // [B, T, V]
  auto keep = targets != kIgnoreIndex;                                            // [B, T]
  auto picked = logp.gather(2, targets.clamp_min(0).unsqueeze(2)).squeeze(2);     // [B, T]
  return (picked * keep.to(torch::kFloat32)).sum(1);                              // [B]
}

TokenizedChat render_preference_reply(const ChatTemplate& tmpl,
                                      const std::vector<ChatMessage>& prompt,
                                      const std::string& reply) {
  const size_t prompt_len = tmpl.render(prompt, true).ids.size();
  auto msgs = prompt;
  msgs.push_back({"assistant", reply});
  RenderedChat r = tmpl.render(msgs, false);
  TokenizedChat t;
  t.ids.assign(r.ids.begin(), r.ids.end());
  t.mask = std::move(r.assistant_mask);
  for (size_t i = 0; i < prompt_len && i < t.mask.size(); ++i) t.mask[i] = 0;
  return t;
}

DpoTrainer::DpoTrainer(DpoConfig cfg, Transformer policy, Transformer reference,
                       std::shared_ptr<const ChatTemplate> tmpl,
                       const std::vector<PreferencePair>& train,
                       const std::vector<PreferencePair>& val, MetricsSink& sink,
                       torch::Device device)
    : cfg_(cfg),
      policy_(std::move(policy)),
      reference_(std::move(reference)),
      tmpl_(std::move(tmpl)),
      sink_(sink),
      device_(device) {
  if (cfg_.beta <= 0) throw std::invalid_argument("DPO beta must be > 0");
  if (cfg_.batch_size < 1 || cfg_.max_steps < 0)
    throw std::invalid_argument("DPO batch_size must be >= 1 and max_steps >= 0");
  reference_->eval();
  for (auto& p : reference_->parameters()) p.set_requires_grad(false);
  train_ = build(train);
  if (train_.n == 0) throw std::runtime_error("DPO: no preference pair fits max_seq_length");
  if (!val.empty()) val_ = build(val);
}

DpoTrainer::Split DpoTrainer::build(const std::vector<PreferencePair>& pairs) {
  std::vector<TokenizedChat> chosen, rejected;
  const size_t limit = size_t(cfg_.max_seq_length) + 1;
  for (const auto& p : pairs) {
    auto c = render_preference_reply(*tmpl_, p.prompt, p.chosen);
    auto r = render_preference_reply(*tmpl_, p.prompt, p.rejected);
    if (c.ids.size() > limit || r.ids.size() > limit) {
      ++dropped_;
      continue;
    }
    chosen.push_back(std::move(c));
    rejected.push_back(std::move(r));
  }
  Split s;
  s.n = int64_t(chosen.size());
  if (s.n == 0) return s;
  s.chosen = std::make_unique<SftBatches>(chosen, cfg_.max_seq_length, false);
  s.rejected = std::make_unique<SftBatches>(rejected, cfg_.max_seq_length, false);
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> rc, rr;
  for (int64_t i = 0; i < s.n; i += cfg_.batch_size) {
    rc.push_back(reply_logprobs(*reference_, s.chosen->range(i, cfg_.batch_size), device_).cpu());
    rr.push_back(reply_logprobs(*reference_, s.rejected->range(i, cfg_.batch_size), device_).cpu());
  }
  s.ref_chosen = torch::cat(rc);
  s.ref_rejected = torch::cat(rr);
  return s;
}

DpoStats DpoTrainer::evaluate(const Split& s) {
  DpoStats out;
  if (s.n == 0) return out;
  const bool was_training = policy_->is_training();
  policy_->eval();
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> pc, pr;
  for (int64_t i = 0; i < s.n; i += cfg_.batch_size) {
    pc.push_back(reply_logprobs(*policy_, s.chosen->range(i, cfg_.batch_size), device_).cpu());
    pr.push_back(reply_logprobs(*policy_, s.rejected->range(i, cfg_.batch_size), device_).cpu());
  }
  dpo_loss(torch::cat(pc), torch::cat(pr), s.ref_chosen, s.ref_rejected, cfg_.beta, &out);
  policy_->train(was_training);
  return out;
}

DpoStats DpoTrainer::run() {
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& p : policy_->named_parameters()) named.emplace_back(p.key(), p.value());
  AdamWOptions o;
  o.weight_decay = cfg_.weight_decay;
  AdamW opt(std::move(named), o);
  LrSchedule schedule(cfg_.learning_rate, cfg_.learning_rate / 10, cfg_.warmup_steps,
                      cfg_.max_steps);
  auto log_stats = [&](const char* split, int64_t step, const DpoStats& st) {
    const std::string pre = std::string(split) + "/";
    sink_.metric(pre + "dpo_loss", step, st.loss);
    sink_.metric(pre + "reward_margin", step, st.reward_margin);
    sink_.metric(pre + "reward_accuracy", step, st.reward_accuracy);
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  "%s step %lld | dpo loss %.4f | reward margin %.4f | accuracy %.3f", split,
                  (long long)step, st.loss, st.reward_margin, st.reward_accuracy);
    sink_.log(buf);
  };
  DpoStats last = val_.n ? evaluate(val_) : evaluate(train_);
  log_stats(val_.n ? "val" : "train", 0, last);
  policy_->train();
  DpoStats acc;
  int acc_n = 0;
  for (int64_t step = 0; step < cfg_.max_steps; ++step) {
    std::vector<int64_t> idx;
    for (int b = 0; b < cfg_.batch_size; ++b)
      idx.push_back(int64_t(mix64(uint64_t(cfg_.seed) * 7919 + uint64_t(step) * 1000003ULL + b) %
                            uint64_t(train_.n)));
    auto ids = torch::tensor(idx, torch::kLong);
    opt.zero_grad();
    auto pc = reply_logprobs(*policy_, train_.chosen->rows(idx), device_);
    auto pr = reply_logprobs(*policy_, train_.rejected->rows(idx), device_);
    DpoStats st;
    auto loss = dpo_loss(pc, pr, train_.ref_chosen.index_select(0, ids).to(device_),
                         train_.ref_rejected.index_select(0, ids).to(device_), cfg_.beta, &st);
    loss.backward();
    if (cfg_.grad_clip > 0)
      torch::nn::utils::clip_grad_norm_(policy_->parameters(), cfg_.grad_clip);
    opt.step(schedule.at(step));
    acc.loss += st.loss, acc.reward_margin += st.reward_margin;
    acc.reward_accuracy += st.reward_accuracy, ++acc_n;
    const int64_t done = step + 1;
    if (done % cfg_.log_steps == 0 || done == cfg_.max_steps) {
      acc.loss /= acc_n, acc.reward_margin /= acc_n, acc.reward_accuracy /= acc_n;
      log_stats("train", done, acc);
      acc = DpoStats{}, acc_n = 0;
    }
    if (val_.n &&
        ((cfg_.eval_steps > 0 && done % cfg_.eval_steps == 0) || done == cfg_.max_steps)) {
      last = evaluate(val_);
      log_stats("val", done, last);
    }
    sink_.progress(done, cfg_.max_steps);
  }
  if (!val_.n) last = evaluate(train_);
  sink_.flush();
  return last;
}

}  // namespace ktl
