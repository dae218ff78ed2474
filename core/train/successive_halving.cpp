#include "core/train/successive_halving.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace ktl {
namespace {

double sort_key(double loss) {
  return std::isfinite(loss) ? loss : std::numeric_limits<double>::infinity();
}

}  // namespace

const char* trial_state_name(TrialState s) {
  switch (s) {
    case TrialState::kPending:
      return "pending";
    case TrialState::kRunning:
      return "running";
    case TrialState::kStopped:
      return "stopped";
    case TrialState::kCompleted:
      return "completed";
    case TrialState::kSkipped:
      return "skipped";
  }
  return "?";
}

SuccessiveHalving::SuccessiveHalving(std::vector<int64_t> rungs, int num_trials, int eta)
    : rungs_(std::move(rungs)), eta_(eta) {
  if (rungs_.empty()) throw std::invalid_argument("successive halving: no rungs");
  if (eta_ < 2) throw std::invalid_argument("successive halving: eta must be >= 2");
  for (int i = 0; i < num_trials; ++i) trials_.push_back(TrialProgress{i});
}

std::optional<HalvingWork> SuccessiveHalving::next() {
  if (done()) return std::nullopt;
  for (auto& t : trials_) {
    const bool live = t.state == TrialState::kPending || t.state == TrialState::kRunning;
    if (live && int(t.rung_loss.size()) == rung_) {
      t.state = TrialState::kRunning;
      return HalvingWork{t.id, rung_, rungs_[size_t(rung_)]};
    }
  }
  return std::nullopt;  // unreachable while the rung is open: close_rung() ran on the last report
}

void SuccessiveHalving::report(int trial, int rung, double val_loss) {
  if (trial < 0 || trial >= int(trials_.size()) || rung != rung_)
    throw std::logic_error("successive halving: unexpected report for trial " +
                           std::to_string(trial) + " at rung " + std::to_string(rung));
  auto& t = trials_[size_t(trial)];
  if (t.state != TrialState::kRunning || int(t.rung_loss.size()) != rung)
    throw std::logic_error("successive halving: trial " + std::to_string(trial) +
                           " was not training rung " + std::to_string(rung));
  t.rung_loss.push_back(val_loss);
  for (const auto& o : trials_)
    if (o.state == TrialState::kRunning && int(o.rung_loss.size()) == rung_) return;
  for (const auto& o : trials_)
    if (o.state == TrialState::kPending) return;
  close_rung();
}

void SuccessiveHalving::close_rung() {
  std::vector<int> at;  // trials that reported this rung
  for (const auto& t : trials_)
    if (t.state == TrialState::kRunning && int(t.rung_loss.size()) == rung_ + 1) at.push_back(t.id);
  std::stable_sort(at.begin(), at.end(), [&](int a, int b) {
    return sort_key(trials_[size_t(a)].rung_loss.back()) <
           sort_key(trials_[size_t(b)].rung_loss.back());
  });
  const bool last = rung_ + 1 == int(rungs_.size());
  const size_t keep = (at.size() + size_t(eta_) - 1) / size_t(eta_);
  for (size_t i = 0; i < at.size(); ++i) {
    auto& t = trials_[size_t(at[i])];
    const bool failed = !std::isfinite(t.rung_loss.back());
    if (last && !failed) {
      t.state = TrialState::kCompleted;
    } else if (failed || i >= keep) {
      t.state = TrialState::kStopped;
      t.note = failed ? "failed at rung " + std::to_string(rung_)
                      : "bottom of rung " + std::to_string(rung_) + " (" +
                            std::to_string(rungs_[size_t(rung_)]) + " steps)";
    }
  }
  if (!last) ++rung_;
}

void SuccessiveHalving::finish_early(const std::string& why) {
  for (auto& t : trials_)
    if (t.state == TrialState::kPending || t.state == TrialState::kRunning) {
      t.state = TrialState::kSkipped;
      t.note = why;
    }
}

bool SuccessiveHalving::done() const {
  for (const auto& t : trials_)
    if (t.state == TrialState::kPending || t.state == TrialState::kRunning) return false;
  return true;
}

std::vector<int> SuccessiveHalving::ranking() const {
  std::vector<int> ids;
  for (const auto& t : trials_) ids.push_back(t.id);
  std::stable_sort(ids.begin(), ids.end(), [&](int a, int b) {
    const auto &ta = trials_[size_t(a)], &tb = trials_[size_t(b)];
    if (ta.rung_loss.size() != tb.rung_loss.size())
      return ta.rung_loss.size() > tb.rung_loss.size();
    if (ta.rung_loss.empty()) return false;
    return sort_key(ta.rung_loss.back()) < sort_key(tb.rung_loss.back());
  });
  return ids;
}

std::string SuccessiveHalving::to_json() const {
  nlohmann::json j;
  j["rungs"] = rungs_;
  j["eta"] = eta_;
  j["rung"] = rung_;
  auto& arr = j["trials"] = nlohmann::json::array();
  for (const auto& t : trials_) {
    nlohmann::json losses = nlohmann::json::array();
    for (double l : t.rung_loss) losses.push_back(std::isfinite(l) ? nlohmann::json(l) : nullptr);
    arr.push_back({{"id", t.id},
                   {"state", trial_state_name(t.state)},
                   {"rung_loss", losses},
                   {"note", t.note}});
  }
  return j.dump();
}

void SuccessiveHalving::restore_json(const std::string& text) {
  try {
    const auto j = nlohmann::json::parse(text);
    if (j.at("rungs").get<std::vector<int64_t>>() != rungs_ || j.at("eta").get<int>() != eta_ ||
        j.at("trials").size() != trials_.size())
      throw std::runtime_error("the saved sweep has a different schedule or trial count");
    const int rung = j.at("rung").get<int>();
    if (rung < 0 || rung >= int(rungs_.size())) throw std::runtime_error("bad rung");
    std::vector<TrialProgress> trials;
    for (const auto& jt : j.at("trials")) {
      TrialProgress t;
      t.id = jt.at("id").get<int>();
      if (t.id != int(trials.size())) throw std::runtime_error("trial ids out of order");
      const auto state = jt.at("state").get<std::string>();
      bool known = false;
      for (auto s : {TrialState::kPending, TrialState::kRunning, TrialState::kStopped,
                     TrialState::kCompleted, TrialState::kSkipped})
        if (state == trial_state_name(s)) t.state = s, known = true;
      if (!known) throw std::runtime_error("unknown trial state '" + state + "'");
      for (const auto& l : jt.at("rung_loss"))
        t.rung_loss.push_back(l.is_null() ? std::numeric_limits<double>::quiet_NaN()
                                          : l.get<double>());
      if (t.rung_loss.size() > rungs_.size()) throw std::runtime_error("too many rung losses");
      t.note = jt.value("note", "");
      trials.push_back(std::move(t));
    }
    trials_ = std::move(trials);
    rung_ = rung;
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(std::string("sweep state: ") + e.what());
  }
}

}  // namespace ktl
