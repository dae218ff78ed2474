// DistConfig from torchrun variables, LaunchConfig checks, and the sampler's per-rank rows.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "core/distributed/dist_config.h"
#include "core/distributed/local_launcher.h"
#include "core/train/data_loader.h"

namespace ktl {
namespace {

TEST(DistConfig, ReadsTorchrunVariables) {
  const auto c = dist_config_from_env({{"WORLD_SIZE", "4"},
                                       {"RANK", "3"},
                                       {"LOCAL_RANK", "1"},
                                       {"LOCAL_WORLD_SIZE", "2"},
                                       {"MASTER_ADDR", "10.0.0.5"},
                                       {"MASTER_PORT", "29511"},
                                       {"KTL_DIST_TIMEOUT", "7"},
                                       {"KTL_DIST_OVERLAP", "0"}});
  EXPECT_EQ(c.world_size, 4);
  EXPECT_EQ(c.rank, 3);
  EXPECT_EQ(c.local_rank, 1);
  EXPECT_EQ(c.local_world_size, 2);
  EXPECT_EQ(c.master_addr, "10.0.0.5");
  EXPECT_EQ(c.master_port, 29511);
  EXPECT_EQ(c.timeout_s, 7);
  EXPECT_FALSE(c.overlap);
  EXPECT_TRUE(c.enabled());
  EXPECT_FALSE(c.is_main());
}

TEST(DistConfig, DefaultsToOneProcessAndRejectsBadValues) {
  const auto c = dist_config_from_env({});
  EXPECT_EQ(c.world_size, 1);
  EXPECT_FALSE(c.enabled());
  EXPECT_THROW(dist_config_from_env({{"WORLD_SIZE", "2"}, {"RANK", "2"}}), std::invalid_argument);
  EXPECT_THROW(dist_config_from_env({{"WORLD_SIZE", "2"}}), std::invalid_argument);  // no RANK
  EXPECT_THROW(dist_config_from_env({{"WORLD_SIZE", "two"}}), std::invalid_argument);
  EXPECT_THROW(dist_config_from_env({{"MASTER_PORT", "70000"}}), std::invalid_argument);
  EXPECT_THROW(dist_config_from_env({{"KTL_DIST_BACKEND", "mpi"}}), std::invalid_argument);
}

TEST(LaunchConfig, NeedsAPortAcrossMachines) {
  LaunchConfig c;
  c.nproc_per_node = 2;
  EXPECT_NO_THROW(c.validate());
  c.nnodes = 2;
  EXPECT_THROW(c.validate(), std::invalid_argument);  // port 0 = free local port only
  c.master_port = 29500;
  EXPECT_NO_THROW(c.validate());
  c.node_rank = 2;
  EXPECT_THROW(c.validate(), std::invalid_argument);
  EXPECT_GT(free_local_port(), 0);
}

// The naive twin of the rank slices: rows of the one-process batch, stacked in rank order.
TEST(TrainBatchSampler, RankSlicesTogetherAreTheOneProcessBatch) {
  std::vector<int64_t> tokens(5000);
  std::iota(tokens.begin(), tokens.end(), 0);
  auto src = std::make_shared<VectorTokenSource>(tokens);
  TrainBatchSampler one(src, 6, 16, 7, 2);
  for (int world : {2, 3}) {
    std::vector<std::unique_ptr<TrainBatchSampler>> ranks;
    for (int r = 0; r < world; ++r)
      ranks.push_back(std::make_unique<TrainBatchSampler>(src, 6, 16, 7, 2, 0, r, world));
    for (int64_t step : {0, 5}) {
      for (int micro : {0, 1}) {
        std::vector<torch::Tensor> parts;
        for (auto& s : ranks) parts.push_back(s->batch(step, micro));  // [6/W, 17] each
        EXPECT_TRUE(torch::equal(torch::cat(parts), one.batch(step, micro)));
      }
    }
  }
  EXPECT_THROW(TrainBatchSampler(src, 6, 16, 7, 1, 0, 0, 4), std::invalid_argument);
}

}  // namespace
}  // namespace ktl
