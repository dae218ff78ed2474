// Data-parallel gradient averaging: parameters are grouped into buckets (reverse registration
// order, about the order backward produces them, as PyTorch DDP does); a hook on each parameter
// copies its finished gradient into its bucket, and a full bucket starts an asynchronous
// all-reduce while backward goes on computing the rest. finish() waits for all of them and
// writes the averaged gradients back into .grad.
//
// Gradient accumulation: arm(true) only before the last micro-batch's backward; the hook adds
// the gradient accumulated so far, so the bucket holds the whole step's gradient.
// Buckets are launched strictly in index order (a bucket waits for the ones before it), so
// every rank issues the same collectives in the same order.
//
// Lifecycle (per step): arm(sync) -> backward -> [more micro-batches] -> finish().
// Thread-safety: hooks may run on autograd worker threads (CUDA); internal state is locked.
// arm()/finish() from the training thread only.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "core/distributed/process_group.h"

namespace ktl {

struct ReducerStats {
  int64_t bytes = 0;        // gradient bytes all-reduced per step (payload, all buckets)
  int buckets = 0;          // buckets per step
  double wait_seconds = 0;  // last step: time finish() spent (communication not hidden)
  int launched_early = 0;   // last step: buckets launched from hooks during backward
};

class GradientReducer {
 public:
  // `params`: the trainable parameters, in registration order (all the same on every rank).
  GradientReducer(std::shared_ptr<ProcessGroup> pg, std::vector<torch::Tensor> params,
                  double bucket_mb, bool overlap);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Call before each backward; sync=true before the step's last one.
  void arm(bool sync);
  // Launches what backward did not, waits, averages into .grad. Throws DistError.
  void finish();
  // Copies rank 0's parameters to every rank (start of training).
  void broadcast_parameters();
  // Seconds of one blocking all-reduce of a whole step's gradient bytes (best of `reps`, after
  // every rank arrived): the communication cost alone, without waiting for a slower peer.
  double probe_allreduce_seconds(int reps = 3);

  const ReducerStats& stats() const { return stats_; }

 private:
  struct Bucket {
    torch::Tensor flat;          // [numel] gradients of its parameters, concatenated
    std::vector<size_t> params;  // indices into params_
    size_t ready = 0;            // parameters copied in this step
    std::unique_ptr<DistWork> work;
  };
  void on_grad(size_t index, const torch::Tensor& grad);  // from a hook
  void copy_in(size_t index, const torch::Tensor& grad);
  void launch_ready_locked();

  std::shared_ptr<ProcessGroup> pg_;
  std::vector<torch::Tensor> params_;
  std::vector<unsigned> hook_ids_;
  std::vector<size_t> bucket_of_, offset_of_;  // per parameter
  std::vector<char> copied_;                   // per parameter, this step
  std::vector<Bucket> buckets_;
  size_t next_launch_ = 0;
  int launched_now_ = 0;  // buckets launched from hooks this step
  bool armed_ = false, overlap_ = true;
  std::mutex mu_;
  ReducerStats stats_;
};

}  // namespace ktl
