// A bias-free linear layer's weight in the format the engine runs: fp32, bf16, or int8
// weight-only with one scale per output channel (w ~= q * scale[out], q in [-127, 127]).
//
// int8: activations are quantized per row and multiplied in integers (int8_gemm.h: VNNI / AVX2 /
// NEON / scalar; weights streamed once as int8 for all rows). Decode-sized batches (up to
// kInt8GemmMaxRows rows) always run there; prefill-sized ones too on AVX-512 VNNI (the packed
// prefill kernel is as fast as oneDNN) and AVX2 (~25 % slower than oneDNN's AVX2 path, for 220
// MB less on model_small), so one int8 copy of the weight is all there is.
// Elsewhere prefill goes through the quantized engine's dynamic linear (oneDNN on x86, QNNPACK on
// ARM), which keeps a packed int8 copy (the int8 kernels read the engine's unpacked copy: two int8
// copies, not three). KTL_INT8_PREFILL=onednn | gemm | tiled overrides that (tiled: dequantize 256
// output rows at a time into a small fp32 tile and run BLAS; docs/inference-guide.md, Memory).
// Dequantize + fp32 matmul of the whole weight is the naive twin the tests compare against.
//
// The torch-ops form (to_device + forward_torch) is what the engine runs off the CPU, and on the
// CPU as the twin of the kernels above: fp32/bf16 weights on any LibTorch device, multiplied with
// torch::linear (int8 is dequantized to bf16 on the device: the int8 kernels are CPU code).
//
// Thread-safety: immutable after construction; forward() is safe from any thread.
#pragma once

#include <ATen/native/quantized/PackedParams.h>
#include <torch/types.h>

#include "core/kernels/int8_gemm.h"

#include <string>
#include <vector>

namespace ktl {

enum class WeightDtype { kFp32, kBf16, kInt8 };
WeightDtype parse_weight_dtype(const std::string& s);  // fp32 | bf16 | int8; throws otherwise
const char* to_string(WeightDtype d);

// How int8 layers run decode-sized batches (up to kInt8GemmMaxRows rows): kInt8 quantizes the
// activations per row and multiplies in integers (int8_gemm.h, the default); kFp32 keeps fp32
// activations (weight-only GEMV, the previous path; KTL_INT8_ACTIVATIONS=fp32 at start-up).
// Process-wide, read on every forward (for measuring and the tests that compare the two).
enum class Int8Activations { kInt8, kFp32 };
void set_int8_decode_activations(Int8Activations a);
Int8Activations int8_decode_activations();

// How int8 prefill-sized batches run in this process (KTL_INT8_PREFILL or the CPU's default).
const char* int8_prefill_path();
// Whether int8 layers hand their weight to the quantized engine, which then holds the copy the
// kernels read (from_int8 replaces q with it): the caller's own copy is not kept.
bool int8_prefill_keeps_engine_copy();

// Per-output-channel symmetric int8 quantisation of w [out, in]: returns {q int8, scale fp32
// [out]}.
std::pair<torch::Tensor, torch::Tensor> quantize_int8_per_channel(const torch::Tensor& w);

class PackedLinear {
 public:
  PackedLinear() = default;
  static PackedLinear from_float(const torch::Tensor& w, WeightDtype dtype);  // w [out, in]
  static PackedLinear from_int8(const torch::Tensor& q,                       // [out, in] int8
                                const torch::Tensor& scales);                 // [out] fp32

  torch::Tensor forward(const torch::Tensor& x) const;  // [N, in] f32 -> [N, out] f32, N >= 0
  torch::Tensor forward_reference(const torch::Tensor& x) const;   // dequantize + fp32 matmul
  torch::Tensor forward_int8_tiled(const torch::Tensor& x) const;  // int8 prefill fallback path
  // int8 x int8 (dynamic per-row activation quantization), any row count; the decode path.
  torch::Tensor forward_int8_gemm(const torch::Tensor& x, Int8Kernels k = Int8Kernels::kBest) const;
  // The previous path: int8 weights x fp32 activations (GEMV) up to 8 rows, above that the
  // quantized engine (or the tiled matmul).
  torch::Tensor forward_weight_only(const torch::Tensor& x) const;
  torch::Tensor dequantized() const;  // [out, in] fp32
  // The torch-ops form on `device`: fp32/bf16 weights moved there, int8 ones dequantized to bf16
  // there; no packed copy. Its forward() is forward_torch().
  PackedLinear to_device(torch::Device device) const;
  // at::linear in the weight's dtype on the weight's device, fp32 out (fp32/bf16 weights only).
  torch::Tensor forward_torch(const torch::Tensor& x) const;  // [N, in] -> [N, out]
  bool torch_ops() const { return torch_ops_; }
  // int8 form (quantising fp32/bf16 weights on the fly): {q [out, in], scales [out]}.
  std::pair<torch::Tensor, torch::Tensor> int8_parts() const;

  WeightDtype dtype() const { return dtype_; }
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  int64_t weight_bytes() const;
  int64_t packed_bytes() const;  // the quantized engine's packed copy (int8 [out, in]), or 0
  bool uses_quantized_engine() const { return static_cast<bool>(packed_); }
  const torch::Tensor& weight() const { return w_; }  // fp32/bf16 [out, in]; undefined for int8
  // Every tensor it holds (to count memory by dtype; oneDNN's packed copy is not a tensor).
  std::vector<torch::Tensor> tensors() const;

 private:
  WeightDtype dtype_ = WeightDtype::kFp32;
  bool torch_ops_ = false;  // made by to_device(): forward() is forward_torch()
  int64_t in_ = 0, out_ = 0;
  torch::Tensor w_;           // fp32 or bf16 [out, in]
  torch::Tensor q_, scales_;  // int8 [out, in], fp32 [out] (q_ kept for the GEMV)
  torch::Tensor wsum_;        // int32 [out]: sum of each row of q_ (the u8-shift correction)
  c10::intrusive_ptr<LinearPackedParamsBase> packed_;
};

}  // namespace ktl
