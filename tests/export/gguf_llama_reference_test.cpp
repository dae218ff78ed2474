// End-to-end check of the GGUF export against the real model: a checkpoint saved by
// save_checkpoint() is exported, then run by a plain C++ forward pass that follows llama.cpp's
// math for architecture "llama" (interleaved "NORM" RoPE on the exported, permuted q/k rows,
// GQA, RMSNorm, SwiGLU, tied head from token_embd). Its logits must equal the LibTorch model's.
// This is what makes greedy generation in llama.cpp match `ktl generate`.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "core/export/gguf_export.h"
#include "core/export/gguf_reader.h"
#include "core/model/checkpoint.h"
#include "core/model/model.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/support/korean_fixture.h"

namespace ktl {
namespace {

namespace fs = std::filesystem;

// llama.cpp-style reference: weights with ne = [in, out] are out rows of `in` floats.
class ReferenceLlama {
 public:
  explicit ReferenceLlama(const GgufFile& f) : f_(f) {
    D = f.get_u32("llama.embedding_length");
    L = f.get_u32("llama.block_count");
    H = f.get_u32("llama.attention.head_count");
    KV = f.get_u32("llama.attention.head_count_kv");
    Dh = f.get_u32("llama.rope.dimension_count");
    eps = f.get_f32("llama.attention.layer_norm_rms_epsilon");
    base = f.get_f32("llama.rope.freq_base");
  }

  // Logits [T, V] for a token sequence, one position at a time with a K/V cache.
  std::vector<std::vector<float>> forward(const std::vector<int>& tokens) const {
    const auto emb = w("token_embd.weight");
    const auto* out_t = f_.find_tensor("output.weight");
    const auto head = out_t ? f_.to_f32(*out_t) : emb;
    std::vector<std::vector<std::vector<float>>> kc(L), vc(L);
    std::vector<std::vector<float>> logits;
    for (size_t t = 0; t < tokens.size(); ++t) {
      std::vector<float> x(emb.begin() + tokens[t] * D, emb.begin() + (tokens[t] + 1) * D);
      for (uint32_t l = 0; l < L; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        auto h = rms_norm(x, w(p + "attn_norm.weight"));
        auto q = matvec(w(p + "attn_q.weight"), h), k = matvec(w(p + "attn_k.weight"), h);
        rope(q, t);
        rope(k, t);
        kc[l].push_back(k);
        vc[l].push_back(matvec(w(p + "attn_v.weight"), h));
        auto o = matvec(w(p + "attn_output.weight"), attention(q, kc[l], vc[l]));
        for (uint32_t i = 0; i < D; ++i) x[i] += o[i];
        auto h2 = rms_norm(x, w(p + "ffn_norm.weight"));
        auto g = matvec(w(p + "ffn_gate.weight"), h2), u = matvec(w(p + "ffn_up.weight"), h2);
        for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
        auto d = matvec(w(p + "ffn_down.weight"), g);
        for (uint32_t i = 0; i < D; ++i) x[i] += d[i];
      }
      logits.push_back(matvec(head, rms_norm(x, w("output_norm.weight"))));
    }
    return logits;
  }

 private:
  std::vector<float> w(const std::string& name) const {
    const GgufTensorInfo* t = f_.find_tensor(name);
    if (!t) throw std::runtime_error("missing " + name);
    return f_.to_f32(*t);
  }
  std::vector<float> matvec(const std::vector<float>& m, const std::vector<float>& x) const {
    const size_t in = x.size(), out = m.size() / in;
    std::vector<float> y(out);
    for (size_t r = 0; r < out; ++r) {
      double s = 0;
      for (size_t c = 0; c < in; ++c) s += double(m[r * in + c]) * x[c];
      y[r] = float(s);
    }
    return y;
  }
  std::vector<float> rms_norm(const std::vector<float>& x, const std::vector<float>& g) const {
    double ss = 0;
    for (float v : x) ss += double(v) * v;
    const float scale = float(1.0 / std::sqrt(ss / x.size() + eps));
    std::vector<float> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * scale * g[i];
    return y;
  }
  // ggml_rope, mode NORM: rotates adjacent pairs (2i, 2i+1) by pos * base^(-2i/Dh).
  void rope(std::vector<float>& v, size_t pos) const {
    for (size_t h = 0; h < v.size() / Dh; ++h)
      for (uint32_t i = 0; i < Dh / 2; ++i) {
        const double a = double(pos) * std::pow(double(base), -2.0 * i / Dh);
        float& x0 = v[h * Dh + 2 * i];
        float& x1 = v[h * Dh + 2 * i + 1];
        const float y0 = float(x0 * std::cos(a) - x1 * std::sin(a));
        const float y1 = float(x0 * std::sin(a) + x1 * std::cos(a));
        x0 = y0;
        x1 = y1;
      }
  }
  std::vector<float> attention(const std::vector<float>& q,
                               const std::vector<std::vector<float>>& ks,
                               const std::vector<std::vector<float>>& vs) const {
    std::vector<float> out(H * Dh, 0.f);
    for (uint32_t h = 0; h < H; ++h) {
      const uint32_t g = h / (H / KV);  // the kv head this query head shares
      std::vector<double> s(ks.size());
      double mx = -1e30, sum = 0;
      for (size_t j = 0; j < ks.size(); ++j) {
        double dot = 0;
        for (uint32_t i = 0; i < Dh; ++i) dot += double(q[h * Dh + i]) * ks[j][g * Dh + i];
        s[j] = dot / std::sqrt(double(Dh));
        mx = std::max(mx, s[j]);
      }
      for (auto& v : s) sum += (v = std::exp(v - mx));
      for (size_t j = 0; j < vs.size(); ++j)
        for (uint32_t i = 0; i < Dh; ++i) out[h * Dh + i] += float(s[j] / sum * vs[j][g * Dh + i]);
    }
    return out;
  }

  const GgufFile& f_;
  uint32_t D, L, H, KV, Dh;
  float eps, base;
};

TEST(GgufLlamaReference, ExportedModelGivesTheSameLogitsAsLibTorch) {
  const fs::path root = fs::temp_directory_path() / ("ktl_gguf_ref_" + std::to_string(::getpid()));
  fs::create_directories(root);
  testing::write_lines((root / "corpus.txt").string(), testing::korean_sentences(1500));
  TokenizerTrainOptions o;
  o.input_files = {(root / "corpus.txt").string()};
  o.model_prefix = (root / "tok").string();
  o.vocab_size = 600;
  train_tokenizer(o);
  auto tok = Tokenizer::load((root / "tok.model").string());

  for (bool tied : {true, false}) {
    ModelConfig c;
    c.vocab_size = tok->vocab_size();
    c.hidden_size = 64;
    c.num_layers = 2;
    c.num_heads = 4;
    c.num_kv_heads = 2;
    c.intermediate_size = 96;
    c.max_seq_length = 64;
    c.rope_theta = 500.0;  // a small base makes every rotation frequency matter
    c.tie_word_embeddings = tied;
    Transformer model(c);
    model->init_weights(7);
    {
      torch::NoGradGuard ng;  // non-trivial norms and larger weights than the init
      torch::manual_seed(3);
      for (auto& p : model->parameters()) p.add_(torch::randn_like(p) * 0.1);
    }
    model->eval();
    const std::string dir = (root / (tied ? "tied" : "untied")).string();
    save_checkpoint(dir, *model, tok->model_bytes(), CheckpointMeta{});
    GgufExportOptions eo;
    eo.model_dir = dir;
    eo.out_path = dir + ".gguf";
    export_gguf(eo);
    GgufFile f = GgufFile::open(eo.out_path);
    EXPECT_EQ(f.find_tensor("output.weight") != nullptr, !tied);

    const std::vector<int> ids = tok->encode("오늘 서울에서 친구가 책을 읽었다. 날씨가 좋았다");
    std::vector<int> seq = {tok->bos_id()};
    seq.insert(seq.end(), ids.begin(), ids.end());
    ASSERT_GE(seq.size(), 8u);
    const auto ref = ReferenceLlama(f).forward(seq);

    torch::NoGradGuard ng;
    auto input = torch::tensor(std::vector<int64_t>(seq.begin(), seq.end())).unsqueeze(0);
    auto logits = model->forward(input).squeeze(0).contiguous();  // [T, V]
    ASSERT_EQ(logits.size(0), int64_t(seq.size()));
    double max_diff = 0, max_abs = 0;
    int argmax_mismatch = 0;
    for (size_t t = 0; t < seq.size(); ++t) {
      auto row = logits[t];
      int best = 0;
      for (int v = 0; v < c.vocab_size; ++v) {
        const double a = row[v].item<double>();
        max_diff = std::max(max_diff, std::fabs(a - ref[t][v]));
        max_abs = std::max(max_abs, std::fabs(a));
        if (ref[t][v] > ref[t][best]) best = v;
      }
      argmax_mismatch += best != row.argmax().item<int64_t>();
    }
    EXPECT_GT(max_abs, 0.5) << "logits are not trivially small";
    EXPECT_LT(max_diff, 1e-3 * max_abs) << (tied ? "tied" : "untied");
    EXPECT_EQ(argmax_mismatch, 0);
  }
  fs::remove_all(root);
}

}  // namespace
}  // namespace ktl
