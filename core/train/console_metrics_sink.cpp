#include "core/train/console_metrics_sink.h"

#include <ctime>

namespace ktl {
namespace {

std::string clock_prefix() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "[%H:%M:%S] ", &tm);
  return buf;
}

}  // namespace

void ConsoleMetricsSink::metric(const std::string& key, int64_t step, double value) {
  if (!print_metrics_) return;
  std::lock_guard<std::mutex> lock(mu_);
  std::fprintf(out_, "%s%s step %lld = %.6g\n", clock_prefix().c_str(), key.c_str(),
               (long long)step, value);
}

void ConsoleMetricsSink::sample(int64_t step, const std::string& prompt, const std::string& text,
                                const std::string& kind) {
  std::lock_guard<std::mutex> lock(mu_);
  std::fprintf(out_, "%ssample step %lld (%s): %s|%s\n", clock_prefix().c_str(), (long long)step,
               kind.c_str(), prompt.c_str(), text.c_str());
  std::fflush(out_);
}

void ConsoleMetricsSink::checkpoint(int64_t step, const std::string& path,
                                    const std::map<std::string, double>& metrics) {
  // The trainer logs "saved <path>" itself; nothing more to print.
}

void ConsoleMetricsSink::log(const std::string& line) {
  std::lock_guard<std::mutex> lock(mu_);
  std::fprintf(out_, "%s%s\n", clock_prefix().c_str(), line.c_str());
  std::fflush(out_);
}

void ConsoleMetricsSink::flush() {
  std::lock_guard<std::mutex> lock(mu_);
  std::fflush(out_);
}

}  // namespace ktl
