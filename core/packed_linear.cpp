#include "core/packed_linear.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>

#include <cstdlib>
#include <mutex>
#include <stdexcept>

namespace ktl {

namespace {

// Selects the quantized engine once: oneDNN on x86, QNNPACK on ARM. False when neither exists.
bool init_quantized_engine() {
  static bool ok = [] {
    const auto& engines = at::globalContext().supportedQEngines();
    std::vector<at::QEngine> order = {at::QEngine::ONEDNN, at::QEngine::QNNPACK, at::QEngine::FBGEMM};
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
    static auto op =
        c10::Dispatcher::singleton()
            .findSchemaOrThrow("quantized::linear_prepack", "")
            .typed<c10::intrusive_ptr<LinearPackedParamsBase>(at::Tensor, c10::optional<at::Tensor>)>();
    return op.call(wq, c10::nullopt);
  } catch (const std::exception&) {
    return {};  // engine without per-channel support: dequantize path
  }
}

}  // namespace

WeightDtype parse_weight_dtype(const std::string& s) {
  if (s == "fp32" || s == "float32") return WeightDtype::kFp32;
  if (s == "bf16" || s == "bfloat16") return WeightDtype::kBf16;
  if (s == "int8") return WeightDtype::kInt8;
  throw std::invalid_argument("unknown dtype '" + s + "' (expected fp32, bf16 or int8)");
}

const char* to_string(WeightDtype d) {
  switch (d) {
    case WeightDtype::kFp32: return "fp32";
    case WeightDtype::kBf16: return "bf16";
    case WeightDtype::kInt8: return "int8";
  }
  return "?";
}

std::pair<torch::Tensor, torch::Tensor> quantize_int8_per_channel(const torch::Tensor& w) {
  auto wf = w.to(torch::kFloat32);
  auto scales = (wf.abs().amax(1) / 127.0).clamp_min(1e-12);                      // [out]
  auto q = (wf / scales.unsqueeze(1)).round().clamp(-127, 127).to(torch::kInt8);  // [out, in]
  return {q.contiguous(), scales.contiguous()};
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
  l.w_ = w.detach().to(dtype == WeightDtype::kBf16 ? torch::kBFloat16 : torch::kFloat32).contiguous();
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
  l.packed_ = prepack(q.contiguous(), l.scales_);
  // The packed copy is all the fast path needs; keep q only for the fallback.
  if (!l.packed_) l.q_ = q.contiguous();
  return l;
}

torch::Tensor PackedLinear::dequantized() const {
  if (dtype_ != WeightDtype::kInt8) return w_.to(torch::kFloat32);
  if (q_.defined()) return q_.to(torch::kFloat32) * scales_.unsqueeze(1);
  auto [wq, bias] = const_cast<LinearPackedParamsBase&>(*packed_).unpack();
  return wq.dequantize();
}

std::pair<torch::Tensor, torch::Tensor> PackedLinear::int8_parts() const {
  if (dtype_ != WeightDtype::kInt8) return quantize_int8_per_channel(w_);
  if (q_.defined()) return {q_, scales_};
  auto [wq, bias] = const_cast<LinearPackedParamsBase&>(*packed_).unpack();
  return {wq.int_repr().contiguous(), scales_};
}

torch::Tensor PackedLinear::forward(const torch::Tensor& x) const {
  switch (dtype_) {
    case WeightDtype::kFp32:
      // One row: gemv streams the weights at memory bandwidth; BLAS gemm is slower there.
      return x.size(0) == 1 ? at::mv(w_, x[0]).unsqueeze(0) : at::linear(x, w_);
    case WeightDtype::kBf16:
      return at::linear(x.to(torch::kBFloat16), w_).to(torch::kFloat32);
    case WeightDtype::kInt8:
      if (packed_) {
        return const_cast<LinearPackedParamsBase&>(*packed_).apply_dynamic(x.contiguous(), false);
      }
      return forward_reference(x);
  }
  return {};
}

torch::Tensor PackedLinear::forward_reference(const torch::Tensor& x) const {
  return at::linear(x.to(torch::kFloat32), dequantized());
}

int64_t PackedLinear::weight_bytes() const {
  switch (dtype_) {
    case WeightDtype::kFp32: return in_ * out_ * 4;
    case WeightDtype::kBf16: return in_ * out_ * 2;
    case WeightDtype::kInt8: return in_ * out_ + out_ * 4;
  }
  return 0;
}

}  // namespace ktl
