// A c10d process group for data-parallel training: TCPStore rendezvous at MASTER_ADDR:
// MASTER_PORT (rank 0 hosts it), then ProcessGroupGloo (CPU tensors) or ProcessGroupNCCL
// (CUDA tensors, only when this LibTorch was built with NCCL; untested here, no GPU).
// Every wait is bounded by DistConfig::timeout_s, and a peer that dies closes its sockets, so a
// killed rank makes the others throw DistError instead of hanging.
//
// Lifecycle: connect() -> collectives -> destruction. Collectives must be called by every rank
// in the same order. Thread-safety: the collective calls may come from several threads (the
// autograd hooks' and the trainer's), but their order must be the same on every rank.
#pragma once

#include <torch/types.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/distributed/dist_config.h"

namespace ktl {

// A collective failed or timed out (often: a peer rank died).
class DistError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A handle on one asynchronous collective.
class DistWork {
 public:
  virtual ~DistWork() = default;
  // Blocks until done; throws DistError on failure or after the group's timeout.
  virtual void wait() = 0;
};

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  // Rendezvous with the other ranks; throws DistError when they do not all arrive in time.
  // `device` picks the backend when config.backend is "auto" (NCCL for CUDA when available).
  static std::shared_ptr<ProcessGroup> connect(const DistConfig& config,
                                               const torch::Device& device);
  // Whether this LibTorch has a c10d backend for `device` (Gloo: CPU; NCCL: CUDA).
  static bool available(const torch::Device& device, std::string* why = nullptr);

  int rank() const { return config_.rank; }
  int world_size() const { return config_.world_size; }
  const DistConfig& config() const { return config_; }
  const std::string& backend_name() const { return backend_; }

  // In-place sum over ranks of one contiguous tensor; asynchronous.
  virtual std::unique_ptr<DistWork> allreduce_sum_async(torch::Tensor& t) = 0;
  // In-place copy of rank `root`'s tensor to every rank; asynchronous.
  virtual std::unique_ptr<DistWork> broadcast_async(torch::Tensor& t, int root) = 0;

  void allreduce_sum(torch::Tensor& t) { allreduce_sum_async(t)->wait(); }
  void broadcast(torch::Tensor& t, int root) { broadcast_async(t, root)->wait(); }
  // Sum of one double over ranks (a CPU round trip; for losses and flags).
  double sum(double x);

 protected:
  ProcessGroup(DistConfig config, std::string backend)
      : config_(std::move(config)), backend_(std::move(backend)) {}
  DistConfig config_;
  std::string backend_;
  torch::Device scalar_device_ = torch::kCPU;  // where sum() puts its scalar
};

}  // namespace ktl
