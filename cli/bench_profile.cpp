#include "cli/bench_profile.h"

#include <algorithm>
#include <cstdio>
#include <utility>
#include <vector>

namespace ktl::cli {

namespace {

// Every part, "other" last, as ms per step.
std::vector<std::pair<std::string, double>> per_step(const StepProfile& p) {
  const double n = static_cast<double>(std::max<int64_t>(p.steps, 1));
  std::vector<std::pair<std::string, double>> out;
  for (int i = 0; i < kStepParts; ++i)
    out.emplace_back(to_string(static_cast<StepPart>(i)), p.part_ms[i] / n);
  out.emplace_back("other", p.other_ms() / n);
  return out;
}

double pct(double ms, double step_ms) {
  return step_ms > 0 ? 100.0 * ms / step_ms : 0.0;
}

}  // namespace

nlohmann::json bench_profile_json(const StepProfile& p) {
  const double n = static_cast<double>(std::max<int64_t>(p.steps, 1));
  const double step = p.step_ms / n;
  nlohmann::json j;
  j["decode_steps"] = p.steps;
  j["rows_per_step"] = p.rows / n;
  j["step_ms"] = step;
  nlohmann::json parts = nlohmann::json::object();
  for (const auto& [name, ms] : per_step(p)) parts[name] = {{"ms", ms}, {"pct", pct(ms, step)}};
  j["parts"] = parts;
  return j;
}

std::string bench_profile_table(const StepProfile& p) {
  const double n = static_cast<double>(std::max<int64_t>(p.steps, 1));
  const double step = p.step_ms / n;
  char line[160];
  std::snprintf(line, sizeof line,
                "  decode step profile: %lld steps, %.1f rows/step, %.2f ms/step\n",
                static_cast<long long>(p.steps), p.rows / n, step);
  std::string out = line;
  std::snprintf(line, sizeof line, "    %-13s %9s %7s\n", "part", "ms/step", "%");
  out += line;
  for (const auto& [name, ms] : per_step(p)) {
    std::snprintf(line, sizeof line, "    %-13s %9.3f %6.1f%%\n", name.c_str(), ms, pct(ms, step));
    out += line;
  }
  return out;
}

}  // namespace ktl::cli
