// Successive halving over a fixed set of trials, one synchronous rung at a time: every live
// trial trains to rung r and reports its validation loss; when all have, the bottom part of
// the rung (all but the best ceil(n / eta)) stops and the rest go on to rung r+1. A trial that
// fails or diverges at a rung counts as the worst there. No LibTorch; the state round-trips
// through JSON so a sweep resumes where it stopped.
//
// Trial lifecycle (enum class TrialState):
//   pending  -> running    next() handed out its first rung
//   running  -> stopped    bottom part of a rung (or failed)
//   running  -> completed  reported at the last rung
//   pending/running -> skipped   the sweep's budget ran out first (finish_early())
// Thread-safety: none; one sweep driver owns it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ktl {

enum class TrialState { kPending, kRunning, kStopped, kCompleted, kSkipped };
const char* trial_state_name(TrialState s);

struct TrialProgress {
  int id = 0;
  TrialState state = TrialState::kPending;
  std::vector<double> rung_loss;  // val loss at rungs 0..k reached (NaN: failed/diverged)
  std::string note;               // why it stopped ("bottom half at rung 1 (100 steps)")
};

struct HalvingWork {
  int trial = 0;  // trial id
  int rung = 0;   // index into rungs
  int64_t steps = 0;
};

class SuccessiveHalving {
 public:
  SuccessiveHalving(std::vector<int64_t> rungs, int num_trials, int eta = 2);

  // The next (trial, rung) to train, lowest rung first, then trial id; nullopt when done.
  std::optional<HalvingWork> next();
  // A trial's val loss at the rung next() gave it; NaN/inf = failed (worst). When the rung is
  // complete, promotes its best ceil(n / eta) and stops the others. Throws std::logic_error for
  // a report nobody asked for.
  void report(int trial, int rung, double val_loss);
  // The budget ran out: trials that have not finished are skipped (their losses so far stay).
  void finish_early(const std::string& why);

  bool done() const;
  const std::vector<int64_t>& rungs() const { return rungs_; }
  const std::vector<TrialProgress>& trials() const { return trials_; }
  int current_rung() const { return rung_; }
  // Trial ids, best first: deepest rung reached, then lower loss there, then lower id.
  std::vector<int> ranking() const;

  std::string to_json() const;
  // Restores a state written by to_json(); throws std::runtime_error on a malformed text or one
  // whose rungs or trial count differ from this schedule's.
  void restore_json(const std::string& text);

 private:
  void close_rung();

  std::vector<int64_t> rungs_;
  int eta_;
  int rung_ = 0;  // the rung being filled
  std::vector<TrialProgress> trials_;
};

}  // namespace ktl
