// A bias-free linear layer's weight in the format the engine runs: fp32, bf16, or int8
// weight-only with one scale per output channel (w ~= q * scale[out], q in [-127, 127]).
//
// int8: up to 8 rows (decode) run a weight-only int8 GEMV (fp32 activations, weights streamed
// once as int8); larger batches (prefill) go through the quantized engine's dynamic linear
// (oneDNN on x86, QNNPACK on ARM), or, where that is unavailable, dequantize + fp32 matmul,
// which is also the naive twin the tests compare against.
//
// Thread-safety: immutable after construction; forward() is safe from any thread.
#pragma once

#include <ATen/native/quantized/PackedParams.h>
#include <torch/types.h>

#include <string>

namespace ktl {

enum class WeightDtype { kFp32, kBf16, kInt8 };
WeightDtype parse_weight_dtype(const std::string& s);  // fp32 | bf16 | int8; throws otherwise
const char* to_string(WeightDtype d);

// Per-output-channel symmetric int8 quantisation of w [out, in]: returns {q int8, scale fp32 [out]}.
std::pair<torch::Tensor, torch::Tensor> quantize_int8_per_channel(const torch::Tensor& w);

class PackedLinear {
 public:
  PackedLinear() = default;
  static PackedLinear from_float(const torch::Tensor& w, WeightDtype dtype);  // w [out, in]
  static PackedLinear from_int8(const torch::Tensor& q,        // [out, in] int8
                                const torch::Tensor& scales);  // [out] fp32

  torch::Tensor forward(const torch::Tensor& x) const;            // [N, in] f32 -> [N, out] f32
  torch::Tensor forward_reference(const torch::Tensor& x) const;  // dequantize + fp32 matmul
  torch::Tensor dequantized() const;                              // [out, in] fp32
  // int8 form (quantising fp32/bf16 weights on the fly): {q [out, in], scales [out]}.
  std::pair<torch::Tensor, torch::Tensor> int8_parts() const;

  WeightDtype dtype() const { return dtype_; }
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  int64_t weight_bytes() const;
  bool uses_quantized_engine() const { return static_cast<bool>(packed_); }

 private:
  WeightDtype dtype_ = WeightDtype::kFp32;
  int64_t in_ = 0, out_ = 0;
  torch::Tensor w_;                 // fp32 or bf16 [out, in]
  torch::Tensor q_, scales_;        // int8 [out, in], fp32 [out] (q_ kept for the GEMV)
  c10::intrusive_ptr<LinearPackedParamsBase> packed_;
};

}  // namespace ktl
