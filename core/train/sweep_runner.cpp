#include "core/train/sweep_runner.h"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "core/base/file_util.h"
#include "core/model/checkpoint.h"
#include "core/model/model.h"
#include "core/tokenizer/tokenizer.h"
#include "core/train/trainer.h"

namespace ktl {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kStateFile = "sweep_state.json";

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Forwards one trial's reports under "trial/<id>/", and its progress as the sweep's.
class TrialSink : public MetricsSink {
 public:
  TrialSink(MetricsSink& out, int trial, int64_t progress_base, int64_t rung_start,
            int64_t progress_total)
      : out_(out),
        prefix_("trial/" + std::to_string(trial) + "/"),
        tag_("[trial " + std::to_string(trial) + "] "),
        base_(progress_base),
        rung_start_(rung_start),
        total_(progress_total) {}
  void metric(const std::string& key, int64_t step, double value) override {
    out_.metric(prefix_ + key, step, value);
  }
  void sample(int64_t, const std::string&, const std::string&, const std::string&) override {}
  // Trial checkpoints are the sweep's business, not the job's checkpoint list.
  void checkpoint(int64_t, const std::string&, const std::map<std::string, double>&) override {}
  void progress(int64_t step, int64_t) override {
    out_.progress(base_ + std::max<int64_t>(0, step - rung_start_), total_);
  }
  void log(const std::string& line) override { out_.log(tag_ + line); }
  void flush() override { out_.flush(); }

 private:
  MetricsSink& out_;
  std::string prefix_, tag_;
  int64_t base_, rung_start_, total_;
};

std::string fmt(double v, const char* f = "%.4f") {
  if (!std::isfinite(v)) return "—";
  char buf[32];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

struct SweepRunner::Impl {
  SweepSpace space;
  SweepRunOptions opts;
  MetricsSink& sink;
  std::vector<TrialConfig> trials;
  SuccessiveHalving halving;
  double elapsed_s = 0;       // across resumes
  std::string precision;      // "" until measured, then "true"/"false" for bf16
  json precision_timing;      // what auto measured
  std::map<int, json> extra;  // per trial: val_bpc, seconds
  std::atomic<bool> stop{false};
  std::mutex mu;
  Trainer* current = nullptr;  // under mu
  std::shared_ptr<Tokenizer> tokenizer;
  TrainerData data;

  Impl(SweepSpace s, SweepRunOptions o, MetricsSink& k)
      : space(std::move(s)),
        opts(std::move(o)),
        sink(k),
        trials(generate_trials(space)),
        halving(space.halving.rungs(), int(trials.size()), space.halving.eta) {}

  fs::path trial_dir(int id) const {
    return fs::path(opts.output_dir) / ("trial-" + std::to_string(id));
  }

  json trials_json() const {
    json a = json::array();
    for (const auto& t : trials) a.push_back({{"id", t.id}, {"overrides", t.overrides}});
    return a;
  }

  void save_state(bool finished) {
    json j;
    j["version"] = 1;
    j["trials"] = trials_json();
    j["halving"] = json::parse(halving.to_json());
    j["elapsed_s"] = elapsed_s;
    j["budget_minutes"] = space.budget_minutes;
    j["precision"] = precision;
    j["precision_step_seconds"] = precision_timing;
    json ex = json::object();
    for (const auto& [id, e] : extra) ex[std::to_string(id)] = e;
    j["trial_results"] = ex;
    j["finished"] = finished;
    // Ranked rows for readers without the halving logic (the server, the dashboard).
    json ranked = json::array();
    for (const auto& r : rows())
      ranked.push_back({{"id", r.id},
                        {"state", trial_state_name(r.state)},
                        {"overrides", r.overrides},
                        {"steps", r.steps},
                        {"val_loss", std::isfinite(r.val_loss) ? json(r.val_loss) : json(nullptr)},
                        {"val_bpc", r.val_bpc > 0 ? json(r.val_bpc) : json(nullptr)},
                        {"seconds", r.seconds},
                        {"note", r.note}});
    j["ranking"] = ranked;
    write_file_atomic(fs::path(opts.output_dir) / kStateFile, j.dump(2) + "\n");
  }

  void load_state() {
    const fs::path p = fs::path(opts.output_dir) / kStateFile;
    if (!fs::exists(p)) return;
    json j;
    try {
      j = json::parse(read_file(p));
      if (j.at("trials") != trials_json())
        throw std::runtime_error(
            "it was written for a different search space (use a new output directory)");
      halving.restore_json(j.at("halving").dump());
      elapsed_s = j.at("elapsed_s").get<double>();
      precision = j.value("precision", "");
      precision_timing = j.value("precision_step_seconds", json());
      const json results = j.value("trial_results", json::object());
      if (results.is_object())
        for (const auto& [k, v] : results.items())
          if (v.is_object()) extra[std::stoi(k)] = v;
    } catch (const json::exception& e) {
      throw std::runtime_error(p.string() + ": " + e.what());
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(p.string() + ": " + e.what());
    }
    sink.log("sweep: resuming from " + p.string() + " (" + fmt(elapsed_s / 60, "%.1f") +
             " min used)");
  }

  // Planned work in steps if every rung keeps ceil(n / eta): the progress total.
  int64_t planned_steps() const {
    const auto rungs = halving.rungs();
    int64_t total = 0, n = int64_t(trials.size()), prev = 0;
    for (int64_t r : rungs) {
      total += n * (r - prev);
      prev = r;
      n = (n + space.halving.eta - 1) / space.halving.eta;
    }
    return total;
  }

  int64_t done_steps() const {
    const auto rungs = halving.rungs();
    int64_t d = 0;
    for (const auto& t : halving.trials())
      if (!t.rung_loss.empty()) d += rungs[t.rung_loss.size() - 1];
    return d;
  }

  // Trains `w.trial` to rung `w.rung`; returns its val loss (NaN: diverged), or nullopt when
  // stopped on request.
  std::optional<double> run_rung(const HalvingWork& w) {
    const auto& trial = trials[size_t(w.trial)];
    const auto rungs = halving.rungs();
    const int64_t from = w.rung == 0 ? 0 : rungs[size_t(w.rung - 1)];
    const fs::path dir = trial_dir(trial.id);
    // A rung cut short left checkpoints past `from`: train it again from `from`.
    if (w.rung == 0) fs::remove_all(dir);
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("checkpoint-", 0) == 0 && !e.is_symlink() &&
          std::stoll(name.substr(11)) > from)
        fs::remove_all(e.path());
    }
    TrainingConfig cfg = opts.base;
    ModelConfig mc = opts.model;
    mc.vocab_size = tokenizer->vocab_size();
    apply_trial(trial, space.halving, cfg, mc);
    cfg.max_minutes = 0;  // rungs are counted in steps
    cfg.eval_steps = int(space.halving.min_steps);
    // The same validation windows for every trial whatever its batch size (eval batches are
    // batch_size windows each): base eval_batches x base batch_size windows.
    const int64_t windows = int64_t(opts.base.eval_batches) * opts.base.batch_size;
    cfg.eval_batches = int((windows + cfg.batch_size - 1) / cfg.batch_size);
    cfg.save_steps = 0;
    cfg.sample_steps = 0;
    cfg.early_stopping_patience = 0;
    cfg.keep_last_checkpoints = 2;
    if (!precision.empty() && cfg.bf16 == "auto") cfg.bf16 = precision;
    Transformer model{nullptr};
    const fs::path ckpt = dir / ("checkpoint-" + std::to_string(from));
    if (w.rung == 0) {
      model = Transformer(mc);
      model->init_weights(uint64_t(cfg.seed));
      model->to(opts.device);
    } else {
      if (!fs::exists(ckpt))
        throw std::runtime_error("sweep: trial " + std::to_string(trial.id) + " lost " +
                                 ckpt.string() + " (needed to continue it)");
      model = load_checkpoint(ckpt.string(), opts.device).model;
    }
    TrialSink tsink(sink, trial.id, done_steps(), from, planned_steps());
    Trainer trainer(cfg, model, tokenizer, data, dir.string(), tsink, opts.device);
    if (w.rung > 0) trainer.restore(ckpt.string());
    if (precision.empty() && opts.base.bf16 == "auto") {
      precision = trainer.precision() == Precision::kBf16 ? "true" : "false";
      const auto& t = trainer.precision_timing();
      if (t.fp32_s > 0) precision_timing = {{"fp32", t.fp32_s}, {"bf16", t.bf16_s}};
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      current = &trainer;
    }
    if (stop.load()) trainer.request_stop();
    TrainResult r;
    try {
      r = trainer.run(w.steps);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu);
      current = nullptr;
      throw;
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      current = nullptr;
    }
    if (r.status == TrainStatus::kStopped) return std::nullopt;
    if (r.status == TrainStatus::kDiverged || !r.last_eval)
      return std::numeric_limits<double>::quiet_NaN();
    extra[trial.id]["val_bpc"] = r.last_eval->bpc;
    return r.last_eval->loss;
  }

  std::vector<SweepTrialRow> rows() const {
    std::vector<SweepTrialRow> out;
    const auto rungs = halving.rungs();
    for (int id : halving.ranking()) {
      const auto& p = halving.trials()[size_t(id)];
      SweepTrialRow row;
      row.id = id;
      row.state = p.state;
      row.overrides = trials[size_t(id)].overrides;
      row.note = p.note;
      row.steps = p.rung_loss.empty() ? 0 : rungs[p.rung_loss.size() - 1];
      row.val_loss =
          p.rung_loss.empty() ? std::numeric_limits<double>::quiet_NaN() : p.rung_loss.back();
      if (auto it = extra.find(id); it != extra.end() && it->second.is_object()) {
        row.val_bpc = it->second.value("val_bpc", 0.0);
        row.seconds = it->second.value("seconds", 0.0);
      }
      out.push_back(std::move(row));
    }
    return out;
  }
};

SweepRunner::SweepRunner(SweepSpace space, SweepRunOptions opts, MetricsSink& sink)
    : impl_(std::make_unique<Impl>(std::move(space), std::move(opts), sink)) {}

SweepRunner::~SweepRunner() = default;

void SweepRunner::request_stop() {
  impl_->stop.store(true);
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (impl_->current) impl_->current->request_stop();
}

std::string sweep_ranking_markdown(const std::vector<SweepTrialRow>& rows) {
  std::ostringstream os;
  os << "| rank | trial | val loss | val bpc | steps | state | minutes | config |\n"
        "|---|---|---|---|---|---|---|---|\n";
  int rank = 0;
  for (const auto& r : rows) {
    std::string cfg;
    for (const auto& [k, v] : r.overrides) cfg += (cfg.empty() ? "" : ", ") + k + "=" + v;
    os << "| " << ++rank << " | " << r.id << " | " << fmt(r.val_loss) << " | "
       << (r.val_bpc > 0 ? fmt(r.val_bpc) : "—") << " | " << r.steps << " | "
       << trial_state_name(r.state) << " | " << fmt(r.seconds / 60, "%.1f") << " | " << cfg
       << " |\n";
  }
  return os.str();
}

SweepResult SweepRunner::run() {
  auto& m = *impl_;
  fs::create_directories(m.opts.output_dir);
  const fs::path data(m.opts.data_dir);
  const fs::path tok = data / "tokenizer.model";
  if (!fs::exists(tok))
    throw std::runtime_error(tok.string() + " not found (run `ktl prepare-data` first)");
  m.tokenizer = Tokenizer::load(tok.string());
  m.data = open_training_data(m.opts.data_dir);
  if (!m.data.val)
    throw std::runtime_error((data / "val.bin").string() +
                             " not found: a sweep ranks trials by validation loss");
  m.load_state();
  m.sink.log("sweep: " + std::to_string(m.trials.size()) + " trials, rungs at " +
             [&] {
               std::string s;
               for (auto r : m.halving.rungs()) s += (s.empty() ? "" : ", ") + std::to_string(r);
               return s;
             }() +
             " steps, keep 1/" + std::to_string(m.space.halving.eta) + " per rung, budget " +
             (m.space.budget_minutes > 0 ? fmt(m.space.budget_minutes, "%.1f") + " min"
                                         : std::string("none")));
  SweepResult result;
  while (true) {
    auto w = m.halving.next();
    if (!w) break;
    if (m.stop.load()) {
      m.save_state(false);
      result.rows = m.rows();
      return result;
    }
    if (m.space.budget_minutes > 0 && m.elapsed_s >= m.space.budget_minutes * 60) {
      m.halving.finish_early("wall-clock budget of " + fmt(m.space.budget_minutes, "%.1f") +
                             " min used");
      m.sink.log("sweep: budget used; the remaining trials are skipped");
      break;
    }
    const double t0 = now_s();
    const auto loss = m.run_rung(*w);
    const double dt = now_s() - t0;
    m.elapsed_s += dt;
    json& ex = m.extra[w->trial];
    if (!ex.is_object()) ex = json::object();
    ex["seconds"] = ex.value("seconds", 0.0) + dt;
    if (!loss) {  // stopped on request: the rung is redone on resume
      m.save_state(false);
      m.sink.log("sweep: stopped during trial " + std::to_string(w->trial) + " (rung " +
                 std::to_string(w->rung) + "); run again with the same output to resume");
      result.rows = m.rows();
      return result;
    }
    m.halving.report(w->trial, w->rung, *loss);
    m.sink.metric("trial/" + std::to_string(w->trial) + "/rung_val_loss", w->steps, *loss);
    m.sink.log("sweep: trial " + std::to_string(w->trial) + " rung " + std::to_string(w->rung) +
               " (" + std::to_string(w->steps) + " steps): val loss " + fmt(*loss) + ", " +
               fmt(dt, "%.0f") + " s");
    for (const auto& t : m.halving.trials())
      if (t.state == TrialState::kStopped) fs::remove_all(m.trial_dir(t.id));  // disk
    m.save_state(false);
  }
  m.save_state(true);
  result.complete = true;
  result.rows = m.rows();
  result.ranking_markdown = sweep_ranking_markdown(result.rows);
  write_file_atomic(fs::path(m.opts.output_dir) / "ranking.md", result.ranking_markdown);
  m.sink.log("sweep ranking (by validation loss at the deepest rung reached):");
  std::istringstream lines(result.ranking_markdown);
  for (std::string line; std::getline(lines, line);) m.sink.log(line);
  if (!result.rows.empty() && std::isfinite(result.rows.front().val_loss)) {
    const auto& best = result.rows.front();
    const fs::path recipe = fs::path(m.opts.output_dir) / "recipe.yaml";
    write_recipe(recipe.string(), m.opts.base, m.opts.model, best, m.space.halving.max_steps);
    result.recipe_yaml = read_file(recipe);
    m.sink.log("sweep: best trial " + std::to_string(best.id) + " (val loss " + fmt(best.val_loss) +
               "); recipe " + recipe.string());
    m.sink.metric("sweep/best_val_loss", best.steps, best.val_loss);
  }
  m.sink.flush();
  return result;
}

std::string sweep_recipe_yaml(const TrainingConfig& base, const SweepTrialRow& best,
                              int64_t sweep_steps) {
  TrainingConfig c = base;
  std::ostringstream head;
  head << "# Recipe from a sweep: trial " << best.id << ", val loss " << fmt(best.val_loss)
       << (best.val_bpc > 0 ? ", " + fmt(best.val_bpc) + " bits/char" : std::string()) << " after "
       << best.steps << " steps (LR schedule over " << sweep_steps << " steps).\n";
  for (const auto& [k, v] : best.overrides) {
    if (k.rfind("model.", 0) == 0) {
      head << "# model: " << k.substr(6) << " = " << v << "\n";
      continue;
    }
    set_training_key(c, k, v);
  }
  head << "# Set max_steps to what your time allows (docs/training-guide.md, Sweeps).\n";
  return head.str() + c.to_yaml();
}

void write_recipe(const std::string& path, const TrainingConfig& base, const ModelConfig& model,
                  const SweepTrialRow& best, int64_t sweep_steps) {
  const fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  write_file_atomic(p, sweep_recipe_yaml(base, best, sweep_steps));
  bool shape = false;
  for (const auto& [k, v] : best.overrides) shape |= k.rfind("model.", 0) == 0;
  if (!shape) return;
  TrainingConfig ignored;
  ModelConfig mc = model;
  TrialConfig t{best.id, best.overrides};
  HalvingSchedule h;
  h.min_steps = h.max_steps = 1;
  apply_trial(t, h, ignored, mc);
  std::ostringstream os;
  os << "# Model shape of sweep trial " << best.id << ".\n"
     << "vocab_size: " << mc.vocab_size << "\nhidden_size: " << mc.hidden_size
     << "\nnum_layers: " << mc.num_layers << "\nnum_heads: " << mc.num_heads
     << "\nnum_kv_heads: " << mc.num_kv_heads << "\nintermediate_size: " << mc.intermediate_size
     << "\nmax_seq_length: " << mc.max_seq_length << "\nrope_theta: " << mc.rope_theta
     << "\nrms_norm_eps: " << mc.rms_norm_eps
     << "\ntie_word_embeddings: " << (mc.tie_word_embeddings ? "true" : "false") << "\n";
  write_file_atomic(p.parent_path() / (p.stem().string() + ".model.yaml"), os.str());
}

}  // namespace ktl
