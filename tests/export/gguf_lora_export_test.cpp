// A PEFT LoRA adapter exported as llama.cpp's LoRA GGUF: read back with the project's reader and
// checked against what llama.cpp's loader (src/llama-adapter.cpp) and convert_lora_to_gguf.py
// expect: metadata keys and types, tensor names, ggml dims, dtypes, and lora_b's q/k rows in
// llama.cpp's interleaved RoPE layout, so that B_gguf A_gguf is the base GGUF's permutation of
// the Hugging Face delta B A.
#include "core/export/gguf_lora_export.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/base/file_util.h"
#include "core/export/gguf_reader.h"
#include "tests/export/lora_adapter_files.h"

namespace ktl {
namespace {

using testing::LoraBaseShape;
using testing::LoraTestTensor;

class GgufLoraExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("ktl_gguf_lora_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(root_);
    cfg_.rank = 4;
    cfg_.alpha = 8;
    base_ = write_base("base", LoraBaseShape{});
  }
  void TearDown() override { fs::remove_all(root_); }

  // A base checkpoint's config.json (Hugging Face LlamaConfig keys); no weights needed.
  fs::path write_base(const std::string& name, const LoraBaseShape& b) {
    const fs::path dir = root_ / name;
    fs::create_directories(dir);
    nlohmann::json c = {{"model_type", "llama"},
                        {"vocab_size", 100},
                        {"hidden_size", b.hidden},
                        {"intermediate_size", b.ffn},
                        {"num_hidden_layers", b.layers},
                        {"num_attention_heads", b.heads},
                        {"num_key_value_heads", b.kv_heads},
                        {"max_position_embeddings", 128},
                        {"tie_word_embeddings", true}};
    write_file_atomic(dir / "config.json", c.dump(2));
    return dir;
  }

  GgufLoraExportSummary run(const fs::path& adapter, const std::string& out,
                            GgufDtype dtype = GgufDtype::kF32, std::string base = "") {
    GgufLoraExportOptions o;
    o.adapter_dir = adapter.string();
    o.base_dir = base.empty() ? base_.string() : base;
    o.out_path = (root_ / out).string();
    o.dtype = dtype;
    return export_gguf_lora(o);
  }

  // The export's error message (fails the test when it does not throw).
  std::string error_of(const fs::path& adapter, std::string base = "") {
    try {
      run(adapter, "bad.gguf", GgufDtype::kF32, base);
    } catch (const std::exception& e) {
      EXPECT_FALSE(fs::exists(root_ / "bad.gguf"));
      return e.what();
    }
    ADD_FAILURE() << "no error for " << adapter;
    return "";
  }

  fs::path root_, base_;
  LoraConfig cfg_;
};

// Row `r` of llama.cpp's layout is this row of Hugging Face's, spelled as convert_hf_to_gguf's
// permute(): w.reshape(n_head, 2, head_dim / 2, cols).swapaxes(1, 2).reshape(w.shape).
int64_t hf_row_of(int64_t r, int64_t rows, int n_head) {
  const int64_t hd = rows / n_head, half = hd / 2;
  const int64_t h = r / hd, j = (r % hd) / 2, i = (r % hd) % 2;  // new index (h, j, i)
  return h * hd + i * half + j;                                  // old index (h, i, j)
}

// x [rows, k] times y [k, cols], naively.
std::vector<float> matmul(const std::vector<float>& x, const std::vector<float>& y, int64_t rows,
                          int64_t k, int64_t cols) {
  std::vector<float> out(size_t(rows * cols), 0.f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      for (int64_t i = 0; i < k; ++i) out[r * cols + c] += x[r * k + i] * y[i * cols + c];
  return out;
}

TEST_F(GgufLoraExportTest, MetadataAndTensorsAreWhatLlamaCppLoads) {
  const LoraBaseShape b;
  testing::write_lora_adapter(root_ / "my-adapter", cfg_, b);
  const auto sum = run(root_ / "my-adapter", "a.gguf");
  EXPECT_EQ(sum.tensors, size_t(b.layers * 7 * 2));
  EXPECT_EQ(sum.layers, b.layers);
  EXPECT_EQ(sum.config.rank, 4);
  const GgufFile f = GgufFile::open((root_ / "a.gguf").string());
  EXPECT_EQ(f.version(), 3u);
  // Exactly convert_lora_to_gguf.py's keys, in its order, with llama.cpp's types.
  std::vector<std::string> keys;
  for (const auto& kv : f.metadata()) keys.push_back(kv.first);
  EXPECT_EQ(keys, (std::vector<std::string>{"general.architecture", "general.type", "adapter.type",
                                            "general.name", "adapter.lora.alpha",
                                            "general.quantization_version"}));
  EXPECT_EQ(f.get_string("general.architecture"), "llama");  // must equal the base's arch
  EXPECT_EQ(f.get_string("general.type"), "adapter");
  EXPECT_EQ(f.get_string("adapter.type"), "lora");
  EXPECT_EQ(f.get_string("general.name"), "my-adapter");
  EXPECT_EQ(f.get_f32("adapter.lora.alpha"), 8.f);  // llama.cpp reads it with gguf_get_val_f32
  EXPECT_EQ(f.get_u32("general.quantization_version"), 2u);

  // Tensors: blk.N.<base tensor>.lora_a / .lora_b, in block order, f32, with the dims that
  // llama_adapter_lora_init_impl checks against the base tensor (base ne = {in, out}):
  // a.ne[0] == in, b.ne[1] == out, a.ne[1] == b.ne[0] == r.
  const std::pair<LoraTarget, const char*> base_names[] = {
      {LoraTarget::kQ, "attn_q"},      {LoraTarget::kK, "attn_k"},      {LoraTarget::kV, "attn_v"},
      {LoraTarget::kO, "attn_output"}, {LoraTarget::kGate, "ffn_gate"}, {LoraTarget::kUp, "ffn_up"},
      {LoraTarget::kDown, "ffn_down"}};
  size_t i = 0;
  ASSERT_EQ(f.tensors().size(), size_t(b.layers * 7 * 2));
  for (int l = 0; l < b.layers; ++l) {
    for (const auto& [target, name] : base_names) {
      const auto [out, in] = testing::lora_test_shape(b, target);
      const std::string stem = "blk." + std::to_string(l) + "." + name + ".weight";
      const auto& a = f.tensors()[i++];
      const auto& bt = f.tensors()[i++];
      EXPECT_EQ(a.name, stem + ".lora_a");
      EXPECT_EQ(bt.name, stem + ".lora_b");
      EXPECT_EQ(a.ne, (std::vector<uint64_t>{uint64_t(in), 4}));
      EXPECT_EQ(bt.ne, (std::vector<uint64_t>{4, uint64_t(out)}));
      EXPECT_EQ(a.type, GgmlType::kF32);
      EXPECT_EQ(bt.type, GgmlType::kF32);
    }
  }
}

TEST_F(GgufLoraExportTest, ValuesKeepAAndPermuteOnlyTheQkRowsOfB) {
  const LoraBaseShape b;
  const auto t = testing::write_lora_adapter(root_ / "ad", cfg_, b);
  run(root_ / "ad", "a.gguf");
  const GgufFile f = GgufFile::open((root_ / "a.gguf").string());
  for (int l = 0; l < b.layers; ++l) {
    for (auto target : kAllLoraTargets) {
      const auto& A = t.at(peft_tensor_name({l, target, false}));
      const auto& B = t.at(peft_tensor_name({l, target, true}));
      const auto ga = f.to_f32(*f.find_tensor(gguf_lora_tensor_name({l, target, false})));
      const auto gb = f.to_f32(*f.find_tensor(gguf_lora_tensor_name({l, target, true})));
      EXPECT_EQ(ga, A.values) << "lora_a is written as PEFT stores it";
      const int heads = target == LoraTarget::kQ   ? b.heads
                        : target == LoraTarget::kK ? b.kv_heads
                                                   : 0;
      const int64_t out = B.shape[0], r = B.shape[1], in = A.shape[1];
      for (int64_t row = 0; row < out; ++row) {
        const int64_t src = heads ? hf_row_of(row, out, heads) : row;
        for (int64_t c = 0; c < r; ++c)
          ASSERT_EQ(gb[row * r + c], B.values[src * r + c])
              << lora_target_short_name(target) << " " << row;
      }
      if (!heads) continue;
      // The delta llama.cpp adds (B_gguf A_gguf) is the Hugging Face delta (B A) with its rows
      // in llama.cpp's order: what the base GGUF export does to the merged weight.
      const auto delta_gguf = matmul(gb, ga, out, r, in);
      const auto delta_hf = matmul(B.values, A.values, out, r, in);
      for (int64_t row = 0; row < out; ++row)
        for (int64_t c = 0; c < in; ++c)
          ASSERT_NEAR(delta_gguf[row * in + c], delta_hf[hf_row_of(row, out, heads) * in + c],
                      1e-6);
    }
  }
}

TEST_F(GgufLoraExportTest, F16OutputAndHalfPrecisionInputs) {
  const LoraBaseShape b;
  const auto t = testing::write_lora_adapter(root_ / "ad", cfg_, b);
  const auto sum = run(root_ / "ad", "h.gguf", GgufDtype::kF16);
  const GgufFile f = GgufFile::open((root_ / "h.gguf").string());
  EXPECT_EQ(f.metadata().size(), 6u);
  for (const auto& ti : f.tensors()) EXPECT_EQ(ti.type, GgmlType::kF16) << ti.name;
  const auto& A = t.at(peft_tensor_name({1, LoraTarget::kDown, false}));
  const auto ga = f.to_f32(*f.find_tensor("blk.1.ffn_down.weight.lora_a"));
  ASSERT_EQ(ga.size(), A.values.size());
  for (size_t i = 0; i < ga.size(); ++i) EXPECT_NEAR(ga[i], A.values[i], 1e-3f);
  EXPECT_EQ(sum.bytes, fs::file_size(root_ / "h.gguf"));
  EXPECT_THROW(run(root_ / "ad", "q.gguf", GgufDtype::kQ8_0), std::invalid_argument);
  EXPECT_FALSE(fs::exists(root_ / "q.gguf"));
  // BF16 and F16 adapters (PEFT saves in the training dtype) export their exact values.
  for (StDtype d : {StDtype::BF16, StDtype::F16}) {
    const auto th = testing::write_lora_adapter(root_ / "half", cfg_, b, 9, "", {}, d);
    run(root_ / "half", "half.gguf");
    const GgufFile g = GgufFile::open((root_ / "half.gguf").string());
    EXPECT_EQ(g.to_f32(*g.find_tensor("blk.0.attn_v.weight.lora_a")),
              th.at(peft_tensor_name({0, LoraTarget::kV, false})).values);
  }
}

TEST_F(GgufLoraExportTest, SomeTargetsOnly) {
  cfg_.targets = parse_lora_targets("q,v");
  testing::write_lora_adapter(root_ / "qv", cfg_, LoraBaseShape{});
  run(root_ / "qv", "qv.gguf");
  const GgufFile f = GgufFile::open((root_ / "qv.gguf").string());
  std::vector<std::string> names;
  for (const auto& t : f.tensors()) names.push_back(t.name);
  EXPECT_EQ(names,
            (std::vector<std::string>{"blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b",
                                      "blk.0.attn_v.weight.lora_a", "blk.0.attn_v.weight.lora_b",
                                      "blk.1.attn_q.weight.lora_a", "blk.1.attn_q.weight.lora_b",
                                      "blk.1.attn_v.weight.lora_a", "blk.1.attn_v.weight.lora_b"}));
}

TEST_F(GgufLoraExportTest, FindsTheBaseFromTheAdapterOrAsksForIt) {
  testing::write_lora_adapter(root_ / "ad", cfg_, LoraBaseShape{});
  GgufLoraExportOptions o;
  o.adapter_dir = (root_ / "ad").string();
  o.out_path = (root_ / "a.gguf").string();
  // No --base and nothing in the adapter names one: the error says what to pass.
  try {
    export_gguf_lora(o);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("--base"), std::string::npos) << e.what();
  }
  // base_model_name_or_path, relative to the adapter directory.
  LoraConfig named = cfg_;
  named.base_model = "../base";
  write_file_atomic(root_ / "ad" / kAdapterConfigFile, lora_config_to_peft_json(named));
  EXPECT_EQ(export_gguf_lora(o).base_dir, (root_ / "ad" / "../base").string());
  // lora_base.json (in a LoRA training checkpoint) wins over it.
  const fs::path other = write_base("other", LoraBaseShape{});
  write_file_atomic(root_ / "ad" / kLoraBaseFile, lora_base_json({other.string(), "ab"}));
  EXPECT_EQ(export_gguf_lora(o).base_dir, other.string());
  write_file_atomic(root_ / "ad" / kLoraBaseFile,
                    lora_base_json({(root_ / "gone").string(), "ab"}));
  EXPECT_THROW(export_gguf_lora(o), std::runtime_error);
  // A LoRA training checkpoint keeps a copy of its base's config.json: used when the base moved.
  fs::copy_file(base_ / "config.json", root_ / "ad" / "config.json");
  EXPECT_EQ(export_gguf_lora(o).base_dir, (root_ / "ad").string());
  // An explicit base wins over all of these; one without config.json is refused.
  o.base_dir = base_.string();
  EXPECT_EQ(export_gguf_lora(o).base_dir, base_.string());
  o.base_dir = root_.string();
  EXPECT_THROW(export_gguf_lora(o), std::runtime_error);
}

TEST_F(GgufLoraExportTest, RefusesAdaptersThatDoNotFitTheBase) {
  auto expect_error = [&](const std::string& what, const std::string& msg, std::string base = "") {
    const std::string e = error_of(root_ / what, base);
    EXPECT_NE(e.find(msg), std::string::npos) << what << ": " << e;
  };
  const LoraBaseShape b;
  const std::string q0b = peft_tensor_name({0, LoraTarget::kQ, true});
  testing::write_lora_adapter(root_ / "missing", cfg_, b, 1, q0b);
  expect_error("missing", q0b + "' is missing");
  testing::write_lora_adapter(root_ / "extra", cfg_, b, 1, "",
                              {"base_model.model.lm_head.lora_A.weight", {4, 64}});
  expect_error("extra", "lm_head.lora_A.weight' is not a LoRA weight");
  testing::write_lora_adapter(root_ / "layer", cfg_, b, 1, "",
                              {peft_tensor_name({2, LoraTarget::kQ, false}), {4, 64}});
  expect_error("layer", "names layer 2 of a 2-layer base model");
  LoraConfig qv = cfg_;
  qv.targets = parse_lora_targets("q,v");
  testing::write_lora_adapter(root_ / "target", qv, b, 1, "",
                              {peft_tensor_name({0, LoraTarget::kUp, false}), {4, 64}});
  expect_error("target", "not in target_modules");
  // Made for another base: a wider model's shapes.
  LoraBaseShape wide = b;
  wide.hidden = 128;
  testing::write_lora_adapter(root_ / "wide", cfg_, wide);
  expect_error("wide", "; r = 4 on the base model needs [");
  // Not an adapter directory, or one with a setting llama.cpp cannot apply.
  fs::create_directories(root_ / "empty");
  expect_error("empty", "no adapter_config.json");
  testing::write_lora_adapter(root_ / "dora", cfg_, b);
  auto j = nlohmann::json::parse(read_file(root_ / "dora" / kAdapterConfigFile));
  j["use_dora"] = true;
  write_file_atomic(root_ / "dora" / kAdapterConfigFile, j.dump());
  expect_error("dora", "\"use_dora\" is not supported");
  expect_error("nowhere", "adapter directory not found");
  testing::write_lora_adapter(root_ / "ok", cfg_, b);
  expect_error("ok", "base checkpoint directory not found", (root_ / "nobase").string());
}

TEST_F(GgufLoraExportTest, TheModelExportNamesTheAdapterFormat) {
  testing::write_lora_adapter(root_ / "ad", cfg_, LoraBaseShape{});
  GgufExportOptions o;
  o.model_dir = (root_ / "ad").string();
  o.out_path = (root_ / "m.gguf").string();
  try {
    export_gguf(o);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("--format gguf-lora"), std::string::npos) << e.what();
  }
}

TEST_F(GgufLoraExportTest, CliWritesTheAdapterGguf) {
  const char* bin = std::getenv("KTL_BIN");
  if (!bin || !fs::exists(bin)) GTEST_SKIP() << "build/ktl not built (KTL_BIN unset or missing)";
  testing::write_lora_adapter(root_ / "ad", cfg_, LoraBaseShape{});
  auto sh = [](const std::string& cmd) {
    int rc = std::system((cmd + " >/dev/null 2>&1").c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  };
  const std::string cmd = std::string(bin) + " export --format gguf-lora --adapter " +
                          (root_ / "ad").string() + " --out " + (root_ / "a.gguf").string();
  EXPECT_EQ(sh(cmd + " --base " + base_.string() + " --dtype f16"), 0);
  const GgufFile f = GgufFile::open((root_ / "a.gguf").string());
  EXPECT_EQ(f.get_string("general.type"), "adapter");
  EXPECT_EQ(f.tensors().front().type, GgmlType::kF16);
  EXPECT_EQ(sh(cmd + " --base " + base_.string() + " --dtype q8_0"), 2);
  EXPECT_EQ(sh(cmd + " --model " + base_.string()), 2);                       // --base, not --model
  EXPECT_EQ(sh(std::string(bin) + " export --format gguf-lora --out x"), 2);  // no --adapter
  EXPECT_EQ(sh(cmd), 1);  // no base found: a runtime error naming --base
  EXPECT_EQ(sh(std::string(bin) + " export --model " + base_.string() + " --base " +
               base_.string() + " --out x.gguf"),
            2);  // --base is for gguf-lora
}

}  // namespace
}  // namespace ktl
