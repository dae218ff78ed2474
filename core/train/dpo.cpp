#include "core/train/dpo.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "core/adapters/lora_adapter.h"
#include "core/tokenizer/chat_template.h"
#include "core/train/checkpointed_forward.h"
#include "core/train/data_loader.h"
#include "core/train/lora_training.h"
#include "core/train/run_directory.h"

namespace ktl {

namespace fs = std::filesystem;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// log(1 - exp(x)) for x < 0: log(-expm1(x)) near 0, log1p(-exp(x)) below -ln 2 (Maechler's
// split). Each branch sees only its own range, so neither gives an inf or NaN gradient.
torch::Tensor log1mexp(const torch::Tensor& x) {
  const double ln2 = std::log(2.0);
  auto xc = x.clamp_max(-1e-6);  // a reply of probability 1 would give log(0)
  auto near = torch::log(-torch::expm1(xc.clamp_min(-ln2)));
  auto far = torch::log1p(-torch::exp(xc.clamp_max(-ln2)));
  return torch::where(xc > -ln2, near, far);
}

void add_scaled(DpoStats& sum, const DpoStats& s, double w) {
  sum.loss += w * s.loss, sum.reward_margin += w * s.reward_margin;
  sum.reward_accuracy += w * s.reward_accuracy;
  sum.chosen_reward += w * s.chosen_reward, sum.rejected_reward += w * s.rejected_reward;
  sum.nll += w * s.nll, sum.log_odds += w * s.log_odds;
}

uint64_t fold(uint64_t h, const TokenizedChat& t) {
  h = mix64(h ^ t.ids.size());
  for (size_t i = 0; i < t.ids.size(); ++i)
    h = mix64(h ^ (uint64_t(t.ids[i]) * 2 + (i < t.mask.size() ? t.mask[i] : 0)));
  return h;
}

}  // namespace

const char* preference_loss_name(PreferenceLoss l) {
  return l == PreferenceLoss::kOrpo ? "orpo" : "dpo";
}

PreferenceLoss parse_preference_loss(const std::string& name) {
  if (name == "dpo") return PreferenceLoss::kDpo;
  if (name == "orpo") return PreferenceLoss::kOrpo;
  throw std::invalid_argument("unknown preference loss '" + name + "' (dpo or orpo)");
}

void DpoConfig::validate() const {
  train.validate();
  if (!(beta > 0) || !std::isfinite(beta)) throw std::invalid_argument("beta must be > 0");
  if (!(orpo_lambda >= 0) || !std::isfinite(orpo_lambda))
    throw std::invalid_argument("orpo_lambda must be >= 0");
  auto refuse = [](bool bad, const char* key) {
    if (bad) throw std::invalid_argument(std::string(key) + " is not supported by dpo");
  };
  refuse(train.early_stopping_patience != 0, "early_stopping_patience");
  refuse(train.overfit_batches != 0, "overfit_batches");
  refuse(!train.task_eval.empty(), "task_eval");
}

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

torch::Tensor orpo_loss(const torch::Tensor& cs, const torch::Tensor& rs, const torch::Tensor& cn,
                        const torch::Tensor& rn, double lambda, DpoStats* stats) {
  auto lc = cs / cn.clamp_min(1), lr = rs / rn.clamp_min(1);  // mean log-prob per token [B]
  auto log_odds = (lc - lr) - (log1mexp(lc) - log1mexp(lr));  // [B]
  auto nll = -lc;
  auto loss = (nll - lambda * torch::nn::functional::logsigmoid(log_odds)).mean();
  if (stats) {
    torch::NoGradGuard no_grad;
    stats->loss = loss.item<double>();
    stats->nll = nll.mean().item<double>();
    stats->log_odds = log_odds.mean().item<double>();
    stats->chosen_reward = lambda * lc.mean().item<double>();
    stats->rejected_reward = lambda * lr.mean().item<double>();
    stats->reward_margin = stats->chosen_reward - stats->rejected_reward;
    stats->reward_accuracy = (lc > lr).to(torch::kFloat64).mean().item<double>();
    stats->pairs = lc.size(0);
  }
  return loss;
}

torch::Tensor reply_logprobs(TransformerImpl& model, const SftBatch& b, const torch::Device& device,
                             bool checkpoint_blocks) {
  auto inputs = b.inputs.to(device), targets = b.targets.to(device);            // [B, T]
  auto h = training_hidden(model, inputs, torch::Tensor(), checkpoint_blocks);  // [B, T, D]
  return target_logprobs(model, h, targets, kIgnoreIndex).sum(1);               // [B]
}

torch::Tensor reply_token_counts(const SftBatch& b) {
  return (b.targets != kIgnoreIndex).sum(1).to(torch::kFloat32);
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
                       std::shared_ptr<Tokenizer> tokenizer,
                       std::shared_ptr<const ChatTemplate> tmpl,
                       const std::vector<PreferencePair>& train,
                       const std::vector<PreferencePair>& val, std::string output_dir,
                       MetricsSink& sink, torch::Device device)
    : cfg_(std::move(cfg)),
      policy_(std::move(policy)),
      reference_(std::move(reference)),
      tokenizer_(std::move(tokenizer)),
      tmpl_(std::move(tmpl)),
      output_dir_(std::move(output_dir)),
      sink_(sink),
      device_(device),
      schedule_(cfg_.train.learning_rate, cfg_.train.min_learning_rate, cfg_.train.warmup_steps,
                cfg_.train.max_steps),
      scaler_(false) {
  cfg_.validate();
  if (cfg_.train.max_seq_length > policy_->config().max_seq_length)
    throw std::invalid_argument("dpo max_seq_length " + std::to_string(cfg_.train.max_seq_length) +
                                " exceeds the model's " +
                                std::to_string(policy_->config().max_seq_length));
  lora_ = has_lora(*policy_);
  if (cfg_.train.lora_rank > 0 && !lora_)
    throw std::invalid_argument("lora_rank > 0 but the policy carries no adapter");
  if (lora_) reference_ = Transformer(nullptr);  // the base under the adapter is the reference
  if (reference_) {
    reference_->eval();
    for (auto& p : reference_->parameters()) p.set_requires_grad(false);
  }
  uint64_t fp = 0x6470'6f00ULL;
  train_ = build(train, &fp);
  if (train_.n == 0) throw std::runtime_error("DPO: no preference pair fits max_seq_length");
  if (!val.empty()) val_ = build(val, &fp);
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fp);
  fingerprint_ = hex;
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& p : policy_->named_parameters()) {
    if (!p.value().requires_grad()) continue;  // a frozen LoRA base
    named.emplace_back(p.key(), p.value());
    trainable_.push_back(p.value());
  }
  optimizer_ = std::make_unique<AdamW>(std::move(named), adamw_options(cfg_.train, device_));
  policy_->train();
  torch::manual_seed(uint64_t(cfg_.train.seed));  // LoRA dropout repeats in a fresh run
}

DpoTrainer::~DpoTrainer() = default;

DpoTrainer::Split DpoTrainer::build(const std::vector<PreferencePair>& pairs,
                                    uint64_t* fingerprint) {
  std::vector<TokenizedChat> chosen, rejected;
  const size_t limit = size_t(cfg_.train.max_seq_length) + 1;
  for (const auto& p : pairs) {
    auto c = render_preference_reply(*tmpl_, p.prompt, p.chosen);
    auto r = render_preference_reply(*tmpl_, p.prompt, p.rejected);
    if (c.ids.size() > limit || r.ids.size() > limit) {
      ++dropped_;
      continue;
    }
    *fingerprint = fold(fold(*fingerprint, c), r);
    chosen.push_back(std::move(c));
    rejected.push_back(std::move(r));
  }
  Split s;
  s.n = int64_t(chosen.size());
  if (s.n == 0) return s;
  s.chosen = std::make_unique<SftBatches>(chosen, cfg_.train.max_seq_length, false);
  s.rejected = std::make_unique<SftBatches>(rejected, cfg_.train.max_seq_length, false);
  if (cfg_.loss == PreferenceLoss::kDpo) {  // NaN: not computed yet
    s.ref_chosen = torch::full({s.n}, std::nanf(""), torch::kFloat32);
    s.ref_rejected = torch::full({s.n}, std::nanf(""), torch::kFloat32);
  }
  *fingerprint = mix64(*fingerprint ^ uint64_t(s.n));
  return s;
}

void DpoTrainer::resolve_precision() {
  if (precision_resolved_) return;
  precision_resolved_ = true;
  const TrainingConfig& c = cfg_.train;
  std::string why;
  if (c.bf16 == "auto" && !c.fp16 && device_.is_cpu() && !lora_) {
    // Forward + backward of both replies of the first real micro-batch; weights untouched.
    const auto rows = step_rows(0, 0);
    auto step = [&](Precision p) {
      precision_ = p;
      torch::Tensor pc, pr;
      {
        AutocastScope autocast(p, device_);
        pc = reply_logprobs(*policy_, train_.chosen->rows(rows), device_, c.gradient_checkpointing);
        pr = reply_logprobs(*policy_, train_.rejected->rows(rows), device_,
                            c.gradient_checkpointing);
      }
      (pr - pc).mean().backward();
      optimizer_->zero_grad();
    };
    PrecisionTiming t;
    precision_ = choose_precision_by_step_time(step, 1, 3, &why, &t);
    sink_.metric("precision/fp32_step_s", step_, t.fp32_s);
    sink_.metric("precision/bf16_step_s", step_, t.bf16_s);
  } else {
    precision_ = choose_precision(c, device_, &why);
  }
  sink_.log("precision: " + why);
  if (auto line = store_lora_base_in_precision(*policy_, precision_); !line.empty())
    sink_.log(line);
  if (scaler_.enabled() != (precision_ == Precision::kFp16))
    scaler_ = GradScaler(precision_ == Precision::kFp16);
}

void DpoTrainer::fill_reference(Split& s, const std::vector<int64_t>& rows) {
  if (cfg_.loss != PreferenceLoss::kDpo) return;
  std::vector<int64_t> missing;
  {
    auto known = s.ref_chosen.accessor<float, 1>();
    for (int64_t r : rows)
      if (std::isnan(known[r]) && std::find(missing.begin(), missing.end(), r) == missing.end())
        missing.push_back(r);
  }
  if (missing.empty()) return;
  if (!reference_ && !lora_)
    throw std::runtime_error(
        "dpo: reference log-probabilities are missing and there is no reference model (give "
        "--init-from with the run's starting checkpoint)");
  const auto t0 = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  torch::Tensor c, r;
  {
    AutocastScope autocast(precision_, device_);
    std::optional<LoraOffScope> off;
    if (lora_) off.emplace(*policy_);
    TransformerImpl& ref = lora_ ? *policy_ : *reference_;
    c = reply_logprobs(ref, s.chosen->rows(missing), device_);
    r = reply_logprobs(ref, s.rejected->rows(missing), device_);
  }
  const auto ids = torch::tensor(missing, torch::kLong);
  s.ref_chosen.index_copy_(0, ids, c.to(torch::kCPU, torch::kFloat32));
  s.ref_rejected.index_copy_(0, ids, r.to(torch::kCPU, torch::kFloat32));
  ref_computed_ += int64_t(missing.size());
  ref_seconds_ += seconds_since(t0);
  if (reference_ && reference_complete()) reference_ = Transformer(nullptr);  // nothing left
}

int64_t DpoTrainer::count_reference() const {
  if (cfg_.loss != PreferenceLoss::kDpo) return 0;
  int64_t n = 0;
  for (const Split* s : {&train_, &val_})
    if (s->n) n += (~torch::isnan(s->ref_chosen)).sum().item<int64_t>();
  return n;
}

bool DpoTrainer::reference_complete() const {
  return cfg_.loss == PreferenceLoss::kDpo && count_reference() == train_.n + val_.n;
}

std::vector<int64_t> DpoTrainer::step_rows(int64_t step, int micro) const {
  // Row r of a step is the same whatever the split into micro-batches, so batch 4 equals
  // batch 2 x accumulation 2 exactly.
  const int B = cfg_.train.batch_size;
  const uint64_t base = mix64(uint64_t(cfg_.train.seed) ^ 0x64706f7061697273ULL);
  std::vector<int64_t> rows;
  for (int b = 0; b < B; ++b) {
    const uint64_t r = uint64_t(micro) * uint64_t(B) + uint64_t(b);
    rows.push_back(int64_t(mix64(base + uint64_t(step) * 1000003ULL + r) % uint64_t(train_.n)));
  }
  return rows;
}

torch::Tensor DpoTrainer::batch_loss(Split& s, const std::vector<int64_t>& rows, DpoStats* st) {
  fill_reference(s, rows);
  const SftBatch c = s.chosen->rows(rows), r = s.rejected->rows(rows);
  const bool ckpt = cfg_.train.gradient_checkpointing && torch::GradMode::is_enabled();
  torch::Tensor pc, pr;
  {
    AutocastScope autocast(precision_, device_);
    pc = reply_logprobs(*policy_, c, device_, ckpt);
    pr = reply_logprobs(*policy_, r, device_, ckpt);
  }
  if (cfg_.loss == PreferenceLoss::kOrpo)
    return orpo_loss(pc, pr, reply_token_counts(c).to(device_), reply_token_counts(r).to(device_),
                     cfg_.orpo_lambda, st);
  const auto ids = torch::tensor(rows, torch::kLong);
  return dpo_loss(pc, pr, s.ref_chosen.index_select(0, ids).to(device_),
                  s.ref_rejected.index_select(0, ids).to(device_), cfg_.beta, st);
}

DpoStats DpoTrainer::evaluate(Split& s, int64_t limit) {
  DpoStats out;
  const int64_t n = limit > 0 ? std::min(limit, s.n) : s.n;
  if (n == 0) return out;
  resolve_precision();
  const bool was_training = policy_->is_training();
  policy_->eval();
  torch::NoGradGuard no_grad;
  const int B = cfg_.train.batch_size;
  for (int64_t i = 0; i < n; i += B) {
    std::vector<int64_t> rows;
    for (int64_t r = i; r < std::min(i + B, n); ++r) rows.push_back(r);
    DpoStats st;
    batch_loss(s, rows, &st);
    add_scaled(out, st, double(rows.size()) / double(n));
  }
  out.pairs = n;
  policy_->train(was_training);
  return out;
}

DpoStats DpoTrainer::evaluate_train() {
  return evaluate(train_);
}

DpoStats DpoTrainer::evaluate_val() {
  return evaluate(val_);
}

double DpoTrainer::train_step(DpoStats* stats, double* grad_norm) {
  resolve_precision();
  policy_->train();
  optimizer_->zero_grad();
  const int k = cfg_.train.gradient_accumulation_steps;
  const double total = double(cfg_.train.batch_size) * k;
  DpoStats sum;
  for (int m = 0; m < k; ++m) {
    const auto rows = step_rows(step_, m);
    DpoStats st;
    auto loss = batch_loss(train_, rows, &st);
    // Each micro-batch's mean weighted by its share of the step's pairs.
    const double w = double(rows.size()) / total;
    (loss * (w * scaler_.scale())).backward();
    add_scaled(sum, st, w);
  }
  sum.pairs = int64_t(total);
  if (stats) *stats = sum;
  auto& params = trainable_;
  const bool grads_finite = scaler_.unscale_and_check(params);
  if (scaler_.enabled() && !grads_finite) {
    scaler_.update(true);  // fp16 overflow: skip the update, shrink the scale
    if (grad_norm) *grad_norm = 0;
    ++step_;
    return sum.loss;
  }
  const double norm = clip_grad_norm(params, cfg_.train.grad_clip);
  if (grad_norm) *grad_norm = norm;
  if (!std::isfinite(sum.loss) || !std::isfinite(norm)) return sum.loss;  // no update; run() stops
  optimizer_->step(current_lr());
  scaler_.update(false);
  ++step_;
  return sum.loss;
}

double DpoTrainer::current_lr() const {
  const TrainingConfig& c = cfg_.train;
  if (c.max_minutes <= 0) return schedule_.at(step_);
  return schedule_.at_progress(step_, train_seconds_ / (60.0 * c.max_minutes));
}

bool DpoTrainer::budget_spent() const {
  return cfg_.train.max_minutes > 0 && train_seconds_ >= 60.0 * cfg_.train.max_minutes;
}

void DpoTrainer::report(const char* split, const DpoStats& st, double lr, double grad_norm,
                        double pairs_per_s) {
  const std::string pre = std::string(split) + "/";
  const bool train = pre == "train/", orpo = cfg_.loss == PreferenceLoss::kOrpo;
  sink_.metric(pre + "loss", step_, st.loss);
  sink_.metric(pre + "reward_accuracy", step_, st.reward_accuracy);
  sink_.metric(pre + "reward_margin", step_, st.reward_margin);
  sink_.metric(pre + "chosen_reward", step_, st.chosen_reward);
  sink_.metric(pre + "rejected_reward", step_, st.rejected_reward);
  if (orpo) {
    sink_.metric(pre + "nll", step_, st.nll);
    sink_.metric(pre + "log_odds", step_, st.log_odds);
  }
  if (train) {
    sink_.metric("train/lr", step_, lr);
    sink_.metric("train/grad_norm", step_, grad_norm);
    sink_.metric("train/pairs_per_s", step_, pairs_per_s);
  }
  char buf[320];
  int n = train ? std::snprintf(buf, sizeof buf, "step %lld/%lld", (long long)step_,
                                (long long)cfg_.train.max_steps)
                : std::snprintf(buf, sizeof buf, "%s step %lld", split, (long long)step_);
  n += std::snprintf(buf + n, sizeof buf - size_t(n),
                     " | %s loss %.4f | reward accuracy %.3f | margin %.4f | chosen %.4f | "
                     "rejected %.4f",
                     preference_loss_name(cfg_.loss), st.loss, st.reward_accuracy, st.reward_margin,
                     st.chosen_reward, st.rejected_reward);
  if (orpo)
    n += std::snprintf(buf + n, sizeof buf - size_t(n), " | nll %.4f | log odds %.4f", st.nll,
                       st.log_odds);
  if (train)
    std::snprintf(buf + n, sizeof buf - size_t(n), " | lr %.2e | grad norm %.3f | %.1f pairs/s", lr,
                  grad_norm, pairs_per_s);
  sink_.log(buf);
}

void DpoTrainer::report_interval(Interval& iv, double lr) {
  if (iv.steps == 0) return;
  DpoStats mean;
  add_scaled(mean, iv.stats, 1.0 / iv.steps);
  const double pairs = double(cfg_.train.batch_size) * cfg_.train.gradient_accumulation_steps;
  report("train", mean, lr, iv.grad_norm / iv.steps,
         iv.seconds > 0 ? pairs * iv.steps / iv.seconds : 0.0);
  iv = Interval{};
}

void DpoTrainer::maybe_eval(bool at_end) {
  // Every held-out pair at every evaluation. Without held-out pairs, the final figures are over
  // the first eval_batches x batch_size training pairs (logged, not stored as metrics: train/*
  // are the steps' means), so a large file is not scored whole.
  if (last_eval_step_ == step_ || (!val_.n && !at_end)) return;
  const int64_t limit = int64_t(cfg_.train.eval_batches) * cfg_.train.batch_size;
  last_eval_ = val_.n ? evaluate(val_) : evaluate(train_, limit);
  last_eval_step_ = step_;
  if (val_.n) return report("val", last_eval_, 0, 0, 0);
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "%lld training pairs at step %lld | loss %.4f | reward accuracy %.3f | margin %.4f",
                (long long)last_eval_.pairs, (long long)step_, last_eval_.loss,
                last_eval_.reward_accuracy, last_eval_.reward_margin);
  sink_.log(buf);
}

DpoResult DpoTrainer::finish(TrainStatus status, std::string message) {
  DpoResult r;
  r.status = status;
  r.step = step_;
  r.last_checkpoint = last_checkpoint_;
  r.split = val_.n ? "val" : "train";
  r.last = last_eval_;
  r.message = std::move(message);
  if (cfg_.loss == PreferenceLoss::kDpo) {
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  "reference log-probabilities: %lld of %lld pairs, each computed when first used "
                  "(%lld this run, %.1fs)",
                  (long long)count_reference(), (long long)(train_.n + val_.n),
                  (long long)ref_computed_, ref_seconds_);
    sink_.log(buf);
  }
  if (!r.message.empty()) sink_.log(r.message);
  sink_.flush();
  return r;
}

DpoResult DpoTrainer::run() {
  fs::create_directories(output_dir_);
  remove_stale_save_temps(output_dir_);
  resolve_precision();
  const int64_t end = cfg_.train.max_steps;
  if (step_ == 0) maybe_eval(false);
  Interval iv;
  while (step_ < end) {
    if (stop_requested_.load()) {
      if (last_save_step_ != step_) save_checkpoint_now();
      return finish(TrainStatus::kStopped, "stopped at step " + std::to_string(step_) +
                                               " on request; checkpoint " + last_checkpoint_);
    }
    if (budget_spent()) break;
    const double lr = current_lr();
    const auto t0 = std::chrono::steady_clock::now();
    DpoStats st;
    double norm = 0;
    const double loss = train_step(&st, &norm);
    const double dt = seconds_since(t0);
    if (!std::isfinite(loss) || !std::isfinite(norm))
      return finish(TrainStatus::kDiverged,
                    "dpo diverged at step " + std::to_string(step_ + 1) + " (loss " +
                        std::to_string(loss) + ", gradient norm " + std::to_string(norm) +
                        "); the last good checkpoint is " +
                        (last_checkpoint_.empty() ? std::string("none") : last_checkpoint_));
    train_seconds_ += dt;
    add_scaled(iv.stats, st, 1.0);
    iv.grad_norm += norm, iv.seconds += dt, ++iv.steps;
    sink_.progress(step_, end);
    if (step_ % cfg_.train.log_steps == 0 || step_ == end || budget_spent())
      report_interval(iv, lr);
    if (cfg_.train.eval_steps > 0 && step_ % cfg_.train.eval_steps == 0) maybe_eval(false);
    if (cfg_.train.save_steps > 0 && step_ % cfg_.train.save_steps == 0) save_checkpoint_now();
  }
  maybe_eval(true);
  if (last_save_step_ != step_) save_checkpoint_now();
  point_run_link(output_dir_, "final", last_checkpoint_);
  return finish(TrainStatus::kCompleted, "");
}

}  // namespace ktl
