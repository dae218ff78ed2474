// Where this process sits in a data-parallel job: world size, rank, rendezvous address and the
// communication settings. Read from torchrun-compatible environment variables (WORLD_SIZE,
// RANK, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), so `torchrun`, Slurm wrappers
// and `ktl train --nproc-per-node N` all start ranks the same way. No LibTorch here.
// Plain data; copy freely.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace ktl {

struct DistConfig {
  int world_size = 1;                     // ranks in the job (WORLD_SIZE)
  int rank = 0;                           // this process's global rank (RANK)
  int local_rank = 0;                     // rank on this machine (LOCAL_RANK)
  int local_world_size = 1;               // ranks on this machine (LOCAL_WORLD_SIZE)
  std::string master_addr = "127.0.0.1";  // host of rank 0's TCPStore (MASTER_ADDR)
  int master_port = 29500;                // its port (MASTER_PORT)
  std::string backend = "auto";           // auto|gloo|nccl: auto = nccl on CUDA if built, else gloo
  int timeout_s = 300;                    // any rendezvous or collective waiting longer fails
  double bucket_mb = 25;                  // gradient all-reduce bucket size (as PyTorch DDP)
  bool overlap = true;                    // launch buckets from backward hooks (false: after it)

  bool enabled() const { return world_size > 1; }
  bool is_main() const { return rank == 0; }
  // Throws std::invalid_argument naming the bad field.
  void validate() const;
};

// Reads the torchrun variables from `env` (missing ones keep their defaults; KTL_DIST_TIMEOUT,
// KTL_DIST_BACKEND, KTL_DIST_BUCKET_MB and KTL_DIST_OVERLAP too). Throws on malformed numbers.
DistConfig dist_config_from_env(const std::map<std::string, std::string>& env);
// The same from the process environment.
DistConfig dist_config_from_environ();

}  // namespace ktl
