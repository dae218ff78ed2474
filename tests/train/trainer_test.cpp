// Trainer behaviour on a tiny model: learning, overfitting, gradient accumulation, gradient
// checkpointing, bit-identical resume, corrupt checkpoints, rotation, divergence and stop.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include "core/model/checkpoint.h"
#include "core/task_eval/likelihood_scorer.h"
#include "core/tokenizer/tokenizer.h"
#include "core/train/adamw.h"
#include "core/train/checkpointed_forward.h"
#include "core/train/data_loader.h"
#include "core/train/lr_schedule.h"
#include "core/train/trainer.h"
#include "jobs/job_store.h"
#include "jobs/sqlite_metrics_sink.h"
#include "tests/support/tiny_checkpoint.h"

namespace fs = std::filesystem;
using ktl::testing::TempDir;

namespace {

struct RecordingSink : ktl::MetricsSink {
  std::vector<std::tuple<std::string, int64_t, double>> metrics;
  std::vector<std::tuple<int64_t, std::string, std::string, std::string>> samples;
  std::vector<std::string> lines, checkpoints, deleted;
  std::function<void(int64_t)> on_progress;
  void metric(const std::string& k, int64_t s, double v) override { metrics.emplace_back(k, s, v); }
  void sample(int64_t s, const std::string& p, const std::string& t,
              const std::string& k) override {
    samples.emplace_back(s, p, t, k);
  }
  void checkpoint(int64_t, const std::string& path, const std::map<std::string, double>&) override {
    checkpoints.push_back(path);
  }
  void checkpoint_deleted(int64_t, const std::string& path) override { deleted.push_back(path); }
  void progress(int64_t step, int64_t) override {
    if (on_progress) on_progress(step);
  }
  void log(const std::string& l) override { lines.push_back(l); }
  std::vector<double> values(const std::string& key) const {
    std::vector<double> v;
    for (const auto& [k, s, x] : metrics)
      if (k == key) v.push_back(x);
    return v;
  }
};

class TrainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("ktl-trainer");
    tok_ = ktl::Tokenizer::load(ktl::testing::make_tiny_tokenizer(dir_->path() + "/tok"));
    auto encode_docs = [](size_t n, unsigned seed) {
      std::vector<int64_t> ids;
      for (const auto& s : ktl::testing::korean_sentences(n, seed)) {
        ids.push_back(tok_->eos_id());
        for (int id : tok_->encode(s)) ids.push_back(id);
      }
      return ids;
    };
    train_ = std::make_shared<ktl::VectorTokenSource>(encode_docs(1500, 11));
    val_ = std::make_shared<ktl::VectorTokenSource>(encode_docs(200, 12));
  }
  static void TearDownTestSuite() {
    delete dir_;
    tok_.reset();
  }
  void SetUp() override { torch::set_num_threads(1); }

  static ktl::TrainingConfig small_config() {
    ktl::TrainingConfig c;
    c.batch_size = 4;
    c.max_seq_length = 32;
    c.learning_rate = 3e-3;
    c.min_learning_rate = 3e-4;
    c.warmup_steps = 3;
    c.max_steps = 20;
    c.weight_decay = 0.01;
    c.save_steps = 0;
    c.eval_steps = 0;
    c.eval_batches = 2;
    c.log_steps = 5;
    c.sample_steps = 0;
    c.bf16 = "false";
    c.device = "cpu";
    c.seed = 7;
    return c;
  }
  static ktl::Transformer make_model(uint64_t seed = 3) {
    ktl::Transformer m(ktl::testing::tiny_model_config(tok_->vocab_size()));
    m->init_weights(seed);
    return m;
  }
  std::unique_ptr<ktl::Trainer> make_trainer(const ktl::TrainingConfig& c, ktl::Transformer m,
                                             const std::string& out, RecordingSink& sink) {
    ktl::TrainerData data;
    data.train = train_;
    data.val = val_;
    return std::make_unique<ktl::Trainer>(c, m, tok_, data, out, sink, torch::kCPU);
  }
  static std::vector<torch::Tensor> grads(ktl::TransformerImpl& m) {
    std::vector<torch::Tensor> g;
    for (auto& p : m.parameters()) g.push_back(p.grad().clone());
    return g;
  }

  static TempDir* dir_;
  static std::shared_ptr<ktl::Tokenizer> tok_;
  static std::shared_ptr<ktl::VectorTokenSource> train_, val_;
};

TempDir* TrainerTest::dir_ = nullptr;
std::shared_ptr<ktl::Tokenizer> TrainerTest::tok_;
std::shared_ptr<ktl::VectorTokenSource> TrainerTest::train_, TrainerTest::val_;

TEST_F(TrainerTest, BatchesAreDeterministicWindowsOfTheSource) {
  ktl::TrainBatchSampler s(train_, 4, 32, 99, 2);
  auto a = s.batch(5, 1), b = s.batch(5, 1), c = s.batch(6, 0);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, c));
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{4, 33}));
  // Each row is a contiguous window of the source.
  std::vector<int64_t> all(size_t(train_->size()));
  train_->read(0, train_->size(), all.data());
  auto row = a[2];
  bool found = false;
  for (size_t off = 0; off + 33 <= all.size() && !found; ++off) {
    bool same = true;
    for (int i = 0; i < 33 && same; ++i) same = all[off + i] == row[i].item<int64_t>();
    found = same;
  }
  EXPECT_TRUE(found);
  ktl::TrainBatchSampler overfit(train_, 4, 32, 99, 1, 2);
  EXPECT_TRUE(torch::equal(overfit.batch(0, 0), overfit.batch(2, 0)));
  EXPECT_FALSE(torch::equal(overfit.batch(0, 0), overfit.batch(1, 0)));

  ktl::EvalBatches eval(val_, 4, 32, 3);
  EXPECT_EQ(eval.num_batches(), 3);
  auto e0 = eval.batch(0);
  EXPECT_EQ(e0[1][0].item<int64_t>(), e0[0][32].item<int64_t>());  // stride T
  const int64_t chars = eval.count_target_chars(*tok_);
  EXPECT_GT(chars, eval.num_target_tokens() / 2);  // Korean: ~1-4 chars per token
  EXPECT_LT(chars, eval.num_target_tokens() * 8);
}

TEST_F(TrainerTest, AdamWMatchesTorchAdamW) {
  auto w = torch::randn({5, 3}), b = torch::randn({3});
  auto w2 = w.clone().requires_grad_(true), b2 = b.clone().requires_grad_(true);
  w.requires_grad_(true), b.requires_grad_(true);
  ktl::AdamWOptions o;
  o.weight_decay = 0.1;
  ktl::AdamW mine({{"w", w}, {"b", b}}, o);
  EXPECT_TRUE(mine.decays("w"));
  EXPECT_FALSE(mine.decays("b"));
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(
      std::vector<torch::Tensor>{w2},
      std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(0.01).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1)));
  groups.emplace_back(
      std::vector<torch::Tensor>{b2},
      std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(0.01).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.0)));
  torch::optim::AdamW ref(groups, torch::optim::AdamWOptions(0.01));
  for (int i = 0; i < 5; ++i) {
    auto x = torch::randn({4, 5});
    mine.zero_grad();
    ref.zero_grad();
    (x.matmul(w) + b).pow(2).sum().backward();
    (x.matmul(w2) + b2).pow(2).sum().backward();
    mine.step(0.01);
    ref.step();
  }
  EXPECT_TRUE(torch::allclose(w, w2, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(b, b2, 1e-5, 1e-6));
}

TEST(AdamWForeach, MultiTensorUpdateEqualsThePerParameterLoop) {
  torch::manual_seed(5);
  auto make = [] {
    torch::manual_seed(6);
    return std::vector<std::pair<std::string, torch::Tensor>>{
        {"w", torch::randn({16, 8}).requires_grad_()},
        {"b", torch::randn({8}).requires_grad_()},
        {"unused", torch::randn({4, 4}).requires_grad_()}};  // never gets a gradient
  };
  auto pa = make(), pb = make();
  ktl::AdamWOptions o;
  o.weight_decay = 0.05;
  ktl::AdamW loop(pa, o);
  o.foreach = true;
  ktl::AdamW multi(pb, o);
  for (int step = 0; step < 5; ++step) {
    auto g1 = torch::randn({16, 8}), g2 = torch::randn({8});
    for (auto* ps : {&pa, &pb}) {
      (*ps)[0].second.mutable_grad() = g1.clone();
      (*ps)[1].second.mutable_grad() = g2.clone();
    }
    loop.step(1e-2 * (step + 1));
    multi.step(1e-2 * (step + 1));
  }
  for (size_t i = 0; i < pa.size(); ++i)
    EXPECT_TRUE(torch::allclose(pa[i].second, pb[i].second, 1e-6, 1e-7)) << pa[i].first;
  const auto sa = loop.state_tensors(), sb = multi.state_tensors();
  for (const auto& [k, t] : sa) EXPECT_TRUE(torch::allclose(t, sb.at(k), 1e-6, 1e-7)) << k;
  EXPECT_TRUE(torch::equal(pb[2].second, make()[2].second));  // no grad: untouched, no decay
}

TEST_F(TrainerTest, LossFallsOverAFewSteps) {
  TempDir out("ktl-train-out");
  RecordingSink sink;
  auto c = small_config();
  c.max_steps = 30;
  fs::create_directories(out / "checkpoint-99.tmp-1");  // left by a killed save
  auto t = make_trainer(c, make_model(), out.path(), sink);
  auto r = t->run();
  EXPECT_FALSE(fs::exists(out / "checkpoint-99.tmp-1"));
  EXPECT_EQ(r.status, ktl::TrainStatus::kCompleted);
  auto losses = sink.values("train/loss");
  ASSERT_GE(losses.size(), 2u);
  EXPECT_LT(losses.back(), losses.front() - 1.0) << losses.front() << " -> " << losses.back();
  ASSERT_TRUE(r.last_eval.has_value());
  EXPECT_GT(r.last_eval->bpc, 0.0);
  EXPECT_NEAR(r.last_eval->ppl, std::exp(r.last_eval->loss), 1e-6 * r.last_eval->ppl);
  // The end leaves checkpoint-30 with latest and final links.
  EXPECT_TRUE(fs::exists(out / "checkpoint-30/optimizer.safetensors"));
  EXPECT_EQ(fs::read_symlink(out / "latest").string(), "checkpoint-30");
  EXPECT_EQ(fs::read_symlink(out / "final").string(), "checkpoint-30");
  EXPECT_TRUE(fs::exists(out / "checkpoint-30/training_config.yaml"));
}

TEST_F(TrainerTest, OverfitsOneBatch) {
  TempDir out("ktl-train-out");
  RecordingSink sink;
  auto c = small_config();
  c.overfit_batches = 1;
  c.max_steps = 150;
  c.learning_rate = 1e-2;
  c.min_learning_rate = 1e-3;
  c.log_steps = 10;
  c.weight_decay = 0.0;
  auto t = make_trainer(c, make_model(), out.path(), sink);
  t->run();
  auto losses = sink.values("train/loss");
  ASSERT_FALSE(losses.empty());
  EXPECT_LT(losses.back(), 0.2) << "overfit loss stayed at " << losses.back();
}

TEST_F(TrainerTest, AccumulatedMicroBatchesEqualOneLargeBatch) {
  RecordingSink sink;
  TempDir out("ktl-train-out");
  auto c = small_config();
  auto m1 = make_model(), m2 = make_model();
  auto t1 = make_trainer(c, m1, out.path(), sink);
  auto t2 = make_trainer(c, m2, out.path(), sink);
  ktl::TrainBatchSampler s(train_, 8, 32, 5, 1);
  auto big = s.batch(0, 0);  // [8, 33]
  std::vector<torch::Tensor> micro = {big.narrow(0, 0, 2), big.narrow(0, 2, 2), big.narrow(0, 4, 2),
                                      big.narrow(0, 6, 2)};
  const double l1 = t1->accumulate_gradients({big});
  const double l2 = t2->accumulate_gradients(micro);
  EXPECT_NEAR(l1, l2, 1e-5);
  auto g1 = grads(*m1), g2 = grads(*m2);
  for (size_t i = 0; i < g1.size(); ++i)
    EXPECT_TRUE(torch::allclose(g1[i], g2[i], 1e-4, 1e-6)) << "parameter " << i;
}

TEST_F(TrainerTest, GradientCheckpointingGivesTheSameGradients) {
  for (const char* bf16 : {"false", "true"}) {
    RecordingSink sink;
    TempDir out("ktl-train-out");
    auto c = small_config();
    c.bf16 = bf16;
    auto m1 = make_model(), m2 = make_model();
    auto t1 = make_trainer(c, m1, out.path(), sink);
    c.gradient_checkpointing = true;
    auto t2 = make_trainer(c, m2, out.path(), sink);
    ktl::TrainBatchSampler s(train_, 4, 32, 5, 1);
    auto batch = s.batch(0, 0);
    const double l1 = t1->accumulate_gradients({batch});
    const double l2 = t2->accumulate_gradients({batch});
    EXPECT_DOUBLE_EQ(l1, l2) << bf16;
    auto g1 = grads(*m1), g2 = grads(*m2);
    for (size_t i = 0; i < g1.size(); ++i)
      EXPECT_TRUE(torch::allclose(g1[i], g2[i], 1e-5, 1e-7)) << "bf16=" << bf16 << " param " << i;
  }
}

TEST_F(TrainerTest, ResumeContinuesBitIdentically) {
  TempDir a("ktl-train-a"), b("ktl-train-b");
  auto c = small_config();
  c.max_steps = 8;
  c.save_steps = 4;
  c.eval_steps = 4;
  c.gradient_accumulation_steps = 2;
  RecordingSink sa;
  auto ta = make_trainer(c, make_model(), a.path(), sa);
  ta->run();
  ASSERT_TRUE(fs::exists(a / "checkpoint-4"));

  auto ck = ktl::load_checkpoint(a / "checkpoint-4");
  ck.model->train();
  RecordingSink sb;
  auto tb = make_trainer(c, ck.model, b.path(), sb);
  tb->restore(a / "checkpoint-4");
  EXPECT_EQ(tb->step(), 4);
  auto r = tb->run();
  EXPECT_EQ(r.step, 8);
  auto pa = ta->model().named_parameters(), pb = tb->model().named_parameters();
  for (const auto& p : pa)
    EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key() << " differs after resume";
  // Same learning rates for the resumed steps.
  auto la = sa.values("train/lr"), lb = sb.values("train/lr");
  ASSERT_FALSE(lb.empty());
  EXPECT_DOUBLE_EQ(la.back(), lb.back());
}

TEST_F(TrainerTest, CorruptCheckpointIsRefusedClearly) {
  TempDir a("ktl-train-a");
  auto c = small_config();
  c.max_steps = 2;
  RecordingSink s;
  make_trainer(c, make_model(), a.path(), s)->run();
  const std::string ck = a / "checkpoint-2";
  // Truncated optimizer state.
  const auto opt = fs::path(ck) / "optimizer.safetensors";
  fs::resize_file(opt, fs::file_size(opt) / 2);
  auto t = make_trainer(c, make_model(), a.path() + "/resumed", s);
  try {
    t->restore(ck);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("optimizer.safetensors"), std::string::npos) << e.what();
  }
  // Broken trainer state JSON.
  std::ofstream(fs::path(ck) / "trainer_state.json") << "{\"step\": ";
  try {
    t->restore(ck);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("trainer_state.json"), std::string::npos) << e.what();
  }
  // Truncated weights: the checkpoint loader refuses them.
  const auto w = fs::path(ck) / "model.safetensors";
  fs::resize_file(w, fs::file_size(w) - 100);
  EXPECT_THROW(ktl::load_checkpoint(ck), std::runtime_error);
}

TEST_F(TrainerTest, KeepsLastKAndBestAndWritesSamples) {
  TempDir out("ktl-train-out");
  RecordingSink sink;
  auto c = small_config();
  c.max_steps = 6;
  c.save_steps = 1;
  c.eval_steps = 1;
  c.keep_last_checkpoints = 2;
  c.sample_steps = 6;
  auto t = make_trainer(c, make_model(), out.path(), sink);
  t->run();
  int dirs = 0;
  for (const auto& e : fs::directory_iterator(out.path()))
    if (!e.is_symlink() && e.path().filename().string().rfind("checkpoint-", 0) == 0) ++dirs;
  const std::string best = fs::read_symlink(out / "best").string();
  EXPECT_TRUE(fs::exists(out / best));
  EXPECT_EQ(dirs, best == "checkpoint-5" || best == "checkpoint-6" ? 2 : 3);
  EXPECT_EQ(fs::read_symlink(out / "latest").string(), "checkpoint-6");
  EXPECT_EQ(sink.checkpoints.size(), 6u);
  // Rotation reports each deletion: reported minus deleted is exactly what is on disk.
  std::set<std::string> listed(sink.checkpoints.begin(), sink.checkpoints.end());
  for (const auto& d : sink.deleted) {
    EXPECT_FALSE(fs::exists(d)) << d;
    EXPECT_EQ(listed.erase(d), 1u) << d;
  }
  EXPECT_EQ(listed.size(), size_t(dirs));
  for (const auto& p : listed) EXPECT_TRUE(fs::is_directory(p)) << p;
  EXPECT_EQ(sink.samples.size(), 8u);  // 4 prompts x (greedy, sampled)
  int greedy = 0;
  for (const auto& s : sink.samples) greedy += std::get<3>(s) == "greedy";
  EXPECT_EQ(greedy, 4);
}

TEST_F(TrainerTest, NonFiniteLossStopsNamingTheStep) {
  TempDir out("ktl-train-out");
  RecordingSink sink;
  auto c = small_config();
  c.max_steps = 10;
  c.save_steps = 2;
  auto m = make_model();
  auto t = make_trainer(c, m, out.path(), sink);
  sink.on_progress = [&](int64_t step) {
    if (step == 3) {
      torch::NoGradGuard g;
      m->norm->weight.fill_(std::numeric_limits<float>::quiet_NaN());
    }
  };
  auto r = t->run();
  EXPECT_EQ(r.status, ktl::TrainStatus::kDiverged);
  EXPECT_NE(r.message.find("step 4"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("checkpoint-2"), std::string::npos) << r.message;
  EXPECT_TRUE(fs::exists(out / "checkpoint-2/meta.json"));
  EXPECT_FALSE(fs::exists(out / "checkpoint-4"));
}

TEST_F(TrainerTest, EarlyStoppingAfterPatienceEvaluationsWithoutImprovement) {
  TempDir out("ktl-train-out");
  RecordingSink sink;
  auto c = small_config();
  c.max_steps = 50;
  c.eval_steps = 1;
  c.early_stopping_patience = 2;
  c.learning_rate = 1e-30;  // updates below fp32 resolution: the val loss cannot improve
  c.min_learning_rate = 0;
  auto t = make_trainer(c, make_model(), out.path(), sink);
  auto r = t->run();
  EXPECT_EQ(r.status, ktl::TrainStatus::kEarlyStopped);
  EXPECT_EQ(r.step, 3);  // best at step 1, no improvement at 2 and 3
  EXPECT_EQ(sink.values("val/loss").size(), 3u);
  EXPECT_TRUE(fs::exists(out / "checkpoint-3/meta.json"));
  EXPECT_EQ(fs::read_symlink(out / "final").string(), "checkpoint-3");
}

TEST_F(TrainerTest, StopRequestSavesACheckpoint) {
  TempDir out("ktl-train-out");
  RecordingSink sink;
  auto c = small_config();
  c.max_steps = 50;
  auto t = make_trainer(c, make_model(), out.path(), sink);
  sink.on_progress = [&](int64_t step) {
    if (step == 3) t->request_stop();
  };
  auto r = t->run();
  EXPECT_EQ(r.status, ktl::TrainStatus::kStopped);
  EXPECT_EQ(r.step, 3);
  EXPECT_TRUE(fs::exists(out / "checkpoint-3/trainer_state.json"));
}

}  // namespace

namespace {

TEST_F(TrainerTest, RunUntilPausesWithACheckpointAndContinuesLikeOneRun) {
  // A sweep rung: train to step 4 of 8, then restore and go on; the weights equal one run to 8.
  TempDir a("ktl-train-a"), b("ktl-train-b");
  auto c = small_config();
  c.max_steps = 8;
  c.eval_steps = 2;
  RecordingSink sa, sb;
  auto whole = make_trainer(c, make_model(), a.path(), sa);
  whole->run();
  auto first = make_trainer(c, make_model(), b.path(), sb);
  auto r = first->run(4);
  EXPECT_EQ(r.status, ktl::TrainStatus::kPaused);
  EXPECT_EQ(r.step, 4);
  ASSERT_TRUE(r.last_eval.has_value());  // evaluated where it paused
  ASSERT_TRUE(fs::exists(b / "checkpoint-4"));
  EXPECT_FALSE(fs::exists(b / "final"));
  auto ck = ktl::load_checkpoint(b / "checkpoint-4");
  ck.model->train();
  RecordingSink sc;
  auto second = make_trainer(c, ck.model, b.path(), sc);
  second->restore(b / "checkpoint-4");
  EXPECT_EQ(second->run(8).status, ktl::TrainStatus::kCompleted);
  auto pa = whole->model().named_parameters(), pb = second->model().named_parameters();
  for (const auto& p : pa)
    EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key() << " differs";
}

TEST_F(TrainerTest, TimeBudgetEndsTheRunWithTheLearningRateOnItsFloor) {
  TempDir out("ktl-train-budget");
  RecordingSink sink;
  auto c = small_config();
  c.max_steps = 1000000;  // never reached: the budget ends the run
  c.max_minutes = 0.03;   // 1.8 s of steps
  c.log_steps = 1;        // lr and tokens/s of every step
  auto t = make_trainer(c, make_model(), out.path(), sink);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = t->run();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.status, ktl::TrainStatus::kCompleted);
  EXPECT_GT(r.step, c.warmup_steps);
  EXPECT_LT(r.step, c.max_steps);
  EXPECT_GE(wall, 1.8);
  EXPECT_TRUE(fs::exists(out / "final"));
  const auto lrs = sink.values("train/lr"), tps = sink.values("train/tokens_per_s");
  ASSERT_EQ(lrs.size(), size_t(r.step));
  ASSERT_EQ(tps.size(), size_t(r.step));
  for (size_t i = c.warmup_steps; i + 1 < lrs.size(); ++i) EXPECT_LE(lrs[i + 1], lrs[i]) << i;
  // The last step began with less than its own duration of the budget left, so the cosine was
  // at least at progress 1 - dt/budget: at (or, on a slow machine, near) its floor.
  const double dt_last = double(c.batch_size) * c.max_seq_length / tps.back();
  const double budget_s = 60.0 * c.max_minutes;
  ktl::LrSchedule schedule(c.learning_rate, c.min_learning_rate, c.warmup_steps, c.max_steps);
  EXPECT_LE(lrs.back(), schedule.at_progress(r.step, 1.0 - dt_last / budget_s) + 1e-12);
  EXPECT_LT(lrs.back(), 0.5 * c.learning_rate);
}

TEST_F(TrainerTest, LogsTheLoopRateExcludingEval) {
  TempDir out("ktl-train");
  auto c = small_config();
  c.max_steps = 6;
  c.eval_steps = 2;
  c.log_steps = 3;
  // Each of the 3 evals (steps 2, 4, 6) takes at least 400 ms (its val/loss write sleeps). A
  // rate that excludes them is above tokens / (wall - 1.0 s) however slow the steps are on a
  // loaded machine; one that counted them would be tokens / wall.
  struct SlowEvalSink : RecordingSink {
    void metric(const std::string& k, int64_t s, double v) override {
      if (k == "val/loss") std::this_thread::sleep_for(std::chrono::milliseconds(400));
      RecordingSink::metric(k, s, v);
    }
  } sink;
  auto t = make_trainer(c, make_model(), out.path(), sink);
  const auto t0 = std::chrono::steady_clock::now();
  t->run();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double tokens = double(c.batch_size) * c.max_seq_length * c.max_steps;
  const auto loop = sink.values("train/loop_tokens_per_s");
  ASSERT_EQ(loop.size(), 2u);
  EXPECT_GT(loop.back(), 0);
  ASSERT_GT(wall, 1.2);
  EXPECT_GT(t->loop_tokens_per_s(), tokens / (wall - 1.0))
      << "loop " << t->loop_tokens_per_s() << " tok/s, whole run " << tokens / wall;
  bool progress = false, summary = false;
  for (const auto& l : sink.lines) {
    progress |= l.find("tok/s excl. eval") != std::string::npos;
    summary |= l.find("throughput:") != std::string::npos;
  }
  EXPECT_TRUE(progress);
  EXPECT_TRUE(summary);
}

TEST_F(TrainerTest, AutoPrecisionTimesRealStepsAndLeavesTheWeights) {
  TempDir out("ktl-train");
  auto c = small_config();
  c.bf16 = "auto";
  auto m = make_model();
  std::vector<torch::Tensor> before;
  for (const auto& p : m->parameters()) before.push_back(p.detach().clone());
  RecordingSink sink;
  auto t = make_trainer(c, m, out.path(), sink);
  const auto& timing = t->precision_timing();
  EXPECT_GT(timing.fp32_s, 0);
  EXPECT_GT(timing.bf16_s, 0);
  EXPECT_EQ(t->precision() == ktl::Precision::kBf16, timing.bf16_s <= 0.9 * timing.fp32_s);
  EXPECT_EQ(sink.values("precision/fp32_step_s").size(), 1u);
  bool why = false;
  for (const auto& l : sink.lines) why |= l.find("s/step") != std::string::npos;
  EXPECT_TRUE(why);
  auto params = m->parameters();
  for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(torch::equal(params[i], before[i]));
  for (const auto& p : params)
    EXPECT_FALSE(p.grad().defined() && p.grad().abs().sum().item<double>() > 0);
}

TEST(ChoosePrecision, PicksBf16OnlyWhenItsMedianStepIsTenPercentShorter) {
  // Fake steps with fixed costs: the rule, not the hardware.
  auto pick = [](double f32_ms, double b16_ms) {
    auto step = [&](ktl::Precision p) {
      std::this_thread::sleep_for(std::chrono::microseconds(
          int64_t(1000 * (p == ktl::Precision::kBf16 ? b16_ms : f32_ms))));
    };
    std::string why;
    ktl::PrecisionTiming t;
    auto chosen = ktl::choose_precision_by_step_time(step, 1, 3, &why, &t);
    EXPECT_NE(why.find("s/step"), std::string::npos);
    return std::make_pair(chosen, t);
  };
  auto [slow_bf16, t1] = pick(10, 30);
  EXPECT_EQ(slow_bf16, ktl::Precision::kFp32);
  EXPECT_GT(t1.bf16_s, t1.fp32_s);
  EXPECT_EQ(pick(40, 10).first, ktl::Precision::kBf16);
}

// task_eval: accuracy by likelihood at each evaluation, through the sink into the job store,
// equal to scoring the final model directly.
TEST_F(TrainerTest, TaskEvalMetricsReachTheJobStore) {
  TempDir out("ktl-task-eval");
  const std::string tasks = out.path() + "/tasks.jsonl";
  {
    std::ofstream f(tasks);
    f << R"({"context": "나는 학교에서", "choices": [" 책을", " 고양이가"], "gold": 0})"
      << "\n"
      << R"({"context": "우리는", "choices": [" 밥을", " 도서관에서", " 어제"], "gold": 1})"
      << "\n"
      << R"({"context": "고양이가 공원에서", "choices": [" 잤다", " 노래를"], "gold": 1})"
      << "\n";
  }
  const std::string db = out.path() + "/jobs.db";
  int64_t job = 0;
  {
    ktl::jobs::JobStore store(db);
    job = store.create_job({ktl::jobs::JobKind::kTrain, "t", "{}", {}, nullptr}).id;
  }
  auto c = small_config();
  c.max_steps = 10;
  c.eval_steps = 5;
  c.task_eval = "mc:" + tasks;
  ktl::Transformer m = make_model();
  {
    ktl::jobs::SqliteMetricsSink sink(db, job);
    ktl::TrainerData data;
    data.train = train_;
    data.val = val_;
    ktl::Trainer t(c, m, tok_, data, out.path() + "/run", sink, torch::kCPU);
    t.run();
  }
  ktl::jobs::JobStore store(db);
  const auto acc = store.metrics(job, "task/mc/acc");
  const auto norm = store.metrics(job, "task/mc/acc_norm");
  ASSERT_EQ(acc.size(), 2u);
  ASSERT_EQ(norm.size(), 2u);
  EXPECT_EQ(acc[0].step, 5);
  EXPECT_EQ(acc[1].step, 10);
  const auto task = ktl::load_mc_task("mc", tasks);
  const auto direct = ktl::evaluate_mc_task(m, *tok_, task, {}, torch::kCPU);
  EXPECT_DOUBLE_EQ(acc[1].value, direct.acc);
  EXPECT_DOUBLE_EQ(norm[1].value, direct.acc_norm);
  // A bad entry stops the run before its first step.
  c.task_eval = "mc:" + out.path() + "/missing.jsonl";
  RecordingSink rs;
  EXPECT_THROW(make_trainer(c, make_model(), out.path() + "/run2", rs), std::runtime_error);
}

}  // namespace
