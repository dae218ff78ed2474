// The engine's torch-ops path (EngineModel::use_torch_ops: weights on a LibTorch device,
// torch::linear, gather attention, logits copied to the host) against the CPU fast path it
// twins, on the CPU everywhere; then on every accelerator this machine has (skipped, with a
// message, where there is none).
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <stdexcept>
#include <string>

#include "core/engine/engine_model.h"
#include "core/engine/llm_engine.h"
#include "core/engine/paged_attention.h"
#include "core/model/device.h"
#include "core/model/model.h"
#include "tests/support/engine_fixture.h"
#include "tests/support/tiny_checkpoint.h"

namespace ktl {
namespace {

using testing::random_tokens;
Transformer tiny_model() {
  return testing::margin_model(1);
}

double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).norm() / b.norm()).item<double>();
}

// Two sequences batched in every step: prefill chunks (13 and 6 tokens), then a chunk of 9 next
// to decode rows, then 6 decode steps; both models are fed the fast path's greedy tokens.
// Calls check(fast_logits, other_logits) on every step's [R, V] logits.
template <typename Check>
void run_twin_steps(const EngineModel& fast, const EngineModel& other, torch::Device device,
                    Check check) {
  const ModelConfig& c = fast.config();
  PagedKvPool pf(c.num_layers, 16, 4, c.num_kv_heads, c.head_dim());
  PagedKvPool po(c.num_layers, 16, 4, c.num_kv_heads, c.head_dim(), device);
  std::vector<std::vector<int>> toks = {random_tokens(13, 1), random_tokens(15, 2)};
  std::vector<std::vector<int>> tables = {{9, 2, 15, 0, 7, 11}, {3, 5, 1, 6, 12, 4}};
  std::vector<int> done = {0, 0};
  for (int step = 0; step < 8; ++step) {
    std::vector<int> flat, rows;
    std::vector<AttnSeq> seqs;
    for (int s = 0; s < 2; ++s) {
      int n = static_cast<int>(toks[s].size()) - done[s];
      if (step == 0 && s == 1) n = 6;  // chunked prefill: 6 now, 9 next step
      seqs.push_back({static_cast<int>(flat.size()), n, done[s], tables[s]});
      flat.insert(flat.end(), toks[s].begin() + done[s], toks[s].begin() + done[s] + n);
      rows.push_back(static_cast<int>(flat.size()) - 1);
      done[s] += n;
    }
    auto lf = fast.forward(flat, seqs, pf, rows);   // [2, V]
    auto lo = other.forward(flat, seqs, po, rows);  // [2, V]
    ASSERT_TRUE(lo.is_cpu()) << "logits must come back to the host";
    ASSERT_EQ(lo.scalar_type(), torch::kFloat32);
    check(lf, lo, step);
    auto next = lf.argmax(1);
    for (int s = 0; s < 2; ++s) toks[s].push_back(static_cast<int>(next[s].item<int64_t>()));
  }
}

std::shared_ptr<EngineModel> model_on(Transformer& t, WeightDtype d, torch::Device device,
                                      bool torch_ops) {
  auto m = std::make_shared<EngineModel>(EngineModel::from_module(*t, d));
  if (torch_ops) m->use_torch_ops(device);
  return m;
}

// Greedy tokens of three prompts submitted together (continuous batching, chunked prefill).
std::vector<std::vector<int>> greedy_batch(std::shared_ptr<EngineModel> m) {
  EngineConfig cfg;
  cfg.num_threads = 2;
  cfg.kv_cache_mb = 4;
  cfg.max_batched_tokens = 16;
  LlmEngine e(m, nullptr, cfg, "tiny");
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (int i = 0; i < 3; ++i) {
    GenerationRequest r;
    r.prompt_tokens = random_tokens(5 + 17 * i, 10 + i);
    r.sampling.temperature = 0;
    r.sampling.max_tokens = 10;
    r.sampling.ignore_eos = true;
    hs.push_back(e.submit(std::move(r)));
  }
  std::vector<std::vector<int>> out;
  for (auto& h : hs) {
    std::vector<int> toks;
    GenerationEvent ev;
    do {
      if (!h->next(&ev, std::chrono::milliseconds(30000))) {
        ADD_FAILURE() << "timed out waiting for the engine";
        break;
      }
      EXPECT_NE(ev.finish, FinishReason::kError) << ev.error;
      toks.insert(toks.end(), ev.token_ids.begin(), ev.token_ids.end());
    } while (ev.finish == FinishReason::kNone);
    out.push_back(toks);
  }
  e.shutdown();
  return out;
}

TEST(EngineTorchOps, Fp32LogitsEqualTheCpuFastPath) {
  auto t = tiny_model();
  auto fast = model_on(t, WeightDtype::kFp32, torch::kCPU, false);
  auto ops = model_on(t, WeightDtype::kFp32, torch::kCPU, true);
  EXPECT_TRUE(ops->torch_ops());
  EXPECT_FALSE(fast->torch_ops());
  run_twin_steps(*fast, *ops, torch::kCPU, [](const auto& lf, const auto& lo, int step) {
    EXPECT_TRUE(torch::allclose(lo, lf, 1e-4, 1e-4)) << "step " << step;
    EXPECT_TRUE(torch::equal(lo.argmax(1), lf.argmax(1))) << "step " << step;
  });
}

TEST(EngineTorchOps, Bf16AndInt8LogitsCloseToTheCpuFastPath) {
  auto t = tiny_model();
  // bf16: the fast path's GEMV keeps fp32 activations, torch::linear rounds them to bf16.
  auto fast = model_on(t, WeightDtype::kBf16, torch::kCPU, false);
  auto ops = model_on(t, WeightDtype::kBf16, torch::kCPU, true);
  EXPECT_EQ(ops->dtype(), WeightDtype::kBf16);
  run_twin_steps(*fast, *ops, torch::kCPU, [](const auto& lf, const auto& lo, int step) {
    EXPECT_LT(rel_err(lo, lf), 0.02) << "bf16 step " << step;
  });
  // int8: dequantized to bf16 for the torch-ops path (no int8 tensor left).
  auto fast8 = model_on(t, WeightDtype::kInt8, torch::kCPU, false);
  auto ops8 = model_on(t, WeightDtype::kInt8, torch::kCPU, true);
  EXPECT_EQ(ops8->dtype(), WeightDtype::kBf16);
  EXPECT_EQ(ops8->bytes_by_dtype().count(torch::kInt8), 0u);
  EXPECT_EQ(ops8->packed_bytes(), 0);
  run_twin_steps(*fast8, *ops8, torch::kCPU, [](const auto& lf, const auto& lo, int step) {
    EXPECT_LT(rel_err(lo, lf), 0.05) << "int8 step " << step;
  });
}

TEST(EngineTorchOps, EngineGreedyTokensEqualTheCpuFastPath) {
  auto t = tiny_model();
  auto fast = greedy_batch(model_on(t, WeightDtype::kFp32, torch::kCPU, false));
  auto ops = greedy_batch(model_on(t, WeightDtype::kFp32, torch::kCPU, true));
  ASSERT_EQ(fast.size(), 3u);
  for (size_t i = 0; i < fast.size(); ++i) {
    EXPECT_EQ(fast[i].size(), 10u);
    EXPECT_EQ(ops[i], fast[i]) << "prompt " << i;
  }
}

TEST(EngineTorchOps, PlacementFollowsTheConfigAndRefusesAbsentDevices) {
  auto t = tiny_model();
  EngineModel m = EngineModel::from_module(*t, WeightDtype::kFp32);
  EngineConfig cfg;
  cfg.device = "cpu";
  place_engine_model(m, cfg);
  EXPECT_FALSE(m.torch_ops());  // the CPU keeps the fast path unless asked
  cfg.torch_ops = true;
  place_engine_model(m, cfg);
  EXPECT_TRUE(m.torch_ops());
  EXPECT_TRUE(m.device().is_cpu());
  cfg.device = "tpu";
  EXPECT_THROW(place_engine_model(m, cfg), std::invalid_argument);
  if (!torch::cuda::is_available()) {
    // Refused before the checkpoint is read: the message is about the device.
    EngineConfig c2;
    c2.device = "cuda";
    try {
      Engine::load("/nonexistent-checkpoint", c2);
      ADD_FAILURE() << "Engine::load accepted an absent cuda device";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("CUDA is not available"), std::string::npos) << e.what();
    }
  }
}

// Every accelerator LibTorch knows of: the engine runs there and agrees with the CPU fast path.
class EngineOnDevice : public ::testing::TestWithParam<std::string> {};

TEST_P(EngineOnDevice, AgreesWithTheCpuFastPath) {
  const std::string name = GetParam();
  const bool present = name == "cuda" ? torch::cuda::is_available() : mps_available();
  if (!present) GTEST_SKIP() << name << " is not available on this machine/LibTorch build: skipped";
  const torch::Device device = resolve_device(name);
  auto t = tiny_model();
  auto fast = model_on(t, WeightDtype::kFp32, torch::kCPU, false);
  auto dev = model_on(t, WeightDtype::kFp32, device, true);
  EXPECT_EQ(dev->device().type(), device.type());
  EXPECT_EQ(dev->embedding().device().type(), device.type());
  run_twin_steps(*fast, *dev, device, [&](const auto& lf, const auto& lo, int step) {
    EXPECT_TRUE(torch::allclose(lo, lf, 1e-3, 1e-3)) << name << " fp32 step " << step;
  });
  EXPECT_EQ(greedy_batch(dev), greedy_batch(fast)) << name;
  for (WeightDtype d : {WeightDtype::kBf16, WeightDtype::kInt8}) {
    auto fast_d = model_on(t, d, torch::kCPU, false);
    auto dev_d = model_on(t, d, device, true);
    run_twin_steps(*fast_d, *dev_d, device, [&](const auto& lf, const auto& lo, int step) {
      EXPECT_LT(rel_err(lo, lf), 0.05) << name << " " << to_string(d) << " step " << step;
    });
  }
}

INSTANTIATE_TEST_SUITE_P(Accelerators, EngineOnDevice, ::testing::Values("cuda", "mps"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace ktl
