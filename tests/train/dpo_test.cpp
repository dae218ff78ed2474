// Preference tuning in process: the DPO and ORPO losses against hand-computed examples, the
// trainer's accumulation (2 x 2 pairs = 4 pairs), checkpoints in the trainer's layout (metrics
// flushed first, rotation, latest/final), a stop that checkpoints and a resume that ends with the
// weights of an uninterrupted run, and what restore() refuses.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/base/file_util.h"
#include "core/model/checkpoint.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer.h"
#include "core/train/console_metrics_sink.h"
#include "core/train/dpo.h"
#include "tests/support/tiny_checkpoint.h"

namespace {

namespace fs = std::filesystem;
using ktl::testing::TempDir;

struct Fixture {
  TempDir dir{"ktl-dpo"};
  std::shared_ptr<ktl::Tokenizer> tok;
  std::shared_ptr<ktl::ChatTemplate> tmpl;
  Fixture() {
    tok = ktl::Tokenizer::load(ktl::testing::make_tiny_tokenizer(dir / "tok", 600));
    tmpl = std::make_shared<ktl::ChatTemplate>(ktl::ChatTemplate::require(tok));
  }
};

Fixture& fx() {
  static Fixture f;
  return f;
}

ktl::Transformer tiny_model(uint64_t seed) {
  ktl::Transformer m(ktl::testing::tiny_model_config(fx().tok->vocab_size()));
  m->init_weights(seed);
  m->train();
  return m;
}

std::vector<ktl::PreferencePair> pairs() {
  return {
      {{{"user", "안녕하세요"}}, "반가워요", "몰라요", 1},
      {{{"user", "이름이 뭐예요"}}, "저는 작은 모델이에요", "비가 와요", 2},
      {{{"user", "a"}, {"assistant", "b"}, {"user", "오늘 날씨는"}}, "맑아요", "싫어요", 3},
      {{{"user", "배고파요"}}, "밥을 드세요", "책을 읽었다", 4},
      {{{"user", "피곤해요"}}, "푹 쉬세요", "고양이가 걸었다", 5},
      {{{"user", "주말에 뭐 해요"}}, "영화를 봐요", "편지를 썼다", 6},
  };
}

ktl::DpoConfig small_config(ktl::PreferenceLoss loss = ktl::PreferenceLoss::kDpo) {
  ktl::DpoConfig c;
  c.loss = loss;
  c.train.batch_size = 2;
  c.train.max_seq_length = 64;
  c.train.learning_rate = 5e-3;
  c.train.min_learning_rate = 5e-4;
  c.train.warmup_steps = 2;
  c.train.max_steps = 8;
  c.train.save_steps = 0;
  c.train.eval_steps = 0;
  c.train.log_steps = 4;
  c.train.bf16 = "false";
  c.train.device = "cpu";
  return c;
}

struct RecordingSink : ktl::MetricsSink {
  std::vector<std::string> events;  // "metric <key>", "flush", "checkpoint <step>", ...
  std::vector<std::string> deleted;
  std::function<void(int64_t)> on_progress;
  void metric(const std::string& k, int64_t, double) override { events.push_back("metric " + k); }
  void sample(int64_t, const std::string&, const std::string&, const std::string&) override {}
  void checkpoint(int64_t step, const std::string&, const std::map<std::string, double>&) override {
    events.push_back("checkpoint " + std::to_string(step));
  }
  void checkpoint_deleted(int64_t, const std::string& path) override { deleted.push_back(path); }
  void progress(int64_t step, int64_t) override {
    if (on_progress) on_progress(step);
  }
  void log(const std::string& l) override { events.push_back("log " + l); }
  void flush() override { events.push_back("flush"); }
  bool has(const std::string& e) const {
    return std::find(events.begin(), events.end(), e) != events.end();
  }
};

double max_abs_diff(ktl::TransformerImpl& a, ktl::TransformerImpl& b) {
  double d = 0;
  auto pa = a.parameters(), pb = b.parameters();
  for (size_t i = 0; i < pa.size(); ++i)
    d = std::max(d, (pa[i] - pb[i]).abs().max().item<double>());
  return d;
}

TEST(Dpo, LossIsLog2WhenReferenceEqualsPolicyAndMatchesTheClosedForm) {
  auto& f = fx();
  TempDir out("ktl-dpo-log2");
  ktl::ConsoleMetricsSink sink(stdout);
  ktl::DpoTrainer dpo(small_config(), tiny_model(9), tiny_model(9), f.tok, f.tmpl, pairs(), {},
                      out.path(), sink, torch::kCPU);
  const auto st = dpo.evaluate_train();
  EXPECT_NEAR(st.loss, std::log(2.0), 1e-6);
  EXPECT_NEAR(st.reward_margin, 0.0, 1e-6);
  EXPECT_EQ(st.pairs, 6);
  // The reply mask covers only the final reply and its end-of-turn token, not the earlier
  // assistant turn of the prompt.
  const auto t = ktl::render_preference_reply(*f.tmpl, pairs()[2].prompt, "맑아요");
  std::vector<int> masked;
  for (size_t i = 0; i < t.ids.size(); ++i)
    if (t.mask[i]) masked.push_back(int(t.ids[i]));
  ASSERT_GE(masked.size(), 2u);
  EXPECT_EQ(masked.back(), f.tmpl->end_of_turn_id());
  masked.pop_back();
  std::string text = f.tok->decode(masked);
  if (!text.empty() && text[0] == ' ') text.erase(0, 1);
  EXPECT_EQ(text, "맑아요");
  // -log sigmoid(beta * margin), by hand.
  ktl::DpoStats s;
  auto loss = ktl::dpo_loss(torch::tensor({-1.0, -2.0}), torch::tensor({-3.0, -1.0}),
                            torch::tensor({-2.0, -2.0}), torch::tensor({-2.0, -2.0}), 0.5, &s);
  const double m1 = 0.5 * (1 - (-1)), m2 = 0.5 * (0 - 1);
  EXPECT_NEAR(loss.item<double>(), 0.5 * (std::log1p(std::exp(-m1)) + std::log1p(std::exp(-m2))),
              1e-6);
  EXPECT_DOUBLE_EQ(s.reward_accuracy, 0.5);
  EXPECT_NEAR(s.chosen_reward, 0.5 * (0.5 * (1 + 0)), 1e-9);     // beta (pc - rc), mean
  EXPECT_NEAR(s.rejected_reward, 0.5 * (0.5 * (-1 + 1)), 1e-9);  // beta (pr - rr), mean
}

// ORPO by hand. Pair 1: chosen mean log-prob log 0.5 over 2 tokens, rejected log 0.2 over 4:
// odds 1 and 1/4, log odds ratio log 4, L_OR = -log sigmoid(log 4) = log(5/4), NLL = log 2.
// Pair 2: chosen log 0.1 over 3 tokens, rejected log 0.3 over 1: odds 1/9 and 3/7, ratio
// log(7/27), L_OR = -log(7/34) = log(34/7), NLL = log 10. Loss = mean(NLL + lambda L_OR).
TEST(Orpo, LossMatchesAHandComputedExample) {
  const double lambda = 0.5;
  auto cs = torch::tensor({2 * std::log(0.5), 3 * std::log(0.1)}, torch::kFloat64);
  auto rs = torch::tensor({4 * std::log(0.2), 1 * std::log(0.3)}, torch::kFloat64);
  auto cn = torch::tensor({2.0, 3.0}, torch::kFloat64),
       rn = torch::tensor({4.0, 1.0}, torch::kFloat64);
  ktl::DpoStats s;
  auto loss = ktl::orpo_loss(cs, rs, cn, rn, lambda, &s);
  const double want = 0.5 * ((std::log(2.0) + lambda * std::log(5.0 / 4)) +
                             (std::log(10.0) + lambda * std::log(34.0 / 7)));
  EXPECT_NEAR(loss.item<double>(), want, 1e-12);
  EXPECT_NEAR(s.loss, want, 1e-12);
  EXPECT_NEAR(s.nll, 0.5 * (std::log(2.0) + std::log(10.0)), 1e-12);
  EXPECT_NEAR(s.log_odds, 0.5 * (std::log(4.0) + std::log(7.0 / 27)), 1e-12);
  EXPECT_NEAR(s.chosen_reward, lambda * 0.5 * (std::log(0.5) + std::log(0.1)), 1e-12);
  EXPECT_NEAR(s.rejected_reward, lambda * 0.5 * (std::log(0.2) + std::log(0.3)), 1e-12);
  EXPECT_DOUBLE_EQ(s.reward_accuracy, 0.5);
  EXPECT_EQ(s.pairs, 2);
  // lambda = 0 is plain SFT on the chosen replies.
  EXPECT_NEAR(ktl::orpo_loss(cs, rs, cn, rn, 0.0).item<double>(),
              0.5 * (std::log(2.0) + std::log(10.0)), 1e-12);
}

TEST(Orpo, GradientsMatchFiniteDifferencesAndStayFiniteAtTheEdges) {
  // Mean log-probs from nearly 0 (probability ~1) to -60, on both sides of -ln 2.
  auto cs = torch::tensor({-1e-9, -0.5, -3.0, -60.0}, torch::kFloat64).requires_grad_(true);
  auto rs = torch::tensor({-2.0, -1e-9, -0.7, -0.69}, torch::kFloat64).requires_grad_(true);
  auto ones = torch::ones({4}, torch::kFloat64);
  ktl::orpo_loss(cs, rs, ones, ones, 0.3).backward();
  EXPECT_TRUE(torch::isfinite(cs.grad()).all().item<bool>()) << cs.grad();
  EXPECT_TRUE(torch::isfinite(rs.grad()).all().item<bool>()) << rs.grad();
  // Away from the clamp at -1e-6 the gradient is the function's.
  const double h = 1e-6;
  for (int i = 1; i < 4; ++i) {
    auto plus = cs.detach().clone(), minus = cs.detach().clone();
    plus[i] += h, minus[i] -= h;
    const double fd = (ktl::orpo_loss(plus, rs.detach(), ones, ones, 0.3).item<double>() -
                       ktl::orpo_loss(minus, rs.detach(), ones, ones, 0.3).item<double>()) /
                      (2 * h);
    EXPECT_NEAR(cs.grad()[i].item<double>(), fd, 1e-6) << i;
  }
}

// The same pairs in one batch of 4 or in 2 micro-batches of 2 give the same gradient.
TEST(DpoTrainer, AccumulationOfTwoByTwoEqualsOneBatchOfFour) {
  auto& f = fx();
  TempDir out("ktl-dpo-acc");
  ktl::ConsoleMetricsSink sink(stdout);
  std::vector<std::vector<torch::Tensor>> grads;
  std::vector<double> losses;
  for (int k : {1, 2}) {
    auto c = small_config();
    c.train.batch_size = 4 / k;
    c.train.gradient_accumulation_steps = k;
    c.train.grad_clip = 0;
    auto model = tiny_model(3);
    ktl::DpoTrainer t(c, model, tiny_model(3), f.tok, f.tmpl, pairs(), {}, out.path(), sink,
                      torch::kCPU);
    ktl::DpoStats st;
    t.train_step(&st);
    EXPECT_EQ(st.pairs, 4);
    losses.push_back(st.loss);
    grads.emplace_back();
    for (auto& p : model->parameters()) grads.back().push_back(p.grad().clone());
  }
  EXPECT_NEAR(losses[0], losses[1], 1e-6);
  for (size_t i = 0; i < grads[0].size(); ++i)
    EXPECT_TRUE(torch::allclose(grads[0][i], grads[1][i], 1e-4, 1e-7))
        << i << ": " << (grads[0][i] - grads[1][i]).abs().max().item<double>();
}

TEST(DpoTrainer, RunCheckpointsLikeTheTrainerAndLearnsThePreferences) {
  auto& f = fx();
  TempDir out("ktl-dpo-run");
  RecordingSink sink;
  auto c = small_config();
  c.train.max_steps = 16;
  c.train.save_steps = 4;
  c.train.keep_last_checkpoints = 2;
  ktl::DpoTrainer t(c, tiny_model(4), tiny_model(4), f.tok, f.tmpl, pairs(), {}, out.path(), sink,
                    torch::kCPU);
  const auto r = t.run();
  EXPECT_EQ(r.status, ktl::TrainStatus::kCompleted);
  EXPECT_EQ(r.step, 16);
  EXPECT_EQ(r.split, "train");  // no held-out pair: the final figures are over the train pairs
  EXPECT_LT(r.last.loss, std::log(2.0) - 0.05);
  EXPECT_GT(r.last.reward_accuracy, 0.8);
  for (const char* k :
       {"train/loss", "train/reward_accuracy", "train/reward_margin", "train/chosen_reward",
        "train/rejected_reward", "train/lr", "train/grad_norm"})
    EXPECT_TRUE(sink.has(std::string("metric ") + k)) << k;
  // Every checkpoint comes after a flush of everything reported before it.
  for (size_t i = 0; i < sink.events.size(); ++i) {
    if (sink.events[i].rfind("checkpoint ", 0) != 0) continue;
    size_t j = i;
    while (j > 0 && sink.events[j - 1].rfind("metric ", 0) != 0 && sink.events[j - 1] != "flush")
      --j;
    ASSERT_GT(j, 0u);
    EXPECT_EQ(sink.events[j - 1], "flush") << sink.events[i];
  }
  // Rotation keeps the last two; latest and final point at the end.
  EXPECT_EQ(sink.deleted.size(), 2u);
  EXPECT_FALSE(fs::exists(out / "checkpoint-8"));
  EXPECT_TRUE(fs::exists(out / "checkpoint-12/optimizer.safetensors"));
  EXPECT_EQ(fs::read_symlink(out / "latest").string(), "checkpoint-16");
  EXPECT_EQ(fs::read_symlink(out / "final").string(), "checkpoint-16");
  const auto state =
      nlohmann::json::parse(ktl::read_file(out / "checkpoint-16/trainer_state.json"));
  EXPECT_EQ(state["step"], 16);
  EXPECT_EQ(state["dpo"]["loss"], "dpo");
  EXPECT_EQ(state["dpo"]["reference_logprobs"], 6);  // 16 steps of 2 drew every pair
  EXPECT_TRUE(state["dpo"]["reference_complete"].get<bool>());
  EXPECT_TRUE(fs::exists(out / "checkpoint-16/training_config.yaml"));
  EXPECT_EQ(ktl::read_checkpoint_meta(out / "checkpoint-16").extra.at("dpo_loss"), "dpo");
}

// A stop request checkpoints at the next step; a new trainer restored from that checkpoint (the
// reference log-probabilities computed so far come from it) ends with the weights of an
// uninterrupted run.
TEST(DpoTrainer, StopThenRestoreEndsWithTheUninterruptedWeights) {
  auto& f = fx();
  const auto all = pairs();
  const std::vector<ktl::PreferencePair> train(all.begin(), all.end() - 2),
      val(all.end() - 2, all.end());
  auto c = small_config();
  c.train.max_steps = 10;
  c.train.eval_steps = 5;
  ktl::ConsoleMetricsSink quiet(stdout);
  TempDir whole("ktl-dpo-whole"), parts("ktl-dpo-parts");
  auto straight = tiny_model(6);
  ktl::DpoTrainer(c, straight, tiny_model(6), f.tok, f.tmpl, train, val, whole.path(), quiet,
                  torch::kCPU)
      .run();

  RecordingSink sink;
  ktl::DpoTrainer first(c, tiny_model(6), tiny_model(6), f.tok, f.tmpl, train, val, parts.path(),
                        sink, torch::kCPU);
  sink.on_progress = [&](int64_t step) {
    if (step == 4) first.request_stop();
  };
  const auto stopped = first.run();
  ASSERT_EQ(stopped.status, ktl::TrainStatus::kStopped);
  EXPECT_EQ(stopped.step, 4);
  EXPECT_EQ(fs::read_symlink(parts / "latest").string(), "checkpoint-4");
  EXPECT_FALSE(fs::exists(parts / "final"));

  auto ck = ktl::load_checkpoint(parts / "checkpoint-4");
  ck.model->train();
  ktl::DpoTrainer second(c, ck.model, tiny_model(6), f.tok, f.tmpl, train, val, parts.path(), quiet,
                         torch::kCPU);
  second.restore(parts / "checkpoint-4");
  EXPECT_EQ(second.step(), 4);
  const auto done = second.run();
  EXPECT_EQ(done.status, ktl::TrainStatus::kCompleted);
  EXPECT_EQ(done.split, "val");
  EXPECT_LT(max_abs_diff(*straight, *ck.model), 1e-6);
}

// max_minutes ends the run like the trainer's: final checkpoint and link, the LR on its floor.
TEST(DpoTrainer, TimeBudgetEndsTheRunWithAFinalCheckpoint) {
  auto& f = fx();
  TempDir out("ktl-dpo-budget");
  ktl::ConsoleMetricsSink quiet(stdout);
  auto c = small_config();
  c.train.max_steps = 1000000;
  c.train.max_minutes = 0.002;  // 120 ms of steps
  // No warmup: on a loaded machine the budget can end inside it, where the LR is not the decay's.
  c.train.warmup_steps = 0;
  ktl::DpoTrainer t(c, tiny_model(5), tiny_model(5), f.tok, f.tmpl, pairs(), {}, out.path(), quiet,
                    torch::kCPU);
  const auto r = t.run();
  EXPECT_EQ(r.status, ktl::TrainStatus::kCompleted);
  EXPECT_GT(r.step, 0);
  EXPECT_LT(r.step, 1000000);
  EXPECT_EQ(fs::read_symlink(out / "final").string(), "checkpoint-" + std::to_string(r.step));
  const auto state = nlohmann::json::parse(ktl::read_file(out / "final/trainer_state.json"));
  EXPECT_NEAR(state["next_learning_rate"].get<double>(), c.train.min_learning_rate, 1e-9);
}

TEST(DpoTrainer, RestoreRefusesAnotherLossOrOtherPairs) {
  auto& f = fx();
  TempDir out("ktl-dpo-refuse");
  ktl::ConsoleMetricsSink quiet(stdout);
  auto c = small_config();
  c.train.max_steps = 2;
  c.train.save_steps = 1;
  ktl::DpoTrainer(c, tiny_model(7), tiny_model(7), f.tok, f.tmpl, pairs(), {}, out.path(), quiet,
                  torch::kCPU)
      .run();
  const std::string ck = out / "checkpoint-2";
  // Reference log-probabilities are computed for the pairs drawn, not for all of them (the
  // final evaluation over every training pair then adds the rest).
  const auto state = nlohmann::json::parse(ktl::read_file(out / "checkpoint-1/trainer_state.json"));
  EXPECT_LE(state["dpo"]["reference_logprobs"].get<int>(), 2);  // 1 step of 2 pairs
  EXPECT_FALSE(state["dpo"]["reference_complete"].get<bool>());
  ktl::DpoTrainer orpo(small_config(ktl::PreferenceLoss::kOrpo), tiny_model(7), nullptr, f.tok,
                       f.tmpl, pairs(), {}, out.path(), quiet, torch::kCPU);
  try {
    orpo.restore(ck);
    ADD_FAILURE() << "an orpo trainer restored a dpo checkpoint";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("trained with --loss dpo"), std::string::npos) << e.what();
  }
  auto fewer = pairs();
  fewer.pop_back();
  ktl::DpoTrainer other(c, tiny_model(7), tiny_model(7), f.tok, f.tmpl, fewer, {}, out.path(),
                        quiet, torch::kCPU);
  try {
    other.restore(ck);
    ADD_FAILURE() << "restored with other pairs";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("preference pairs"), std::string::npos) << e.what();
  }
  // dpo without a reference and nothing to restore it from cannot start.
  ktl::DpoTrainer bare(c, tiny_model(7), nullptr, f.tok, f.tmpl, pairs(), {}, out.path(), quiet,
                       torch::kCPU);
  EXPECT_THROW(bare.train_step(), std::runtime_error);
}

TEST(DpoTrainer, OrpoNeedsNoReferenceAndRaisesTheChosenReplies) {
  auto& f = fx();
  TempDir out("ktl-orpo");
  RecordingSink sink;
  auto c = small_config(ktl::PreferenceLoss::kOrpo);
  c.train.max_steps = 12;
  c.orpo_lambda = 0.5;
  ktl::DpoTrainer t(c, tiny_model(8), nullptr, f.tok, f.tmpl, pairs(), {}, out.path(), sink,
                    torch::kCPU);
  const auto before = t.evaluate_train();
  const auto r = t.run();
  EXPECT_EQ(r.status, ktl::TrainStatus::kCompleted);
  EXPECT_LT(r.last.nll, before.nll - 0.5) << "from " << before.nll;
  EXPECT_GT(r.last.log_odds, before.log_odds);
  EXPECT_TRUE(sink.has("metric train/nll"));
  EXPECT_TRUE(sink.has("metric train/log_odds"));
  const auto state = nlohmann::json::parse(ktl::read_file(out / "final/trainer_state.json"));
  EXPECT_EQ(state["dpo"]["loss"], "orpo");
  EXPECT_EQ(state["dpo"]["reference_logprobs"], 0);
}

}  // namespace
