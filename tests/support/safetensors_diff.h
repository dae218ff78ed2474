// Comparing two safetensors files in tests (checkpoints after resume, merge, …).
#pragma once

#include <algorithm>
#include <cmath>
#include <string>

#include "core/safetensors/safetensors.h"

namespace ktl::testing {

// Largest absolute difference between same-named F32 tensors of two files; infinity when the
// files hold other names, sizes or dtypes.
inline double max_f32_tensor_diff(const std::string& a, const std::string& b) {
  auto fa = SafetensorsFile::open(a), fb = SafetensorsFile::open(b);
  if (fa.tensors().size() != fb.tensors().size()) return INFINITY;
  double d = 0;
  for (const auto& ta : fa.tensors()) {
    const StTensorInfo* tb = fb.find(ta.name);
    if (!tb || tb->nbytes != ta.nbytes || ta.dtype != StDtype::F32) return INFINITY;
    const float* x = static_cast<const float*>(fa.data(ta));
    const float* y = static_cast<const float*>(fb.data(*tb));
    for (size_t i = 0; i < ta.nbytes / 4; ++i) d = std::max(d, double(std::fabs(x[i] - y[i])));
  }
  return d;
}

}  // namespace ktl::testing
