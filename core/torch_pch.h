// Precompiled header for LibTorch targets (each torch target compiles this once).
#pragma once
#include <torch/torch.h>
