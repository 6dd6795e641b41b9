// Batched preprocessing (face crops, Pillow-exact resize, CLIP normalisation): see preprocess.cc.
#pragma once

#include "common.h"
#include "preprocess_kernels.h"
#include "tensors.h"

#include <vector>

namespace dfdet {

struct PreprocessRequest {
  std::vector<PinnedTensor> images;  // uint8 [H, W, 3], contiguous
  std::vector<int32_t> imageOf;      // per crop
  std::vector<double> matrices;      // per crop: image -> crop affine (6 values), NaN first: whole image
  int64_t cropSize = 256;
  int64_t size = 224;
  double mean[3] = {0, 0, 0};
  double stdev[3] = {1, 1, 1};
  bool bicubic = true;
  c10::Device device{at::kCPU};
  bool useOps = false;  // run the libtorch-ops path on the CPU too (tests compare both)
  int level = kAvx512;  // CPU loops: the widest clones up to this level that the CPU runs
};

// numpy's float32 normalisation of each uint8 value, [3 * 256] (lib/media/transform.ts normLut).
std::vector<float> normLut(const PreprocessRequest& r);

// The float32 [N, 3, size, size] model input, on the CPU: loops (CPU) or libtorch ops (any device).
at::Tensor preprocessLoops(const PreprocessRequest& r);
at::Tensor preprocessOps(const PreprocessRequest& r);

// preprocess(request): the binding (binding.d.ts).
Napi::Value Preprocess(const Napi::CallbackInfo& info);

}  // namespace dfdet
