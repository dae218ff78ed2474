#include "core/engine/packed_linear.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <stdexcept>

#include "core/base/simd_clones.h"
#include "core/engine/kernel_threads.h"
#include "core/engine/step_profile.h"
#include "core/engine/tensor_gemv.h"
#include "core/kernels/int8_gemm.h"

namespace ktl {

namespace {

// Selects the quantized engine once: oneDNN on x86, QNNPACK on ARM. False when neither exists.
bool init_quantized_engine() {
  static bool ok = [] {
    const auto& engines = at::globalContext().supportedQEngines();
    std::vector<at::QEngine> order = {at::QEngine::ONEDNN, at::QEngine::QNNPACK,
                                      at::QEngine::FBGEMM};
    if (const char* env = std::getenv("KTL_QENGINE")) {  // onednn | qnnpack (measuring)
      if (std::string(env) == "qnnpack") order.insert(order.begin(), at::QEngine::QNNPACK);
    }
    for (auto want : order) {
      if (std::find(engines.begin(), engines.end(), want) != engines.end()) {
        at::globalContext().setQEngine(want);
        return true;
      }
    }
    return false;
  }();
  return ok;
}

c10::intrusive_ptr<LinearPackedParamsBase> prepack(const torch::Tensor& q,
                                                   const torch::Tensor& scales) {
  if (!init_quantized_engine()) return {};
  try {
    auto zp = torch::zeros({q.size(0)}, torch::kLong);
    auto wq = at::_make_per_channel_quantized_tensor(q, scales.to(torch::kDouble), zp, 0);
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("quantized::linear_prepack", "")
                         .typed<c10::intrusive_ptr<LinearPackedParamsBase>(
                             at::Tensor, c10::optional<at::Tensor>)>();
    return op.call(wq, c10::nullopt);
  } catch (const std::exception&) {
    return {};  // engine without per-channel support: dequantize path
  }
}

// Weight-only int8 GEMV for decode-sized batches: y[n, o] = scale[o] * sum_i q[o, i] * x[n, i].
// Streams the int8 weights once for all rows (a quarter of fp32's bytes); 16 independent lanes
// let the compiler vectorise the int8->float multiply-add without reassociating a reduction.
// Compiled for AVX-512/AVX2 and picked at run time (capped by --kernels), so the binary stays
// portable.
KTL_SIMD_BODY float int8_dot_body(const int8_t* q, const float* x, int64_t in) {
  constexpr int kLanes = 16;
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= in; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += static_cast<float>(q[i + j]) * x[i + j];
  float total = 0;
  for (int j = 0; j < kLanes; ++j) total += acc[j];
  for (; i < in; ++i) total += static_cast<float>(q[i]) * x[i];
  return total;
}

// Several rows: each 16-weight chunk is converted once and reused by every row.
KTL_SIMD_BODY void int8_rows_dot_body(const int8_t* q, const float* x, int64_t n_rows, int64_t in,
                                      float* acc_out) {
  constexpr int kLanes = 16, kMaxRows = 8;
  float acc[kMaxRows][kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= in; i += kLanes) {
    float wf[kLanes];  // converted once, used by every row
    for (int j = 0; j < kLanes; ++j) wf[j] = static_cast<float>(q[i + j]);
    for (int64_t n = 0; n < n_rows; ++n)
      for (int j = 0; j < kLanes; ++j) acc[n][j] += wf[j] * x[n * in + i + j];
  }
  for (int64_t n = 0; n < n_rows; ++n) {
    float total = 0;
    for (int j = 0; j < kLanes; ++j) total += acc[n][j];
    for (int64_t k = i; k < in; ++k) total += static_cast<float>(q[k]) * x[n * in + k];
    acc_out[n] = total;
  }
}

KTL_SIMD_DISPATCH(float, int8_dot, (const int8_t* q, const float* x, int64_t in), (q, x, in))
KTL_SIMD_DISPATCH(void, int8_rows_dot,
                  (const int8_t* q, const float* x, int64_t n_rows, int64_t in, float* acc_out),
                  (q, x, n_rows, in, acc_out))

constexpr int64_t kGemvMaxRows = 8;  // above this, a GEMM wins

torch::Tensor int8_gemv(const torch::Tensor& q,       // [out, in] int8
                        const torch::Tensor& scales,  // [out] fp32
                        const torch::Tensor& x) {     // [N, in] fp32
  const int64_t N = x.size(0), in = q.size(1), out = q.size(0);
  auto xc = x.to(torch::kFloat32).contiguous();
  auto y = torch::empty({out, N}, xc.options());  // [out, N], transposed at the end
  const int8_t* qp = q.data_ptr<int8_t>();
  const float* xp = xc.data_ptr<float>();
  const float* sp = scales.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, out, parallel_grain(N * in, 64), [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      if (N == 1)
        yp[o] = int8_dot(qp + o * in, xp, in);
      else
        int8_rows_dot(qp + o * in, xp, N, in, yp + o * N);
      for (int64_t n = 0; n < N; ++n) yp[o * N + n] *= sp[o];
    }
  });
  return y.t().contiguous();  // [N, out]
}

// Prefill-sized int8 batches: dequantize kDequantRows output rows at a time into a small fp32
// tile (stays in cache) and run BLAS on it, so no full-size fp32 copy ever exists.
constexpr int64_t kDequantRows = 256;

torch::Tensor int8_tiled_matmul(const torch::Tensor& q,       // [out, in] int8
                                const torch::Tensor& scales,  // [out] fp32
                                const torch::Tensor& x) {     // [N, in] fp32
  const int64_t out = q.size(0);
  auto xc = x.to(torch::kFloat32).contiguous();
  auto y = torch::empty({xc.size(0), out}, xc.options());  // [N, out]
  for (int64_t o = 0; o < out; o += kDequantRows) {
    const int64_t rows = std::min(kDequantRows, out - o);
    auto tile = q.narrow(0, o, rows).to(torch::kFloat32) * scales.narrow(0, o, rows).unsqueeze(1);
    y.narrow(1, o, rows).copy_(at::linear(xc, tile));  // [N, rows]
  }
  return y;
}

// How int8 layers run batches above the int8 kernels' row limit (prefill): KTL_INT8_PREFILL=
//   gemm: the int8 x int8 kernels for every row count (no packed copy); the default where the
//     packed prefill kernel runs (AVX-512 VNNI), where it prefilled as fast as oneDNN;
//   onednn: the quantized engine (oneDNN: VNNI int8 GEMM, keeps a packed copy); the default
//     elsewhere: on model_small it prefilled 2.5-3x faster than the tiled path;
//   tiled: dequantize 256 output rows at a time and run BLAS (no packed copy).
enum class Int8Prefill { kQuantizedEngine, kTiled, kInt8Gemm };
Int8Prefill int8_prefill_mode() {
  static const Int8Prefill mode = [] {
    const char* v = std::getenv("KTL_INT8_PREFILL");
    const std::string s = v ? v : "";
    if (s == "tiled") return Int8Prefill::kTiled;
    if (s == "gemm") return Int8Prefill::kInt8Gemm;
    if (s == "onednn") return Int8Prefill::kQuantizedEngine;
    // Default: on AVX-512 VNNI the packed prefill kernel matches oneDNN (measured) with no
    // packed copy. On AVX2 (int8_packed_avx2.h) too, for the one copy: a 512-token prefill of
    // model_small at 696-743 tok/s vs oneDNN's AVX2 path 931-1004, peak RSS 408 vs 628 MB
    // (--kernels avx2 on an AMD EPYC Zen 4, quiet); KTL_INT8_PREFILL=onednn trades back.
    // Elsewhere the quantized engine keeps its copy: the AVX-VNNI packed kernel ran at ~42 % of
    // the AVX-512 one here, and no AVX-VNNI-only CPU was at hand to compare it with oneDNN
    // there (KTL_INT8_PREFILL=gemm runs it).
    const Int8Kernels best = best_int8_kernels();
    return best == Int8Kernels::kAvx512Vnni || best == Int8Kernels::kAvx2
               ? Int8Prefill::kInt8Gemm
               : Int8Prefill::kQuantizedEngine;
  }();
  return mode;
}
bool use_quantized_engine_prefill() {
  return int8_prefill_mode() == Int8Prefill::kQuantizedEngine;
}

// The engine keeps its own int8 copy of the weight (oneDNN: `orig_weight`, besides the packed
// one). Returns an int8 view of that copy when it holds q's values, so q itself can go.
torch::Tensor share_unpacked_int8(LinearPackedParamsBase& packed, const torch::Tensor& q) {
  torch::Tensor orig = std::get<0>(packed.unpack());
  if (!orig.is_quantized() || orig.scalar_type() != torch::kQInt8 || orig.sizes() != q.sizes() ||
      !orig.is_contiguous()) {
    return q;
  }
  auto view = torch::from_blob(
      orig.data_ptr(), q.sizes(), [orig](void*) {}, torch::TensorOptions().dtype(torch::kInt8));
  return torch::equal(view, q) ? view : q;
}

std::atomic<Int8Activations>& decode_activations() {
  static std::atomic<Int8Activations> a{[] {
    const char* v = std::getenv("KTL_INT8_ACTIVATIONS");  // fp32: the weight-only path
    return v && std::string(v) == "fp32" ? Int8Activations::kFp32 : Int8Activations::kInt8;
  }()};
  return a;
}

// Row limit of the int8 kernels (above: the quantized engine); KTL_INT8_GEMM_MAX_ROWS to measure.
int64_t int8_gemm_max_rows() {
  static const int64_t rows = [] {
    const char* v = std::getenv("KTL_INT8_GEMM_MAX_ROWS");
    return v ? std::max<int64_t>(1, std::atoll(v)) : kInt8GemmMaxRows;
  }();
  return rows;
}

}  // namespace

bool int8_prefill_keeps_engine_copy() {
  return use_quantized_engine_prefill();
}

const char* int8_prefill_path() {
  switch (int8_prefill_mode()) {
    case Int8Prefill::kInt8Gemm:
      return int8_packed_supported(Int8Kernels::kBest) ? "int8 kernels, packed blocks (no copy)"
                                                       : "int8 kernels, row tiles (no copy)";
    case Int8Prefill::kQuantizedEngine:
      return "quantized engine (oneDNN/QNNPACK, keeps a packed copy)";
    case Int8Prefill::kTiled:
      return "dequantized tiles + BLAS (no copy)";
  }
  return "?";
}

void set_int8_decode_activations(Int8Activations a) {
  decode_activations().store(a);
}
Int8Activations int8_decode_activations() {
  return decode_activations().load();
}

WeightDtype parse_weight_dtype(const std::string& s) {
  if (s == "fp32" || s == "float32") return WeightDtype::kFp32;
  if (s == "bf16" || s == "bfloat16") return WeightDtype::kBf16;
  if (s == "int8") return WeightDtype::kInt8;
  throw std::invalid_argument("unknown dtype '" + s + "' (expected fp32, bf16 or int8)");
}

const char* to_string(WeightDtype d) {
  switch (d) {
    case WeightDtype::kFp32:
      return "fp32";
    case WeightDtype::kBf16:
      return "bf16";
    case WeightDtype::kInt8:
      return "int8";
  }
  return "?";
}

std::pair<torch::Tensor, torch::Tensor> quantize_int8_per_channel(const torch::Tensor& w) {
  // Each row is quantized on its own, so a block of kQuantizeRows rows at a time gives the same
  // bits with an fp32 temporary of one block, not of the whole weight (the embedding is 24.6 MB
  // in fp32 on model_small with the 8k vocabulary; peak RSS of an fp32 -> int8 load fell by
  // that much).
  constexpr int64_t kQuantizeRows = 256;
  const int64_t out = w.size(0);
  auto q = torch::empty(w.sizes(), torch::kInt8);      // [out, in]
  auto scales = torch::empty({out}, torch::kFloat32);  // [out]
  for (int64_t o = 0; o < out; o += kQuantizeRows) {
    const int64_t rows = std::min(kQuantizeRows, out - o);
    auto wf = w.narrow(0, o, rows).to(torch::kFloat32);  // [rows, in]; a view when fp32
    auto s = (torch::maximum(wf.amax(1), -wf.amin(1)) / 127.0).clamp_min(1e-12);  // [rows]
    auto t = wf / s.unsqueeze(1);                                                 // [rows, in]
    t.round_().clamp_(-127, 127);
    q.narrow(0, o, rows).copy_(t);
    scales.narrow(0, o, rows).copy_(s);
  }
  return {q, scales};
}

PackedLinear PackedLinear::from_float(const torch::Tensor& w, WeightDtype dtype) {
  if (dtype == WeightDtype::kInt8) {
    auto [q, s] = quantize_int8_per_channel(w);
    return from_int8(q, s);
  }
  PackedLinear l;
  l.dtype_ = dtype;
  l.out_ = w.size(0);
  l.in_ = w.size(1);
  l.w_ =
      w.detach().to(dtype == WeightDtype::kBf16 ? torch::kBFloat16 : torch::kFloat32).contiguous();
  return l;
}

PackedLinear PackedLinear::from_int8(const torch::Tensor& q, const torch::Tensor& scales) {
  if (q.dim() != 2 || q.scalar_type() != torch::kInt8 || scales.numel() != q.size(0)) {
    throw std::invalid_argument("PackedLinear::from_int8: need int8 [out, in] and [out] scales");
  }
  PackedLinear l;
  l.dtype_ = WeightDtype::kInt8;
  l.out_ = q.size(0);
  l.in_ = q.size(1);
  l.scales_ = scales.to(torch::kFloat32).contiguous();
  l.q_ = q.contiguous();  // the GEMV (and the tiled matmul) read it
  if (use_quantized_engine_prefill()) l.packed_ = prepack(l.q_, l.scales_);
  if (l.packed_) l.q_ = share_unpacked_int8(*l.packed_, l.q_);
  auto sums = int8_row_sums(l.q_.data_ptr<int8_t>(), l.out_, l.in_);
  l.wsum_ = torch::tensor(std::vector<int32_t>(sums.begin(), sums.end()), torch::kInt32);
  return l;
}

torch::Tensor PackedLinear::dequantized() const {
  if (dtype_ != WeightDtype::kInt8) return w_.to(torch::kFloat32);
  return q_.to(torch::kFloat32) * scales_.unsqueeze(1);
}

std::pair<torch::Tensor, torch::Tensor> PackedLinear::int8_parts() const {
  if (dtype_ != WeightDtype::kInt8) return quantize_int8_per_channel(w_);
  return {q_, scales_};
}

PackedLinear PackedLinear::to_device(torch::Device device) const {
  PackedLinear l;
  l.torch_ops_ = true;
  l.out_ = out_;
  l.in_ = in_;
  if (dtype_ == WeightDtype::kInt8) {
    l.dtype_ = WeightDtype::kBf16;
    auto q = q_.to(device).to(torch::kFloat32);                         // [out, in]
    l.w_ = (q * scales_.to(device).unsqueeze(1)).to(torch::kBFloat16);  // [out, in]
  } else {
    l.dtype_ = dtype_;
    l.w_ = w_.to(device).contiguous();  // no copy when already there
  }
  return l;
}

torch::Tensor PackedLinear::forward_torch(const torch::Tensor& x) const {
  if (!w_.defined()) throw std::logic_error("forward_torch: int8 weights (call to_device first)");
  return at::linear(x.to(w_.scalar_type()), w_).to(torch::kFloat32);
}

torch::Tensor PackedLinear::forward(const torch::Tensor& x) const {
  const StepTimer timer(StepPart::kMatmuls);  // ktl bench --profile
  if (torch_ops_) return forward_torch(x);
  // No rows (a step where no sequence samples: the output head gets none): the GEMV kernels
  // take 1..N rows, so answer here for every dtype.
  if (x.size(0) == 0) return torch::empty({0, out_}, torch::kFloat32);
  switch (dtype_) {
    case WeightDtype::kFp32:
      // Up to 16 rows: our GEMV (BLAS gemm repacks the whole weight every call), one row
      // included: OpenBLAS's sgemv read model_small's weights at 26 GB/s in a decode step, where
      // ours, on the engine's OpenMP threads, reads them at ~59 (AMD EPYC Zen 4, 2 threads,
      // huge pages). Above: BLAS gemm.
      if (x.size(0) <= kFp32GemvMaxRows) return fp32_gemv(w_, x);
      return at::linear(x, w_);
    case WeightDtype::kBf16:
      if (x.size(0) <= kBf16GemvMaxRows) return bf16_gemv(w_, x);
      return at::linear(x.to(torch::kBFloat16), w_).to(torch::kFloat32);
    case WeightDtype::kInt8:
      if (x.size(0) <= int8_gemm_max_rows() || int8_prefill_mode() == Int8Prefill::kInt8Gemm) {
        return int8_decode_activations() == Int8Activations::kInt8 ? forward_int8_gemm(x)
                                                                   : forward_weight_only(x);
      }
      if (packed_) {
        return const_cast<LinearPackedParamsBase&>(*packed_).apply_dynamic(x.contiguous(), false);
      }
      return int8_tiled_matmul(q_, scales_, x);
  }
  return {};
}

torch::Tensor PackedLinear::forward_int8_gemm(const torch::Tensor& x, Int8Kernels k) const {
  if (dtype_ != WeightDtype::kInt8) throw std::logic_error("forward_int8_gemm: not int8");
  auto xc = x.to(torch::kFloat32).contiguous();             // [N, in]
  auto y = torch::empty({xc.size(0), out_}, xc.options());  // [N, out]
  install_kernel_parallel_for();
  const int64_t n = xc.size(0);
  Int8Rows xq;
  {  // the activations' quantization, timed apart from the matmul under ktl bench --profile
    const StepTimer timer(StepPart::kQuantization);
    xq = quantize_rows_int8(xc.data_ptr<float>(), n, in_, int8_gemm_needs_signed(k, n));
  }
  int8_gemm_quantized(q_.data_ptr<int8_t>(), scales_.data_ptr<float>(), wsum_.data_ptr<int32_t>(),
                      out_, in_, xq, y.data_ptr<float>(), k);
  return y;
}

torch::Tensor PackedLinear::forward_weight_only(const torch::Tensor& x) const {
  if (dtype_ != WeightDtype::kInt8) throw std::logic_error("forward_weight_only: not int8");
  if (x.size(0) <= kGemvMaxRows) return int8_gemv(q_, scales_, x);
  if (packed_) {
    return const_cast<LinearPackedParamsBase&>(*packed_).apply_dynamic(x.contiguous(), false);
  }
  return int8_tiled_matmul(q_, scales_, x);
}

torch::Tensor PackedLinear::forward_int8_tiled(const torch::Tensor& x) const {
  if (dtype_ != WeightDtype::kInt8) throw std::logic_error("forward_int8_tiled: not int8");
  return int8_tiled_matmul(q_, scales_, x);
}

torch::Tensor PackedLinear::forward_reference(const torch::Tensor& x) const {
  return at::linear(x.to(torch::kFloat32), dequantized());
}

std::vector<torch::Tensor> PackedLinear::tensors() const {
  std::vector<torch::Tensor> out;
  for (const auto* t : {&w_, &q_, &scales_, &wsum_})
    if (t->defined()) out.push_back(*t);
  return out;
}

int64_t PackedLinear::weight_bytes() const {
  switch (dtype_) {
    case WeightDtype::kFp32:
      return in_ * out_ * 4;
    case WeightDtype::kBf16:
      return in_ * out_ * 2;
    case WeightDtype::kInt8:
      return in_ * out_ + out_ * 8;  // + scales and row sums
  }
  return 0;
}

int64_t PackedLinear::packed_bytes() const {
  return packed_ ? in_ * out_ : 0;
}

}  // namespace ktl
