// GradientReducer against its naive twin (plain backward, no hooks), on a one-rank Gloo group:
// the bucket copies, the accumulation across micro-batches, the re-entrant backward of gradient
// checkpointing and the write-back must give exactly the gradients backward alone gives.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "core/distributed/gradient_reducer.h"
#include "core/distributed/local_launcher.h"
#include "core/distributed/process_group.h"
#include "core/model/model.h"
#include "core/train/checkpointed_forward.h"

namespace ktl {
namespace {

Transformer tiny_model() {
  ModelConfig c;
  c.vocab_size = 97;
  c.hidden_size = 32;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.intermediate_size = 48;
  c.max_seq_length = 16;
  Transformer m(c);
  m->init_weights(3);
  return m;
}

void backward_micro(Transformer& m, const torch::Tensor& tokens, bool checkpointing) {
  // The trainer's loss: checkpointed blocks, the chunked head.
  auto h = ktl::training_hidden(*m, tokens.narrow(1, 0, 8), torch::Tensor(), checkpointing);
  auto loss = -ktl::target_logprobs(*m, h, tokens.narrow(1, 1, 8)).mean();
  (loss * 0.5).backward();
}

std::vector<torch::Tensor> grads_of(Transformer& m) {
  std::vector<torch::Tensor> g;
  for (auto& p : m->parameters()) g.push_back(p.grad().clone());
  return g;
}

void zero_grads(Transformer& m) {
  for (auto& p : m->parameters())
    if (p.grad().defined()) p.mutable_grad().zero_();
}

TEST(GradientReducer, OneRankGivesTheGradientsOfPlainBackward) {
  DistConfig dc;
  dc.master_port = free_local_port();
  dc.timeout_s = 20;
  auto pg = ProcessGroup::connect(dc, torch::kCPU);
  torch::manual_seed(5);
  const auto mb1 = torch::randint(0, 97, {3, 9}), mb2 = torch::randint(0, 97, {3, 9});  // [B, T+1]
  for (bool checkpointing : {false, true}) {
    for (bool overlap : {true, false}) {
      Transformer m = tiny_model();
      backward_micro(m, mb1, checkpointing);
      backward_micro(m, mb2, checkpointing);
      const auto want = grads_of(m);  // the naive twin
      zero_grads(m);
      GradientReducer r(pg, m->parameters(), /*bucket_mb=*/0.004, overlap);
      for (int step = 0; step < 2; ++step) {  // twice: the reducer resets between steps
        zero_grads(m);
        r.arm(false);
        backward_micro(m, mb1, checkpointing);
        r.arm(true);
        backward_micro(m, mb2, checkpointing);
        r.finish();
        const auto got = grads_of(m);
        for (size_t i = 0; i < want.size(); ++i)
          EXPECT_TRUE(torch::allclose(got[i], want[i], 1e-6, 1e-7))
              << "param " << i << " checkpointing " << checkpointing << " overlap " << overlap;
        EXPECT_GT(r.stats().buckets, 2);
        if (overlap)  // all but the buckets still waiting for an earlier one went out early
          EXPECT_GT(r.stats().launched_early, 0);
        else
          EXPECT_EQ(r.stats().launched_early, 0);
      }
    }
  }
}

TEST(ProcessGroup, RefusesBackendsThisBuildLacks) {
  std::string why;
  EXPECT_TRUE(ProcessGroup::available(torch::kCPU, &why)) << why;
  DistConfig dc;
  dc.backend = "gloo";
  dc.master_port = free_local_port();
  EXPECT_THROW(ProcessGroup::connect(dc, torch::Device(torch::kCUDA, 0)), DistError);
}

}  // namespace
}  // namespace ktl
