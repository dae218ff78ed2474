// Exports a tiny checkpoint (random weights, a SentencePiece model trained on Korean text) to
// GGUF and checks it with the project's reader against llama.cpp's conventions.
#include "core/export/gguf_export.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "core/base/file_util.h"
#include "core/export/gguf_reader.h"
#include "core/export/gguf_vocab.h"
#include "core/export/ollama_export.h"
#include "core/safetensors/safetensors.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/export/lora_adapter_files.h"
#include "tests/support/korean_fixture.h"

namespace ktl {
namespace {

struct TinyModel {
  int vocab = 0, hidden = 64, layers = 2, heads = 4, kv_heads = 2, ffn = 96, ctx = 128;
  bool tied = true;
};

class GgufExportTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("ktl_gguf_export_" + std::to_string(::getpid()));
    fs::create_directories(root_);
    testing::write_lines((root_ / "corpus.txt").string(), testing::korean_sentences(3000));
    TokenizerTrainOptions o;
    o.input_files = {(root_ / "corpus.txt").string()};
    o.model_prefix = (root_ / "tok").string();
    o.vocab_size = 700;
    train_tokenizer(o);
    tok_ = Tokenizer::load((root_ / "tok.model").string());
  }
  static void TearDownTestSuite() {
    tok_.reset();
    fs::remove_all(root_);
  }

  // Writes config.json (Hugging Face LlamaConfig keys), tokenizer.model and random weights.
  static fs::path make_checkpoint(const std::string& name, TinyModel m,
                                  std::map<std::string, std::vector<float>>* weights = nullptr,
                                  const std::string& skip = "") {
    const fs::path dir = root_ / name;
    fs::create_directories(dir);
    if (m.vocab == 0) m.vocab = tok_->vocab_size();
    nlohmann::json cfg = {{"architectures", {"LlamaForCausalLM"}},
                          {"model_type", "llama"},
                          {"vocab_size", m.vocab},
                          {"hidden_size", m.hidden},
                          {"intermediate_size", m.ffn},
                          {"num_hidden_layers", m.layers},
                          {"num_attention_heads", m.heads},
                          {"num_key_value_heads", m.kv_heads},
                          {"max_position_embeddings", m.ctx},
                          {"rms_norm_eps", 1e-5},
                          {"rope_theta", 10000.0},
                          {"tie_word_embeddings", m.tied},
                          {"hidden_act", "silu"},
                          {"bos_token_id", 2},
                          {"eos_token_id", 3},
                          {"pad_token_id", 0},
                          {"torch_dtype", "float32"}};
    write_file_atomic(dir / "config.json", cfg.dump(2));
    write_file_atomic(dir / "tokenizer.model", tok_->model_bytes());
    const int64_t D = m.hidden, F = m.ffn, Dh = m.hidden / m.heads;
    std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
        {"model.embed_tokens.weight", {m.vocab, D}}, {"model.norm.weight", {D}}};
    if (!m.tied) shapes.push_back({"lm_head.weight", {m.vocab, D}});
    for (int l = 0; l < m.layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      shapes.push_back({p + "input_layernorm.weight", {D}});
      shapes.push_back({p + "post_attention_layernorm.weight", {D}});
      shapes.push_back({p + "self_attn.q_proj.weight", {m.heads * Dh, D}});
      shapes.push_back({p + "self_attn.k_proj.weight", {m.kv_heads * Dh, D}});
      shapes.push_back({p + "self_attn.v_proj.weight", {m.kv_heads * Dh, D}});
      shapes.push_back({p + "self_attn.o_proj.weight", {D, m.heads * Dh}});
      shapes.push_back({p + "mlp.gate_proj.weight", {F, D}});
      shapes.push_back({p + "mlp.up_proj.weight", {F, D}});
      shapes.push_back({p + "mlp.down_proj.weight", {D, F}});
    }
    std::map<std::string, std::vector<float>> w;
    std::mt19937 rng(11);
    std::normal_distribution<float> nd(0.f, 0.02f);
    std::vector<StTensorView> views;
    for (const auto& [n, s] : shapes) {
      if (n == skip) continue;
      size_t count = 1;
      for (auto d : s) count *= size_t(d);
      auto& v = w[n];
      v.resize(count);
      for (auto& x : v) x = s.size() == 1 ? 1.f + nd(rng) : nd(rng);
      views.push_back({n, StDtype::F32, s, v.data(), v.size() * 4});
    }
    write_safetensors((dir / "model.safetensors").string(), views, {{"format", "pt"}});
    if (weights) *weights = std::move(w);
    return dir;
  }

  static GgufExportSummary run(const fs::path& dir, GgufDtype dtype, const std::string& out) {
    GgufExportOptions o;
    o.model_dir = dir.string();
    o.out_path = (root_ / out).string();
    o.dtype = dtype;
    return export_gguf(o);
  }

  static fs::path root_;
  static std::shared_ptr<Tokenizer> tok_;
};

fs::path GgufExportTest::root_;
std::shared_ptr<Tokenizer> GgufExportTest::tok_;

TEST_F(GgufExportTest, F32ExportFollowsLlamaCppConventions) {
  std::map<std::string, std::vector<float>> w;
  TinyModel m;
  const fs::path dir = make_checkpoint("f32", m, &w);
  const auto sum = run(dir, GgufDtype::kF32, "f32.gguf");
  GgufFile f = GgufFile::open((root_ / "f32.gguf").string());

  // Header and metadata: names and exact types llama.cpp reads.
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.metadata().front().first, "general.architecture");
  EXPECT_EQ(f.get_string("general.name"), "f32");
  EXPECT_EQ(f.get_u32("llama.context_length"), uint32_t(m.ctx));
  EXPECT_EQ(f.get_u32("llama.embedding_length"), uint32_t(m.hidden));
  EXPECT_EQ(f.get_u32("llama.block_count"), uint32_t(m.layers));
  EXPECT_EQ(f.get_u32("llama.feed_forward_length"), uint32_t(m.ffn));
  EXPECT_EQ(f.get_u32("llama.attention.head_count"), uint32_t(m.heads));
  EXPECT_EQ(f.get_u32("llama.attention.head_count_kv"), uint32_t(m.kv_heads));
  EXPECT_EQ(f.get_u32("llama.rope.dimension_count"), uint32_t(m.hidden / m.heads));
  EXPECT_EQ(f.get_u32("llama.vocab_size"), uint32_t(tok_->vocab_size()));
  EXPECT_FLOAT_EQ(f.get_f32("llama.attention.layer_norm_rms_epsilon"), 1e-5f);
  EXPECT_FLOAT_EQ(f.get_f32("llama.rope.freq_base"), 10000.f);
  EXPECT_EQ(f.get_u32("general.file_type"), 0u);
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(f.get_u32("tokenizer.ggml.bos_token_id"), 2u);
  EXPECT_EQ(f.get_u32("tokenizer.ggml.eos_token_id"), 3u);
  EXPECT_EQ(f.get_u32("tokenizer.ggml.unknown_token_id"), 1u);
  EXPECT_EQ(f.get_u32("tokenizer.ggml.padding_token_id"), 0u);
  EXPECT_TRUE(f.get_bool("tokenizer.ggml.add_bos_token"));
  EXPECT_FALSE(f.get_bool("tokenizer.ggml.add_eos_token"));
  EXPECT_TRUE(f.get_bool("tokenizer.ggml.add_space_prefix"));

  // Vocabulary: pieces, scores and types exactly as SentencePiece has them.
  const auto& tokens = f.get_array("tokenizer.ggml.tokens", GgufType::kString).arr;
  const auto& scores = f.get_array("tokenizer.ggml.scores", GgufType::kFloat32).arr;
  const auto& types = f.get_array("tokenizer.ggml.token_type", GgufType::kInt32).arr;
  ASSERT_EQ(tokens.size(), size_t(tok_->vocab_size()));
  ASSERT_EQ(scores.size(), tokens.size());
  ASSERT_EQ(types.size(), tokens.size());
  int n_byte = 0;
  for (int i = 0; i < tok_->vocab_size(); ++i) {
    EXPECT_EQ(tokens[i].s, tok_->id_to_piece(i));
    EXPECT_EQ(float(scores[i].f), tok_->score(i));
    EXPECT_EQ(types[i].i, int(tok_->type(i)));
    n_byte += types[i].i == 6;
  }
  EXPECT_EQ(types[0].i, 3);  // <pad> control
  EXPECT_EQ(types[1].i, 2);  // <unk>
  EXPECT_EQ(types[2].i, 3);  // <s>
  EXPECT_EQ(n_byte, 256);    // byte fallback pieces <0x00>..<0xFF>

  // Tensors: llama.cpp names, reversed dims, exact offsets, tied output omitted.
  EXPECT_EQ(sum.tensors, f.tensors().size());
  EXPECT_EQ(f.tensors().size(), size_t(2 + 9 * m.layers));
  EXPECT_EQ(f.find_tensor("output.weight"), nullptr);
  const GgufTensorInfo* emb = f.find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->ne, (std::vector<uint64_t>{uint64_t(m.hidden), uint64_t(tok_->vocab_size())}));
  EXPECT_EQ(emb->type, GgmlType::kF32);
  EXPECT_EQ(f.to_f32(*emb), w["model.embed_tokens.weight"]);
  EXPECT_EQ(f.find_tensor("blk.1.ffn_down.weight")->ne,
            (std::vector<uint64_t>{uint64_t(m.ffn), uint64_t(m.hidden)}));
  EXPECT_EQ(f.find_tensor("blk.0.attn_k.weight")->ne,
            (std::vector<uint64_t>{uint64_t(m.hidden), uint64_t(m.kv_heads * m.hidden / m.heads)}));
  EXPECT_EQ(f.find_tensor("output_norm.weight")->ne, (std::vector<uint64_t>{uint64_t(m.hidden)}));
  uint64_t expect_off = 0;
  for (const auto& t : f.tensors()) {
    EXPECT_EQ(t.offset, expect_off) << t.name;
    EXPECT_EQ((f.data_offset() + t.offset) % 32, 0u) << t.name;
    expect_off += (t.nbytes + 31) / 32 * 32;
  }
  EXPECT_EQ(f.file_size(), f.data_offset() + expect_off);

  // Unpermuted rows give back the checkpoint's q/k exactly; v is copied as is.
  for (const auto& [g, hf, heads] : std::vector<std::tuple<std::string, std::string, int>>{
           {"blk.1.attn_q.weight", "model.layers.1.self_attn.q_proj.weight", m.heads},
           {"blk.1.attn_k.weight", "model.layers.1.self_attn.k_proj.weight", m.kv_heads}}) {
    const GgufTensorInfo* t = f.find_tensor(g);
    ASSERT_NE(t, nullptr) << g;
    auto x = f.to_f32(*t);
    EXPECT_NE(x, w[hf]) << "rows must be permuted";
    std::vector<float> back(x.size());
    unpermute_rope_rows(x.data(), back.data(), int64_t(t->ne[1]), int64_t(t->ne[0]), heads);
    EXPECT_EQ(back, w[hf]) << g;
  }
  EXPECT_EQ(f.to_f32(*f.find_tensor("blk.0.attn_v.weight")),
            w["model.layers.0.self_attn.v_proj.weight"]);
}

TEST_F(GgufExportTest, Q8_0AndF16KeepNormsInF32AndStayClose) {
  std::map<std::string, std::vector<float>> w;
  TinyModel m;
  m.tied = false;
  m.ffn = 80;  // ffn_down rows of 80: not a multiple of 32, falls back to f16 like convert_hf
  const fs::path dir = make_checkpoint("q8", m, &w);
  const auto sum = run(dir, GgufDtype::kQ8_0, "q8.gguf");
  EXPECT_EQ(sum.f16_fallbacks, m.layers);
  GgufFile f = GgufFile::open((root_ / "q8.gguf").string());
  EXPECT_EQ(f.get_u32("general.file_type"), 7u);
  EXPECT_EQ(f.find_tensor("blk.0.attn_norm.weight")->type, GgmlType::kF32);
  EXPECT_EQ(f.find_tensor("output_norm.weight")->type, GgmlType::kF32);
  EXPECT_EQ(f.find_tensor("blk.0.ffn_down.weight")->type, GgmlType::kF16);
  const GgufTensorInfo* out = f.find_tensor("output.weight");
  ASSERT_NE(out, nullptr) << "untied head is exported";
  EXPECT_EQ(out->type, GgmlType::kQ8_0);
  EXPECT_EQ(out->nbytes, uint64_t(tok_->vocab_size()) * m.hidden / 32 * 34);
  auto y = f.to_f32(*out);
  const auto& x = w["lm_head.weight"];
  ASSERT_EQ(y.size(), x.size());
  double err = 0, norm = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    err += (y[i] - x[i]) * (y[i] - x[i]);
    norm += x[i] * x[i];
  }
  EXPECT_LT(std::sqrt(err / norm), 0.01);  // 8-bit: well under 1% relative error
  auto g = f.to_f32(*f.find_tensor("blk.0.ffn_gate.weight"));
  for (size_t i = 0; i < g.size(); ++i)
    ASSERT_NEAR(g[i], w["model.layers.0.mlp.gate_proj.weight"][i], 0.02f * 4 / 127 + 1e-6);

  run(dir, GgufDtype::kF16, "f16.gguf");
  GgufFile h = GgufFile::open((root_ / "f16.gguf").string());
  EXPECT_EQ(h.get_u32("general.file_type"), 1u);
  EXPECT_EQ(h.find_tensor("token_embd.weight")->type, GgmlType::kF16);
  EXPECT_EQ(h.find_tensor("blk.1.ffn_norm.weight")->type, GgmlType::kF32);
  auto e = h.to_f32(*h.find_tensor("token_embd.weight"));
  for (size_t i = 0; i < e.size(); ++i)
    ASSERT_EQ(e[i], fp16_to_fp32(fp32_to_fp16(w["model.embed_tokens.weight"][i])));
  EXPECT_LT(fs::file_size(root_ / "q8.gguf"), fs::file_size(root_ / "f16.gguf"));
}

TEST_F(GgufExportTest, ExportedVocabTokenizesKoreanLikeSentencePiece) {
  const fs::path dir = make_checkpoint("vocab", TinyModel{});
  run(dir, GgufDtype::kF32, "vocab.gguf");
  GgufFile f = GgufFile::open((root_ / "vocab.gguf").string());
  GgufVocab vocab = GgufVocab::from_gguf(f);
  std::vector<std::string> texts = {
      "나는 학교에서 책을 읽었다.",
      "오늘 날씨가 정말 좋네요! 내일도 맑을까요?",
      "서울에서 부산까지 KTX로 2시간 30분 걸렸다.",
      "鬱陵島에 가 보고 싶어요 🙂",  // characters outside the vocabulary: byte fallback
      "  두 칸 띄어쓰기와\n줄바꿈도 그대로",
      "ㅋㅋㅋ 너무 웃겨요 ㅠㅠ"};
  for (const auto& s : testing::korean_sentences(40, 99)) texts.push_back(s);
  int with_bytes = 0;
  for (const auto& t : texts) {
    const auto expect = tok_->encode(t);
    const auto got = vocab.tokenize(t);
    EXPECT_EQ(got, expect) << t;
    for (int id : got) with_bytes += tok_->type(id) == PieceType::kByte;
  }
  EXPECT_GT(with_bytes, 0) << "the byte-fallback path was exercised";
}

TEST_F(GgufExportTest, PaddedVocabularyLikeConvertHf) {
  TinyModel m;
  m.vocab = tok_->vocab_size() + 5;
  const fs::path dir = make_checkpoint("padded", m);
  run(dir, GgufDtype::kF32, "padded.gguf");
  GgufFile f = GgufFile::open((root_ / "padded.gguf").string());
  const auto& tokens = f.get_array("tokenizer.ggml.tokens", GgufType::kString).arr;
  ASSERT_EQ(tokens.size(), size_t(m.vocab));
  EXPECT_EQ(tokens.back().s, "[PAD" + std::to_string(m.vocab - 1) + "]");
  EXPECT_EQ(f.get_array("tokenizer.ggml.token_type", GgufType::kInt32).arr.back().i, 5);
  EXPECT_EQ(f.find_tensor("token_embd.weight")->ne[1], uint64_t(m.vocab));
}

TEST_F(GgufExportTest, RejectsBrokenCheckpointsClearly) {
  auto expect_error = [&](const fs::path& dir, const std::string& needle) {
    try {
      run(dir, GgufDtype::kF32, "bad.gguf");
      FAIL() << "exported a broken checkpoint, expected: " << needle;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(root_ / "bad.gguf"));
  };
  expect_error(make_checkpoint("miss", TinyModel{}, nullptr, "model.layers.1.mlp.up_proj.weight"),
               "missing tensor 'model.layers.1.mlp.up_proj.weight'");
  TinyModel small;
  small.vocab = 300;  // fewer rows than the tokenizer has pieces
  expect_error(make_checkpoint("small", small), "pieces but config.json's vocab_size is 300");
  const fs::path shape = make_checkpoint("shape", TinyModel{});
  auto cfg = nlohmann::json::parse(read_file(shape / "config.json"));
  cfg["intermediate_size"] = 128;
  write_file_atomic(shape / "config.json", cfg.dump());
  expect_error(shape, "has shape [96, 64], config.json needs [128, 64]");
  cfg.erase("num_hidden_layers");
  write_file_atomic(shape / "config.json", cfg.dump());
  expect_error(shape, "missing key 'num_hidden_layers'");
  write_file_atomic(shape / "config.json", "{\"vocab_size\": ");
  expect_error(shape, "invalid JSON");
  expect_error(root_ / "nope", "model directory not found");
  EXPECT_THROW(parse_gguf_dtype("q4_0"), std::invalid_argument);
}

TEST(GgufRope, PermutationMatchesReshapeSwapaxesAndInverts) {
  const int heads = 3, hd = 8, cols = 5, rows = heads * hd;
  std::vector<float> w(rows * cols), p(w.size()), back(w.size());
  for (size_t i = 0; i < w.size(); ++i) w[i] = float(i);
  permute_rope_rows(w.data(), p.data(), rows, cols, heads);
  // numpy: w.reshape(heads, 2, hd/2, cols).swapaxes(1, 2).reshape(rows, cols)
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < hd / 2; ++i)
      for (int j = 0; j < 2; ++j)
        for (int c = 0; c < cols; ++c)
          ASSERT_EQ(p[((h * hd) + i * 2 + j) * cols + c],
                    w[((h * hd) + j * hd / 2 + i) * cols + c]);
  unpermute_rope_rows(p.data(), back.data(), rows, cols, heads);
  EXPECT_EQ(back, w);
  EXPECT_THROW(permute_rope_rows(w.data(), p.data(), rows, cols, 5), std::invalid_argument);
}

// The reason for the permutation: Hugging Face's rotate-half RoPE on W x equals llama.cpp's
// interleaved (GPT-J) RoPE on P(W) x, up to the same row permutation, so attention scores match.
TEST(GgufRope, InterleavedRopeOnPermutedRowsEqualsRotateHalf) {
  const int hd = 8, heads = 2, rows = heads * hd, cols = 6, pos = 5;
  const double theta = 10000.0;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  std::vector<float> w(rows * cols), x(cols), pw(w.size());
  for (auto& v : w) v = nd(rng);
  for (auto& v : x) v = nd(rng);
  permute_rope_rows(w.data(), pw.data(), rows, cols, heads);
  auto matvec = [&](const std::vector<float>& m) {
    std::vector<double> y(rows, 0.0);
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) y[r] += double(m[r * cols + c]) * x[c];
    return y;
  };
  std::vector<double> q = matvec(w), qp = matvec(pw), hf(rows), gg(rows);
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < hd / 2; ++i) {
      const double a = pos * std::pow(theta, -2.0 * i / hd), c = std::cos(a), s = std::sin(a);
      const int b = h * hd;
      hf[b + i] = q[b + i] * c - q[b + i + hd / 2] * s;  // rotate_half pairs (i, i+hd/2)
      hf[b + i + hd / 2] = q[b + i + hd / 2] * c + q[b + i] * s;
      gg[b + 2 * i] = qp[b + 2 * i] * c - qp[b + 2 * i + 1] * s;  // ggml NORM pairs (2i, 2i+1)
      gg[b + 2 * i + 1] = qp[b + 2 * i + 1] * c + qp[b + 2 * i] * s;
    }
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < hd / 2; ++i) {
      EXPECT_NEAR(gg[h * hd + 2 * i], hf[h * hd + i], 1e-9);
      EXPECT_NEAR(gg[h * hd + 2 * i + 1], hf[h * hd + i + hd / 2], 1e-9);
    }
}

// A tokenizer like tok_ but with other reserved pieces (same corpus and vocabulary size).
std::string tokenizer_bytes_with(const fs::path& root, const std::string& name,
                                 std::vector<std::string> user_defined) {
  TokenizerTrainOptions o;
  o.input_files = {(root / "corpus.txt").string()};
  o.model_prefix = (root / name).string();
  o.vocab_size = 700;
  o.user_defined_symbols = std::move(user_defined);
  train_tokenizer(o);
  return read_file(root / (name + ".model"));
}

TEST_F(GgufExportTest, ChatTemplateAndEndOfTurnFollowTheCheckpointsFormat) {
  // A new checkpoint: ChatML, <|im_end|> as end of turn, </s> stays eos.
  const fs::path chatml = make_checkpoint("chat_chatml", TinyModel{});
  run(chatml, GgufDtype::kF32, "chat_chatml.gguf");
  GgufFile c = GgufFile::open((root_ / "chat_chatml.gguf").string());
  EXPECT_EQ(c.get_string("tokenizer.chat_template"), ChatTemplate::jinja(ChatFormat::kChatML));
  EXPECT_EQ(c.get_u32("tokenizer.ggml.eot_token_id"), uint32_t(tok_->piece_to_id("<|im_end|>")));
  EXPECT_EQ(c.get_u32("tokenizer.ggml.eos_token_id"), 3u);
  // A legacy checkpoint keeps its template and <|end|>.
  const fs::path legacy = make_checkpoint("chat_legacy", TinyModel{});
  write_file_atomic(legacy / "tokenizer.model",
                    tokenizer_bytes_with(root_, "legacy_tok",
                                         {"<|system|>", "<|user|>", "<|assistant|>", "<|end|>"}));
  run(legacy, GgufDtype::kF32, "chat_legacy.gguf");
  GgufFile l = GgufFile::open((root_ / "chat_legacy.gguf").string());
  EXPECT_EQ(l.get_string("tokenizer.chat_template"), ChatTemplate::jinja(ChatFormat::kLegacy));
  EXPECT_EQ(l.get_u32("tokenizer.ggml.eot_token_id"), 7u);
  // A template ktl does not render goes to llama.cpp as it is (it renders Jinja itself), with
  // no end-of-turn id ktl could vouch for.
  const fs::path edited = make_checkpoint("chat_edited", TinyModel{});
  const std::string odd = "{% for m in messages %}{{ m['content'] }}{% endfor %}";
  write_file_atomic(edited / "tokenizer_config.json",
                    nlohmann::json{{"chat_template", odd}}.dump());
  run(edited, GgufDtype::kF32, "chat_edited.gguf");
  GgufFile e = GgufFile::open((root_ / "chat_edited.gguf").string());
  EXPECT_EQ(e.get_string("tokenizer.chat_template"), odd);
  EXPECT_EQ(e.find("tokenizer.ggml.eot_token_id"), nullptr);
  // A base model without markers: no template at all.
  const fs::path base = make_checkpoint("chat_base", TinyModel{});
  write_file_atomic(base / "tokenizer.model", tokenizer_bytes_with(root_, "plain_tok", {}));
  run(base, GgufDtype::kF32, "chat_base.gguf");
  GgufFile b = GgufFile::open((root_ / "chat_base.gguf").string());
  EXPECT_EQ(b.find("tokenizer.chat_template"), nullptr);
  EXPECT_EQ(b.find("tokenizer.ggml.eot_token_id"), nullptr);
}

TEST_F(GgufExportTest, OllamaExportWritesTheGgufAndItsModelfile) {
  const fs::path dir = make_checkpoint("ollama", TinyModel{});
  OllamaExportOptions o;
  o.gguf.model_dir = dir.string();
  o.gguf.dtype = GgufDtype::kQ8_0;
  o.out_dir = (root_ / "ollama_out").string();
  o.system = "너는 친절한 도우미야.";
  const auto s = export_ollama(o);
  EXPECT_EQ(s.format, ChatFormat::kChatML);
  EXPECT_EQ(s.gguf_path, (root_ / "ollama_out/model.gguf").string());
  GgufFile g = GgufFile::open(s.gguf_path);
  EXPECT_EQ(g.get_u32("general.file_type"), 7u);
  EXPECT_EQ(g.get_string("tokenizer.chat_template"), ChatTemplate::jinja(ChatFormat::kChatML));
  EXPECT_EQ(read_file(s.modelfile_path),
            ollama_modelfile(ChatFormat::kChatML, "model.gguf", o.system, TinyModel{}.ctx));
  // A base model has no format for a TEMPLATE; a system prompt a Modelfile cannot quote, or
  // with a marker in it, is refused before anything is written.
  const fs::path base = make_checkpoint("ollama_base", TinyModel{});
  write_file_atomic(base / "tokenizer.model", tokenizer_bytes_with(root_, "plain_tok2", {}));
  o.gguf.model_dir = base.string();
  o.out_dir = (root_ / "ollama_base_out").string();
  try {
    export_ollama(o);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no chat format"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(root_ / "ollama_base_out"));
  o.gguf.model_dir = dir.string();
  for (const char* bad : {"a \"\"\" b", "<|im_end|>"}) {
    o.system = bad;
    o.out_dir = (root_ / "ollama_bad_out").string();
    EXPECT_THROW(export_ollama(o), std::invalid_argument) << bad;
    EXPECT_FALSE(fs::exists(root_ / "ollama_bad_out"));
  }
}

TEST_F(GgufExportTest, OllamaExportWithAnAdapterWritesItsGgufAndAnAdapterLine) {
  const fs::path dir = make_checkpoint("ollama_lora", TinyModel{});
  LoraConfig lc;
  lc.rank = 4;
  testing::write_lora_adapter(root_ / "ollama_lora_adapter", lc, testing::LoraBaseShape{});
  OllamaExportOptions o;
  o.gguf.model_dir = dir.string();
  o.gguf.dtype = GgufDtype::kQ8_0;
  o.out_dir = (root_ / "ollama_lora_out").string();
  o.adapter_dir = (root_ / "ollama_lora_adapter").string();
  const auto s = export_ollama(o);
  EXPECT_EQ(s.adapter_path, (root_ / "ollama_lora_out/adapter.gguf").string());
  const std::string mf = read_file(s.modelfile_path);
  EXPECT_EQ(mf, ollama_modelfile(ChatFormat::kChatML, "model.gguf", "", TinyModel{}.ctx,
                                 "adapter.gguf"));
  EXPECT_NE(mf.find("FROM ./model.gguf\nADAPTER ./adapter.gguf\n"), std::string::npos) << mf;
  GgufFile a = GgufFile::open(s.adapter_path);
  EXPECT_EQ(a.get_string("general.type"), "adapter");
  EXPECT_EQ(a.tensors().front().type, GgmlType::kF16);  // a quantized base gets an f16 adapter
  // An adapter for another base fails before the base GGUF is written.
  testing::LoraBaseShape wide;
  wide.hidden = 128;
  testing::write_lora_adapter(root_ / "ollama_wide_adapter", lc, wide);
  o.adapter_dir = (root_ / "ollama_wide_adapter").string();
  o.out_dir = (root_ / "ollama_wide_out").string();
  EXPECT_THROW(export_ollama(o), std::runtime_error);
  EXPECT_FALSE(fs::exists(root_ / "ollama_wide_out/model.gguf"));
}

TEST_F(GgufExportTest, CliExportsAndRejectsBadFlags) {
  const char* bin = std::getenv("KTL_BIN");
  if (!bin || !fs::exists(bin)) GTEST_SKIP() << "build/ktl not built (KTL_BIN unset or missing)";
  const fs::path dir = make_checkpoint("cli", TinyModel{});
  const std::string out = (root_ / "cli.gguf").string();
  auto sh = [](const std::string& cmd) {
    int rc = std::system((cmd + " >/dev/null 2>&1").c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  };
  const std::string base = std::string(bin) + " export --model " + dir.string();
  EXPECT_EQ(sh(base + " --format gguf --out " + out + " --dtype q8_0"), 0);
  GgufFile f = GgufFile::open(out);
  EXPECT_EQ(f.get_u32("general.file_type"), 7u);
  EXPECT_EQ(sh(base + " --format gguf --out " + out + " --dtype q4"), 2);
  EXPECT_EQ(sh(base + " --format gguf --out " + out + " --system hi"), 2);
  // --format ollama: a directory with model.gguf and the Modelfile.
  const fs::path od = root_ / "cli_ollama";
  EXPECT_EQ(sh(base + " --format ollama --out " + od.string() + " --system '짧게 답해.'"), 0);
  EXPECT_TRUE(fs::exists(od / "model.gguf"));
  EXPECT_EQ(read_file(od / "Modelfile"),
            ollama_modelfile(ChatFormat::kChatML, "model.gguf", "짧게 답해.", TinyModel{}.ctx));
  EXPECT_EQ(sh(base + " --format ollama"), 2);  // no --out
  EXPECT_EQ(sh(base + " --format ollama --out " + od.string() + " --quantize int8"), 2);
  EXPECT_EQ(sh(std::string(bin) + " export --model " + (root_ / "none").string() +
               " --format gguf --out " + out),
            1);
}

bool same_value(const GgufValue& a, const GgufValue& b) {
  if (a.type != b.type || a.elem_type != b.elem_type || a.u != b.u || a.i != b.i || a.f != b.f ||
      a.s != b.s || a.arr.size() != b.arr.size())
    return false;
  for (size_t i = 0; i < a.arr.size(); ++i)
    if (!same_value(a.arr[i], b.arr[i])) return false;
  return true;
}

// Speculative decoding in llama.cpp (llama-speculative, -md) accepts a draft only when its
// vocabulary matches the target's: the same tokenizer type, size, special ids and token texts.
// A draft distilled by ktl (the teacher's tokenizer.model) exports every tokenizer.* key equal,
// whatever its shape and dtype.
TEST_F(GgufExportTest, ADraftAndItsTargetExportIdenticalVocabularies) {
  TinyModel draft;
  draft.hidden = 32;
  draft.layers = 1;
  draft.heads = 2;
  draft.kv_heads = 1;
  draft.ffn = 64;
  run(make_checkpoint("spec_target", TinyModel{}), GgufDtype::kF32, "spec_target.gguf");
  run(make_checkpoint("spec_draft", draft), GgufDtype::kQ8_0, "spec_draft.gguf");
  GgufFile t = GgufFile::open((root_ / "spec_target.gguf").string());
  GgufFile d = GgufFile::open((root_ / "spec_draft.gguf").string());
  int keys = 0;
  for (const auto& [key, value] : t.metadata()) {
    if (key.rfind("tokenizer.", 0) != 0) continue;
    ++keys;
    const GgufValue* other = d.find(key);
    ASSERT_NE(other, nullptr) << key;
    EXPECT_TRUE(same_value(value, *other)) << key;
  }
  for (const auto& [key, value] : d.metadata())
    if (key.rfind("tokenizer.", 0) == 0) EXPECT_NE(t.find(key), nullptr) << key;
  EXPECT_GE(keys, 6);  // model, tokens, scores, token_type, bos, eos at least
  EXPECT_EQ(t.get_u32("llama.vocab_size"), d.get_u32("llama.vocab_size"));
  EXPECT_NE(t.get_u32("llama.block_count"), d.get_u32("llama.block_count"));
}

}  // namespace
}  // namespace ktl
