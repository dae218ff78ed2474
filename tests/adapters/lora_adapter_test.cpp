// Attaching, training-parameter selection, PEFT files and merging on a small Transformer.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "core/adapters/lora_adapter.h"
#include "core/model/checkpoint.h"
#include "core/safetensors/safetensors.h"

namespace ktl {
namespace {

namespace fs = std::filesystem;

ModelConfig small_config() {
  ModelConfig c;
  c.vocab_size = 61;
  c.hidden_size = 32;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.intermediate_size = 40;
  c.max_seq_length = 32;
  return c;
}

LoraConfig lora(int r, const std::string& targets = "all") {
  LoraConfig c;
  c.rank = r;
  c.alpha = 2.0 * r;
  c.dropout = 0.0;
  c.targets = parse_lora_targets(targets);
  return c;
}

void randomize_b(TransformerImpl& m, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard g;
  for (auto& [name, p] : lora_named_parameters(m))
    if (name.find("lora_B") != std::string::npos) p.copy_(torch::randn(p.sizes()) * 0.05);
}

fs::path temp_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("ktl-lora-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d;
}

TEST(LoraAdapter, AttachFreezesTheBaseAndLeavesOutputUnchanged) {
  Transformer m(small_config());
  auto tokens = torch::randint(0, 61, {2, 9});
  auto before = m->forward(tokens).detach();
  attach_lora(*m, lora(4, "q,v,down"), 1);
  EXPECT_TRUE(torch::equal(m->forward(tokens), before));
  auto trainable = 0, frozen = 0;
  for (const auto& p : m->named_parameters()) (p.value().requires_grad() ? trainable : frozen)++;
  EXPECT_EQ(trainable, 2 * 3 * 2);  // layers x targets x {A, B}
  EXPECT_EQ(lora_named_parameters(*m).size(), 12u);
  EXPECT_EQ(lora_named_parameters(*m)[0].first, "layers.0.self_attn.q_proj.lora_A");
  EXPECT_GT(frozen, 0);
  EXPECT_THROW(attach_lora(*m, lora(4), 2), std::logic_error);
}

TEST(LoraAdapter, GradientsReachOnlyTheAdapter) {
  Transformer m(small_config());
  attach_lora(*m, lora(2), 3);
  randomize_b(*m, 4);
  auto tokens = torch::randint(0, 61, {2, 8});
  m->forward(tokens).sum().backward();
  for (const auto& p : m->named_parameters()) {
    if (is_lora_parameter(p.key()))
      EXPECT_TRUE(p.value().grad().defined()) << p.key();
    else
      EXPECT_FALSE(p.value().grad().defined()) << p.key();
  }
}

TEST(LoraAdapter, PeftFilesRoundTripAndCheckpointsSkipTheAdapter) {
  auto cfg = small_config();
  Transformer m(cfg);
  attach_lora(*m, lora(4, "q,k,v,o,gate,up,down"), 5);
  randomize_b(*m, 6);
  auto tokens = torch::randint(0, 61, {1, 10});
  auto with_adapter = m->forward(tokens).detach();
  auto dir = temp_dir("roundtrip");
  auto a = extract_lora(*m);
  EXPECT_EQ(a.config.rank, 4);
  EXPECT_DOUBLE_EQ(a.config.scale(), 2.0);
  EXPECT_EQ(a.parameter_count(), [&] {
    int64_t n = 0;
    for (auto& [name, p] : lora_named_parameters(*m)) n += p.numel();
    return n;
  }());
  save_peft_adapter(dir.string(), a);
  auto file = SafetensorsFile::open((dir / kAdapterWeightsFile).string());
  EXPECT_EQ(file.tensors().size(), 2u * 7 * 2);
  const auto* q = file.find("base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->shape, (std::vector<int64_t>{32, 4}));
  // The base checkpoint is the base: no adapter tensor in model.safetensors.
  save_weights_safetensors(*m, (dir / "model.safetensors").string());
  auto base_file = SafetensorsFile::open((dir / "model.safetensors").string());
  for (const auto& t : base_file.tensors())
    EXPECT_EQ(t.name.find("lora"), std::string::npos) << t.name;

  Transformer fresh(cfg);
  load_weights_safetensors(*fresh, (dir / "model.safetensors").string());
  attach_lora(*fresh, load_peft_adapter(dir.string(), cfg));
  EXPECT_TRUE(torch::allclose(fresh->forward(tokens), with_adapter, 1e-6, 1e-6));
  fs::remove_all(dir);
}

TEST(LoraAdapter, LoadRefusesMismatchedFiles) {
  auto cfg = small_config();
  Transformer m(cfg);
  attach_lora(*m, lora(2, "q,v"), 1);
  auto dir = temp_dir("bad");
  save_peft_adapter(dir.string(), extract_lora(*m));
  auto other = cfg;
  other.hidden_size = 48;
  other.intermediate_size = 64;
  EXPECT_THROW(load_peft_adapter(dir.string(), other), std::runtime_error);
  auto fewer = cfg;
  fewer.num_layers = 1;
  EXPECT_THROW(load_peft_adapter(dir.string(), fewer), std::runtime_error);
  {
    std::ofstream(dir / kAdapterConfigFile) << R"({"r": 2, "target_modules": ["q_proj","v_proj","o_proj"]})";
  }
  try {
    load_peft_adapter(dir.string(), cfg);
    FAIL() << "a missing tensor must be refused";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("o_proj.lora_A.weight' is missing"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(load_peft_adapter((dir / "nowhere").string(), cfg), std::runtime_error);
  fs::remove_all(dir);
}

TEST(LoraAdapter, MergeGivesTheSameLogitsWithoutTheAdapter) {
  Transformer m(small_config());
  attach_lora(*m, lora(3), 8);
  randomize_b(*m, 9);
  auto tokens = torch::randint(0, 61, {2, 12});
  auto with_adapter = m->forward(tokens).detach();
  merge_lora(*m);
  EXPECT_FALSE(has_lora(*m));
  EXPECT_TRUE(lora_named_parameters(*m).empty());
  EXPECT_TRUE(torch::allclose(m->forward(tokens), with_adapter, 1e-5, 1e-5));
  for (const auto& p : m->parameters()) EXPECT_TRUE(p.requires_grad());
}

}  // namespace
}  // namespace ktl
