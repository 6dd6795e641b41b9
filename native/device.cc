// Devices. The compute capability comes from the CUDA driver (libcuda.so.1, loaded at run time),
// so this file compiles the same against CPU and CUDA builds of libtorch.
#include "device.h"

#include <torch/cuda.h>

#include <dlfcn.h>

namespace dfdet {

// Device strings are checked in TypeScript first (lib/model-options.ts, sharp-style errors); this
// is the backstop for the raw binding and adds what only libtorch knows: whether CUDA and the
// device index exist.
c10::Device parseDeviceOrThrow(Napi::Env env, const std::string& s) {
  try {
    c10::Device d(s);
    if (d.is_cuda() && !torch::cuda::is_available())
      throwTyped(env, ErrorCode::UNSUPPORTED, "device '" + s + "' requested but this libtorch has no usable CUDA (set LIBTORCH to a CUDA build of libtorch and rebuild)");
    if (d.is_cuda() && d.has_index() && d.index() >= static_cast<int>(torch::cuda::device_count()))
      throwTyped(env, ErrorCode::UNSUPPORTED, "device '" + s + "' requested but only " + std::to_string(torch::cuda::device_count()) + " CUDA device(s) exist");
    if (!d.is_cpu() && !d.is_cuda()) throwTyped(env, ErrorCode::UNSUPPORTED, "device '" + s + "' is not supported (use cpu, cuda or cuda:N)");
    return d;
  } catch (const c10::Error&) {
    throwTyped(env, ErrorCode::BAD_INPUT, "Expected 'cpu', 'cuda' or 'cuda:N' for device but received '" + s + "'");
  }
}

Napi::Value CudaCapability(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throwTyped(env, ErrorCode::BAD_INPUT, "Expected a device index for cudaCapability");
  const int index = info[0].As<Napi::Number>().Int32Value();
  if (!torch::cuda::is_available()) throwTyped(env, ErrorCode::UNSUPPORTED, "no CUDA device: this libtorch has no usable CUDA");
  if (index < 0 || index >= static_cast<int>(torch::cuda::device_count()))
    throwTyped(env, ErrorCode::UNSUPPORTED, "CUDA device " + std::to_string(index) + " does not exist (" + std::to_string(torch::cuda::device_count()) + " found)");
  // CUDA driver API: cuInit, cuDeviceGet, cuDeviceGetAttribute (75/76: compute capability major/minor).
  void* lib = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (!lib) throwTyped(env, ErrorCode::UNSUPPORTED, "cannot load the CUDA driver (libcuda.so.1)");
  using InitFn = int (*)(unsigned);
  using GetFn = int (*)(int*, int);
  using AttrFn = int (*)(int*, int, int);
  auto init = reinterpret_cast<InitFn>(dlsym(lib, "cuInit"));
  auto get = reinterpret_cast<GetFn>(dlsym(lib, "cuDeviceGet"));
  auto attr = reinterpret_cast<AttrFn>(dlsym(lib, "cuDeviceGetAttribute"));
  int dev = 0, major = 0, minor = 0;
  bool ok = init && get && attr && init(0) == 0 && get(&dev, index) == 0 && attr(&major, 75, dev) == 0 && attr(&minor, 76, dev) == 0;
  dlclose(lib);
  if (!ok) throwTyped(env, ErrorCode::UNSUPPORTED, "the CUDA driver did not report the compute capability of device " + std::to_string(index));
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, major));
  out.Set(1u, Napi::Number::New(env, minor));
  return out;
}

}  // namespace dfdet
