// One copy of the weights: tied heads share the embedding, int8 models keep no fp32 weights,
// loading an int8 checkpoint never materialises an fp32 weight, and the default KV pool follows
// the model and max_num_seqs.
#include <c10/core/CPUAllocator.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

#include "core/base/file_util.h"
#include "core/base/huge_page_arena.h"
#include "core/engine/engine_checkpoint.h"
#include "core/engine/engine_model.h"
#include "core/engine/kv_budget.h"
#include "core/model/model.h"
#include "core/model/model_config.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/support/smaps.h"
#include "tests/support/tiny_checkpoint.h"

namespace ktl {
namespace {

ModelConfig tiny_config(bool tied = true) {
  ModelConfig c = testing::tiny_model_config(320);
  c.intermediate_size = 128;
  c.tie_word_embeddings = tied;
  return c;
}

EngineModel engine_from(const ModelConfig& c, WeightDtype d) {
  Transformer t(c);
  t->init_weights(1);
  return EngineModel::from_module(*t, d);
}

TEST(EngineMemory, TiedHeadSharesTheEmbeddingStorage) {
  for (WeightDtype d : {WeightDtype::kFp32, WeightDtype::kBf16}) {
    EngineModel m = engine_from(tiny_config(), d);
    ASSERT_TRUE(m.head().weight().defined());
    EXPECT_EQ(m.head().weight().data_ptr(), m.embedding().data_ptr()) << to_string(d);
  }
  EngineModel q = engine_from(tiny_config(), WeightDtype::kInt8);
  EXPECT_EQ(q.head().int8_parts().first.data_ptr(), q.embedding().data_ptr());
}

TEST(EngineMemory, TiedFp32WeightsAreCountedOnce) {
  const ModelConfig c = tiny_config();
  EngineModel m = engine_from(c, WeightDtype::kFp32);
  EXPECT_EQ(m.weight_bytes(), c.num_parameters() * 4);  // the tied table once
  const ModelConfig u = tiny_config(false);
  EXPECT_EQ(engine_from(u, WeightDtype::kFp32).weight_bytes(), u.num_parameters() * 4);
}

TEST(EngineMemory, Int8ModelHoldsNoFp32LinearWeights) {
  for (bool tied : {true, false}) {
    const ModelConfig c = tiny_config(tied);
    EngineModel m = engine_from(c, WeightDtype::kInt8);
    auto by = m.bytes_by_dtype();
    const int64_t D = c.hidden_size, L = c.num_layers, V = c.vocab_size, F = c.intermediate_size;
    const int64_t qkv_out = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim();
    // fp32: only the norms and one scale per output row (head, and embedding when untied).
    const int64_t norms = (2 * L + 1) * D;
    const int64_t scales = L * (qkv_out + D + 2 * F + D) + V * (tied ? 1 : 2);
    EXPECT_EQ(by[torch::kFloat32], (norms + scales) * 4) << "tied " << tied;
    const int64_t non_embed = c.num_parameters() - V * D * (tied ? 1 : 2) - norms;
    EXPECT_EQ(by[torch::kInt8], non_embed + V * D * (tied ? 1 : 2)) << "tied " << tied;
    EXPECT_EQ(by.count(torch::kBFloat16), 0u);
  }
}

TEST(EngineMemory, RandomInitDrawsEveryWeightLikeTheTrainingModule) {
  const ModelConfig c = tiny_config(false);
  EngineModel m = EngineModel::random_init(c, WeightDtype::kFp32, 3);
  EXPECT_EQ(m.weight_bytes(), c.num_parameters() * 4);
  Transformer t(c);
  t->init_weights(3);
  auto ours = m.export_weights(WeightDtype::kFp32);
  std::map<std::string, torch::Tensor> theirs;
  for (const auto& p : t->named_parameters()) theirs[hf_parameter_name(p.key())] = p.value();
  ASSERT_EQ(ours.size(), theirs.size());
  for (const auto& [name, w] : ours) {
    ASSERT_TRUE(theirs.count(name)) << name;
    const auto& ref = theirs[name];
    EXPECT_EQ(w.value.sizes(), ref.sizes()) << name;
    // Same distribution: equal std (to sampling error), norms all ones.
    const double s1 = w.value.std().item<double>(), s2 = ref.std().item<double>();
    EXPECT_NEAR(s1, s2, 0.1 * s2 + 1e-6) << name;
  }
  EngineModel q = EngineModel::random_init(c, WeightDtype::kInt8, 3);
  EXPECT_EQ(q.bytes_by_dtype().count(torch::kBFloat16), 0u);
}

// The engine loads checkpoints without the training module (fp32 weights it does not fuse stay
// in the file mapping); the result must equal the training loader's model.
TEST(EngineMemory, CheckpointLoadsDirectlyAndMatchesTheTrainingLoader) {
  ktl::testing::TempDir d("ktl-engine-ck");
  const std::string tok = ktl::testing::make_tiny_tokenizer(d / "tok");
  ktl::testing::make_tiny_checkpoint(d / "ck", tok, 5);
  LoadedCheckpoint ck = load_checkpoint(d / "ck", torch::kCPU);
  const std::vector<int> toks = {2, 40, 41, 300, 7, 9, 120, 3};
  const std::vector<int> rows = {0, 1, 2, 3, 4, 5, 6, 7};
  AttnSeq a{0, 8, 0, {0}};
  for (WeightDtype dt : {WeightDtype::kFp32, WeightDtype::kBf16, WeightDtype::kInt8}) {
    LoadedEngineModel m = load_engine_model(d / "ck", dt);
    EngineModel ref = EngineModel::from_module(*ck.model, dt);
    EXPECT_EQ(m.model->weight_bytes(), ref.weight_bytes()) << to_string(dt);
    PagedKvPool p1(2, 2, 16, 2, 16), p2(2, 2, 16, 2, 16);
    auto got = m.model->forward(toks, {a}, p1, rows), want = ref.forward(toks, {a}, p2, rows);
    EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-5)) << to_string(dt);
  }
  // A tensor of the wrong shape is refused with its name (past the checksums, which refuse the
  // edited config.json first).
  auto cfg = ck.config;
  cfg.intermediate_size = 64;
  write_file_atomic(d / "ck/config.json", model_config_to_json(cfg));
  try {
    load_engine_model(d / "ck", WeightDtype::kFp32);
    ADD_FAILURE() << "loaded a checkpoint whose config.json changed";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json: checksum mismatch"), std::string::npos)
        << e.what();
  }
  try {
    load_engine_model(d / "ck", WeightDtype::kFp32, /*verify_sha256=*/false);
    ADD_FAILURE() << "loaded a checkpoint whose config does not match its tensors";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("wrong shape"), std::string::npos) << e.what();
  }
}

// LibTorch's CPU allocator, wrapped while an instance lives: counts every CPU tensor allocation
// of at least `min_bytes`, whatever op, copy or conversion asked for it (blind to dtype, so the
// caller picks a size no int8 weight reaches). Not thread-safe to install (c10's rule).
class LargeCpuAllocations {
 public:
  explicit LargeCpuAllocations(size_t min_bytes) : prev_(c10::GetCPUAllocator()) {
    recorder().inner = prev_;
    recorder().min_bytes = min_bytes;
    recorder().count = 0;
    c10::SetCPUAllocator(&recorder());
  }
  ~LargeCpuAllocations() { c10::SetCPUAllocator(prev_); }
  int count() const { return recorder().count.load(); }

 private:
  struct Recorder : c10::Allocator {
    c10::Allocator* inner = nullptr;
    size_t min_bytes = 0;
    mutable std::atomic<int> count{0};
    c10::DataPtr allocate(size_t n) const override {
      if (n >= min_bytes) ++count;
      return inner->allocate(n);
    }
    c10::DeleterFnPtr raw_deleter() const override { return inner->raw_deleter(); }
  };
  static Recorder& recorder() {
    static Recorder r;  // c10 keeps the pointer: static lifetime
    return r;
  }
  c10::Allocator* prev_;
};

// Issue #24 (Memory): serving an int8 checkpoint touches no fp32 copy. The model is shaped so
// that the smallest weight matrix in fp32 is larger than every int8 tensor the loader may hold
// (the fused qkv included): then any allocation that large during the load is an fp32 (or
// bf16) weight. The controls show the counter sees the fp32 copies the other loads make.
TEST(EngineMemory, LoadingAnInt8CheckpointAllocatesNoFp32Weight) {
  ktl::testing::TempDir d("ktl-int8-load");
  const std::string tok = ktl::testing::make_tiny_tokenizer(d / "tok");
  ModelConfig c = testing::tiny_model_config(Tokenizer::load(tok)->vocab_size());
  c.hidden_size = 256;  // 4 heads of 64, 4 kv heads: k_proj is [256, 256]
  c.num_kv_heads = 4;
  c.intermediate_size = 256;
  for (bool tied : {true, false}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    c.tie_word_embeddings = tied;
    Transformer t(c);
    t->init_weights(4);
    save_checkpoint(d / "fp32", *t, Tokenizer::load(tok)->model_bytes(), CheckpointMeta{});
    {
      LoadedEngineModel q = load_engine_model(d / "fp32", WeightDtype::kInt8);
      save_int8_checkpoint(*q.model, d / "fp32", d / "int8");
    }
    ASSERT_TRUE(is_int8_checkpoint(d / "int8"));

    const int64_t D = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
    const int64_t qkv_out = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim();
    const size_t smallest_fp32 = static_cast<size_t>(c.num_kv_heads * c.head_dim() * D * 4);
    const int64_t largest_int8 = std::max({qkv_out * D, 2 * F * D, V * D, D * F});
    ASSERT_LT(largest_int8, static_cast<int64_t>(smallest_fp32)) << "the test's premise";

    auto large_allocs = [&](const std::string& dir, WeightDtype dt) {
      LargeCpuAllocations a(smallest_fp32);
      LoadedEngineModel m = load_engine_model(dir, dt);
      EXPECT_EQ(m.model->dtype(), dt);
      return a.count();
    };
    EXPECT_EQ(large_allocs(d / "int8", engine_dtype_for("auto")), 0);
    EXPECT_EQ(large_allocs(d / "int8", WeightDtype::kInt8), 0);
    // Controls: quantizing at load (fp32 blocks of 256 rows: whole matrices here), an fp32 load
    // (fused qkv / gate_up) and dequantizing an int8 checkpoint all make fp32 weight copies.
    EXPECT_GT(large_allocs(d / "fp32", WeightDtype::kInt8), 0);
    // (fp32 weights go to the huge-page arena, which this counter does not see, unless asked.)
    setenv("KTL_HUGE_PAGES", "0", 1);
    EXPECT_GT(large_allocs(d / "fp32", WeightDtype::kFp32), 0);
    unsetenv("KTL_HUGE_PAGES");
    EXPECT_GT(large_allocs(d / "int8", WeightDtype::kFp32), 0);
    std::filesystem::remove_all(d / "fp32");
    std::filesystem::remove_all(d / "int8");
  }
}

// The matrices each decode step streams live in memory advised for huge pages
// (core/base/huge_page_arena.h), and in plain tensors under KTL_HUGE_PAGES=0; same outputs.
TEST(EngineMemory, WeightsLiveInHugePagesWhereTheOsHasThem) {
  if (!transparent_huge_pages_enabled()) GTEST_SKIP() << "transparent huge pages are off here";
  const ModelConfig c = tiny_config();
  Transformer t(c);
  t->init_weights(2);
  const std::vector<int> toks = {2, 40, 41, 300};
  const std::vector<int> rows = {0, 1, 2, 3};
  AttnSeq a{0, 4, 0, {0}};
  for (WeightDtype d : {WeightDtype::kFp32, WeightDtype::kBf16, WeightDtype::kInt8}) {
    EngineModel m = EngineModel::from_module(*t, d);
    const void* head = d == WeightDtype::kInt8 ? m.head().int8_parts().first.data_ptr()
                                               : m.head().weight().data_ptr();
    const int eligible = testing::thp_eligible(head);
    if (eligible < 0) GTEST_SKIP() << "this kernel's smaps has no THPeligible";
    EXPECT_EQ(eligible, 1) << to_string(d);
    setenv("KTL_HUGE_PAGES", "0", 1);
    EngineModel plain = EngineModel::from_module(*t, d);
    unsetenv("KTL_HUGE_PAGES");
    PagedKvPool p1(2, 2, 16, 2, 16), p2(2, 2, 16, 2, 16);
    EXPECT_TRUE(torch::equal(m.forward(toks, {a}, p1, rows), plain.forward(toks, {a}, p2, rows)))
        << to_string(d);
  }
}

// The serving default (issue #24, by measurement): int8 whatever the checkpoint stores; an asked
// format wins.
TEST(EngineMemory, AutoDtypeServesEveryCheckpointAsInt8) {
  ktl::testing::TempDir d("ktl-auto-dtype");
  const std::string tok = ktl::testing::make_tiny_tokenizer(d / "tok");
  ktl::testing::make_tiny_checkpoint(d / "fp32", tok, 2);
  save_int8_checkpoint(*load_engine_model(d / "fp32", WeightDtype::kInt8).model, d / "fp32",
                       d / "int8");
  EXPECT_EQ(engine_dtype_for("auto"), WeightDtype::kInt8);
  EXPECT_EQ(engine_dtype_for(""), WeightDtype::kInt8);
  for (const char* ck : {"fp32", "int8"})
    EXPECT_EQ(load_engine_model(d / ck, engine_dtype_for("auto")).model->dtype(),
              WeightDtype::kInt8)
        << ck;
  EXPECT_EQ(engine_dtype_for("fp32"), WeightDtype::kFp32);
  EXPECT_EQ(engine_dtype_for("bf16"), WeightDtype::kBf16);  // an int8 checkpoint: dequantized
  EXPECT_THROW(engine_dtype_for("int4"), std::invalid_argument);
}

TEST(KvBudget, DefaultFollowsTheModelAndMaxNumSeqs) {
  ModelConfig small;  // model_small's shape: 12 layers, 4 kv heads of 64, context 1024
  small.vocab_size = 32000;
  small.hidden_size = 768;
  small.num_layers = 12;
  small.num_heads = 12;
  small.num_kv_heads = 4;
  small.intermediate_size = 2048;
  small.max_seq_length = 1024;
  EngineConfig cfg;                                      // kv_cache_mb 0: automatic
  const int64_t per_block = 2LL * 12 * 16 * 4 * 64 * 4;  // 384 KiB
  KvBudget b = kv_budget(small, cfg);
  EXPECT_EQ(b.num_blocks, 16 * 64);  // 16 sequences x 1024 tokens / 16 per block
  EXPECT_EQ(b.bytes, 16 * 64 * per_block);
  cfg.max_num_seqs = 4;
  EXPECT_EQ(kv_budget(small, cfg).num_blocks, 4 * 64);
  cfg.max_num_seqs = 1000;  // capped
  EXPECT_EQ(kv_budget(small, cfg).num_blocks, kDefaultKvCapBytes / per_block);
  cfg.max_num_seqs = 1;  // at least one full context, plus a block
  EXPECT_EQ(kv_budget(small, cfg).num_blocks, 65);
  cfg.kv_cache_mb = 96;  // an explicit budget wins
  EXPECT_EQ(kv_budget(small, cfg).num_blocks, 256);
  cfg.kv_cache_mb = 1;
  EXPECT_EQ(kv_budget(small, cfg).num_blocks, 65);
  cfg.kv_cache_blocks = 300;  // an exact count wins over both
  EXPECT_EQ(kv_budget(small, cfg).num_blocks, 300);
  cfg.kv_cache_blocks = 1;
  EXPECT_EQ(kv_budget(small, cfg).num_blocks, 65);
}

}  // namespace
}  // namespace ktl
