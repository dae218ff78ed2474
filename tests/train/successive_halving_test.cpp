// Successive halving on a synthetic objective: exactly the bottom part of each rung stops.
// No LibTorch.
#include "core/train/successive_halving.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <vector>

namespace {

using ktl::SuccessiveHalving;
using ktl::TrialState;

// Runs the schedule to the end with loss = objective(trial, steps); returns the work order.
std::vector<std::pair<int, int>> drive(SuccessiveHalving& sh,
                                       const std::function<double(int, int64_t)>& objective) {
  std::vector<std::pair<int, int>> order;
  while (auto w = sh.next()) {
    order.emplace_back(w->trial, w->rung);
    sh.report(w->trial, w->rung, objective(w->trial, w->steps));
  }
  return order;
}

std::set<int> with_state(const SuccessiveHalving& sh, TrialState s) {
  std::set<int> ids;
  for (const auto& t : sh.trials())
    if (t.state == s) ids.insert(t.id);
  return ids;
}

TEST(SuccessiveHalving, StopsExactlyTheBottomHalfOfEachRung) {
  // Quality per trial (lower is better) with a late bloomer: trial 6 starts badly (large
  // 1/steps term) but is the best by the end; trial 1 starts best and plateaus.
  const std::map<int, std::pair<double, double>> q = {
      {0, {2.0, 10}}, {1, {1.9, 1}},  {2, {2.5, 10}}, {3, {1.5, 10}},
      {4, {3.0, 10}}, {5, {1.7, 10}}, {6, {1.0, 40}}, {7, {2.2, 10}}};
  auto objective = [&](int trial, int64_t steps) {
    return q.at(trial).first + q.at(trial).second / double(steps);
  };
  // rung 0 (10 steps): losses 3.0 2.0 3.5 2.5 4.0 2.7 5.0 3.2 -> best 4: {1, 3, 5, 0}
  // rung 1 (20 steps): 2.5 1.95 2.0 2.2 -> best 2: {1, 3}
  // rung 2 (40 steps): both complete.
  SuccessiveHalving sh({10, 20, 40}, 8, 2);
  const auto order = drive(sh, objective);
  EXPECT_EQ(order.size(), 8u + 4u + 2u);
  EXPECT_EQ(with_state(sh, TrialState::kCompleted), (std::set<int>{1, 3}));
  EXPECT_EQ(with_state(sh, TrialState::kStopped), (std::set<int>{0, 2, 4, 5, 6, 7}));
  // Stopped at rung 0: exactly the bottom four; at rung 1: 0 and 5.
  for (int id : {2, 4, 6, 7}) EXPECT_EQ(sh.trials()[size_t(id)].rung_loss.size(), 1u) << id;
  for (int id : {0, 5}) EXPECT_EQ(sh.trials()[size_t(id)].rung_loss.size(), 2u) << id;
  // Rung 1 losses: 1 -> 1.95, 3 -> 2.0; rung 2: 1 -> 1.925, 3 -> 1.75.
  EXPECT_EQ(sh.ranking().front(), 3);
  EXPECT_EQ(sh.ranking()[1], 1);
  EXPECT_TRUE(sh.done());
  EXPECT_FALSE(sh.next().has_value());
}

TEST(SuccessiveHalving, OddCountsKeepTheCeilingAndFailuresStop) {
  // 5 trials, eta 2: 3 go on from rung 0, 2 from rung 1. Trial 0 diverges at rung 0.
  SuccessiveHalving sh({5, 10, 20}, 5, 2);
  drive(sh, [](int trial, int64_t) {
    return trial == 0 ? std::numeric_limits<double>::quiet_NaN() : double(trial);
  });
  EXPECT_EQ(sh.trials()[0].state, TrialState::kStopped);
  EXPECT_NE(sh.trials()[0].note.find("failed"), std::string::npos);
  EXPECT_EQ(with_state(sh, TrialState::kCompleted), (std::set<int>{1, 2}));
  EXPECT_EQ(sh.trials()[3].rung_loss.size(), 2u);  // kept at rung 0 (3 of 5), stopped at 1
  EXPECT_EQ(sh.trials()[4].rung_loss.size(), 1u);
}

TEST(SuccessiveHalving, EtaThreeKeepsAThird) {
  SuccessiveHalving sh({3, 9}, 9, 3);
  drive(sh, [](int trial, int64_t) { return double(9 - trial); });
  // The best third goes on; the last rung stops nobody.
  EXPECT_EQ(with_state(sh, TrialState::kCompleted), (std::set<int>{6, 7, 8}));
  int at_rung1 = 0;
  for (const auto& t : sh.trials()) at_rung1 += t.rung_loss.size() == 2;
  EXPECT_EQ(at_rung1, 3);
}

TEST(SuccessiveHalving, ResumesFromJsonWithoutRepeatingWork) {
  auto objective = [](int trial, int64_t steps) { return 1.0 + trial * 0.1 + 10.0 / steps; };
  SuccessiveHalving full({10, 20, 40}, 6, 2);
  const auto all = drive(full, objective);

  SuccessiveHalving first({10, 20, 40}, 6, 2);
  std::vector<std::pair<int, int>> done;
  for (int i = 0; i < 7; ++i) {  // into rung 1
    auto w = first.next();
    ASSERT_TRUE(w);
    done.emplace_back(w->trial, w->rung);
    first.report(w->trial, w->rung, objective(w->trial, w->steps));
  }
  auto interrupted = first.next();  // handed out, never reported: redone after the restart
  ASSERT_TRUE(interrupted);
  SuccessiveHalving second({10, 20, 40}, 6, 2);
  second.restore_json(first.to_json());
  const auto rest = drive(second, objective);
  ASSERT_FALSE(rest.empty());
  EXPECT_EQ(rest.front(), std::make_pair(interrupted->trial, interrupted->rung));
  done.insert(done.end(), rest.begin(), rest.end());
  EXPECT_EQ(done, all);
  EXPECT_EQ(second.ranking(), full.ranking());
  // A different schedule is refused.
  SuccessiveHalving other({10, 30}, 6, 2);
  EXPECT_THROW(other.restore_json(first.to_json()), std::runtime_error);
}

TEST(SuccessiveHalving, FinishEarlySkipsTheRestAndRanksByDepth) {
  SuccessiveHalving sh({10, 20}, 4, 2);
  for (int i = 0; i < 4; ++i) {
    auto w = sh.next();
    sh.report(w->trial, w->rung, 4.0 - i);
  }
  auto w = sh.next();  // rung 1 holds trials 2 and 3 (the lowest losses); 2 goes first
  ASSERT_TRUE(w);
  EXPECT_EQ(w->rung, 1);
  EXPECT_EQ(w->trial, 2);
  sh.report(w->trial, w->rung, 0.5);
  sh.finish_early("budget");
  EXPECT_TRUE(sh.done());
  EXPECT_EQ(sh.trials()[3].state, TrialState::kSkipped);
  EXPECT_EQ(sh.trials()[0].state, TrialState::kStopped);
  // Deepest rung first: trial 2 (rung 1), then 3 (best at rung 0), then 2's rung-0 peers.
  EXPECT_EQ(sh.ranking(), (std::vector<int>{2, 3, 1, 0}));
  EXPECT_THROW(sh.report(0, 0, 1.0), std::logic_error);
}

}  // namespace
