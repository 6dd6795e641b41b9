// Devices: parsing a device string against what this libtorch has, and what a CUDA device can do.
#pragma once

#include "common.h"

namespace dfdet {

// 'cpu', 'cuda' or 'cuda:N', checked against this build (JS-thread only: throws typed JS errors).
c10::Device parseDeviceOrThrow(Napi::Env env, const std::string& s);

// cudaCapability(index): [major, minor] of a CUDA device; UNSUPPORTED without CUDA.
Napi::Value CudaCapability(const Napi::CallbackInfo& info);

}  // namespace dfdet
