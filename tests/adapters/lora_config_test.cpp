// LoRA settings and PEFT's names: a golden adapter_config.json, tensor names both ways.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/adapters/lora_config.h"

namespace ktl {
namespace {

TEST(LoraTargets, ParsesShortAndPeftNamesInBlockOrder) {
  auto t = parse_lora_targets("down, q_proj,v,q");
  EXPECT_EQ(t, (std::vector<LoraTarget>{LoraTarget::kQ, LoraTarget::kV, LoraTarget::kDown}));
  EXPECT_EQ(parse_lora_targets("all").size(), 7u);
  EXPECT_THROW(parse_lora_targets("q,lm_head"), std::invalid_argument);
  EXPECT_THROW(parse_lora_targets(" , "), std::invalid_argument);
}

// What PEFT 0.13 writes for LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05,
// target_modules=[…all seven…], task_type="CAUSAL_LM") saved with save_pretrained, keys sorted.
TEST(LoraConfigJson, MatchesPeftGolden) {
  LoraConfig c;
  c.base_model = "runs/base";
  auto j = nlohmann::json::parse(lora_config_to_peft_json(c));
  auto golden = nlohmann::json::parse(R"({
    "alpha_pattern": {}, "auto_mapping": null, "base_model_name_or_path": "runs/base",
    "bias": "none", "fan_in_fan_out": false, "inference_mode": true, "init_lora_weights": true,
    "layers_pattern": null, "layers_to_transform": null, "lora_alpha": 32.0,
    "lora_dropout": 0.05, "modules_to_save": null, "peft_type": "LORA", "r": 16,
    "rank_pattern": {}, "revision": null,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                       "down_proj"],
    "task_type": "CAUSAL_LM", "use_dora": false, "use_rslora": false})");
  EXPECT_EQ(j, golden);
  auto back = lora_config_from_peft_json(j.dump());
  EXPECT_EQ(back.rank, 16);
  EXPECT_DOUBLE_EQ(back.alpha, 32.0);
  EXPECT_DOUBLE_EQ(back.scale(), 2.0);
  EXPECT_EQ(back.targets, c.targets);
  EXPECT_EQ(back.base_model, "runs/base");
}

TEST(LoraConfigJson, RefusesWhatTheEngineCannotApply) {
  auto base = nlohmann::json::parse(lora_config_to_peft_json(LoraConfig{}));
  for (const char* key : {"use_dora", "use_rslora", "fan_in_fan_out"}) {
    auto j = base;
    j[key] = true;
    EXPECT_THROW(lora_config_from_peft_json(j.dump()), std::invalid_argument) << key;
  }
  auto j = base;
  j["peft_type"] = "IA3";
  EXPECT_THROW(lora_config_from_peft_json(j.dump()), std::invalid_argument);
  j = base;
  j["bias"] = "all";
  EXPECT_THROW(lora_config_from_peft_json(j.dump()), std::invalid_argument);
  j = base;
  j["target_modules"] = "q_proj,embed_tokens";
  EXPECT_THROW(lora_config_from_peft_json(j.dump()), std::invalid_argument);
  EXPECT_THROW(lora_config_from_peft_json("{"), std::invalid_argument);
}

TEST(PeftNames, RoundTrip) {
  for (auto t : kAllLoraTargets) {
    for (bool b : {false, true}) {
      PeftKey k{11, t, b};
      auto back = parse_peft_tensor_name(peft_tensor_name(k));
      ASSERT_TRUE(back);
      EXPECT_EQ(back->layer, 11);
      EXPECT_EQ(back->target, t);
      EXPECT_EQ(back->is_b, b);
    }
  }
  EXPECT_EQ(peft_tensor_name({3, LoraTarget::kGate, false}),
            "base_model.model.model.layers.3.mlp.gate_proj.lora_A.weight");
  EXPECT_FALSE(parse_peft_tensor_name("model.layers.3.mlp.gate_proj.weight"));
  EXPECT_FALSE(parse_peft_tensor_name("base_model.model.model.layers.3.mlp.gate_proj.lora_A.default.weight"));
  EXPECT_FALSE(parse_peft_tensor_name("base_model.model.model.layers.x.mlp.up_proj.lora_A.weight"));
}

}  // namespace
}  // namespace ktl
