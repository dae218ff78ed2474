#include "jobs/job.h"

#include <array>
#include <utility>

namespace ktl::jobs {

namespace {

constexpr std::array<std::pair<JobStatus, const char*>, 6> kStatusNames = {{
    {JobStatus::kQueued, "queued"},
    {JobStatus::kRunning, "running"},
    {JobStatus::kSucceeded, "succeeded"},
    {JobStatus::kFailed, "failed"},
    {JobStatus::kCancelled, "cancelled"},
    {JobStatus::kInterrupted, "interrupted"},
}};

constexpr std::array<std::pair<JobKind, const char*>, 9> kKindNames = {{
    {JobKind::kPrepareData, "prepare-data"},
    {JobKind::kTrainTokenizer, "train-tokenizer"},
    {JobKind::kTrain, "train"},
    {JobKind::kEval, "eval"},
    {JobKind::kPipeline, "pipeline"},
    {JobKind::kSweep, "sweep"},
    {JobKind::kSft, "sft"},
    {JobKind::kDpo, "dpo"},
    {JobKind::kDistill, "distill"},
}};

}  // namespace

bool job_status_transition_allowed(JobStatus from, JobStatus to) {
  using S = JobStatus;
  switch (from) {
    case S::kQueued:
      return to == S::kRunning || to == S::kCancelled;
    case S::kRunning:
      return to == S::kSucceeded || to == S::kFailed || to == S::kCancelled ||
             to == S::kInterrupted;
    case S::kInterrupted:
    case S::kFailed:
    case S::kCancelled:
      return to == S::kQueued;
    case S::kSucceeded:
      return false;
  }
  return false;
}

bool job_status_is_terminal(JobStatus s) {
  return s != JobStatus::kQueued && s != JobStatus::kRunning;
}

bool job_status_is_resumable(JobStatus s) {
  return job_status_transition_allowed(s, JobStatus::kQueued);
}

std::string to_string(JobStatus s) {
  for (const auto& [v, n] : kStatusNames)
    if (v == s) return n;
  return "unknown";
}

std::string to_string(JobKind k) {
  for (const auto& [v, n] : kKindNames)
    if (v == k) return n;
  return "unknown";
}

std::optional<JobStatus> parse_job_status(std::string_view s) {
  for (const auto& [v, n] : kStatusNames)
    if (s == n) return v;
  return std::nullopt;
}

std::optional<JobKind> parse_job_kind(std::string_view s) {
  for (const auto& [v, n] : kKindNames)
    if (s == n) return v;
  return std::nullopt;
}

}  // namespace ktl::jobs
