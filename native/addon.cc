// Entry point of the dfdet addon: registers the exports declared in binding.d.ts.
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/script.h>
#include <torch/version.h>
#include <torch/csrc/jit/runtime/graph_executor.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <set>
#include <thread>

#include "build.h"
#include "common.h"
#include "device.h"
#include "model.h"
#include "preprocess.h"
#include "sdpa.h"
#include "train.h"

namespace dfdet {

namespace {

std::vector<std::string> blasLibraries() {
  // Which BLAS/LAPACK the dynamic loader picked (alternatives make this invisible otherwise).
  std::set<std::string> found;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    std::string lower = path;
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower.find("blas") != std::string::npos || lower.find("lapack") != std::string::npos ||
        lower.find("libmkl") != std::string::npos || lower.find("libgomp") != std::string::npos ||
        lower.find("libomp") != std::string::npos)
      found.insert(path);
  }
  return {found.begin(), found.end()};
}

Napi::Value RuntimeInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("torchVersion", TORCH_VERSION);
  bool cuda = torch::cuda::is_available();
  o.Set("cudaAvailable", cuda);
  o.Set("cudaDeviceCount", Napi::Number::New(env, cuda ? static_cast<double>(torch::cuda::device_count()) : 0));
  applyThreads();
  o.Set("threads", Napi::Number::New(env, at::get_num_threads()));
  o.Set("config", at::show_config());
  o.Set("sdpaShim", ensureSdpaOp());
  o.Set("jitProfiling", torch::jit::getExecutorMode().load());
  auto libs = blasLibraries();
  Napi::Array arr = Napi::Array::New(env, libs.size());
  for (size_t i = 0; i < libs.size(); i++) arr.Set(static_cast<uint32_t>(i), libs[i]);
  o.Set("blasLibraries", arr);
  return o;
}

// A backstop for callers of the raw binding: lib/model.ts checks threads first (lib/model-options.ts).
Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throwTyped(env, ErrorCode::BAD_INPUT, "Expected a positive integer for threads");
  int n = info[0].As<Napi::Number>().Int32Value();
  if (n < 1 || n > 1024) throwTyped(env, ErrorCode::BAD_INPUT, "Expected a positive integer for threads but received " + std::to_string(n));
  gDesiredThreads = n;
  return env.Undefined();
}

Napi::Value DebugCounters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("liveExternalTensors", Napi::Number::New(env, static_cast<double>(gLiveExternalTensors.load())));
  o.Set("liveExternalBytes", Napi::Number::New(env, static_cast<double>(gLiveExternalBytes.load())));
  return o;
}

// The codes of errors.h, for lib/native.ts to map from (no second list in TypeScript).
Napi::Array ErrorCodes(Napi::Env env) {
  Napi::Array codes = Napi::Array::New(env, std::size(kAllErrorCodes));
  for (uint32_t i = 0; i < std::size(kAllErrorCodes); i++) codes.Set(i, codeName(kAllErrorCodes[i]));
  codes.Freeze();
  return codes;
}

void initProcessOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    // TorchScript's profiling executor profiles, then re-optimises every graph during its first
    // runs, in every new process (each CLI run). Measured on BlazeFace (frozen, busy machine): first
    // runs of 0.1-1.6 s with it, 60-100 ms without, and no slower steady state. DFDET_JIT_PROFILING=1
    // restores libtorch's default.
    const char* prof = std::getenv("DFDET_JIT_PROFILING");
    const bool profiling = prof && prof[0] == '1';
    torch::jit::getExecutorMode() = profiling;
    torch::jit::getProfilingMode() = profiling;
    // libtorch defaults to 1 intra-op thread on these machines: use the cores unless told otherwise.
    int n = 0;
    if (const char* e = std::getenv("DFDET_THREADS")) n = std::atoi(e);
    else if (!std::getenv("OMP_NUM_THREADS")) n = static_cast<int>(std::thread::hardware_concurrency());
    if (n > 0) gDesiredThreads = n;
  });
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  initProcessOnce();
  ensureSdpaOp();
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);  // deleted by node-addon-api when this environment ends
  env.AddCleanupHook([data] { data->closing = true; });
  exports.Set("NativeModel", initModelClass(env, data));
  exports.Set("NativeTrainer", initTrainerClass(env));
  exports.Set("buildModule", Napi::Function::New(env, BuildModule, "buildModule"));
  exports.Set("runtimeInfo", Napi::Function::New(env, RuntimeInfo, "runtimeInfo"));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads, "setThreads"));
  exports.Set("debugCounters", Napi::Function::New(env, DebugCounters, "debugCounters"));
  exports.Set("preprocess", Napi::Function::New(env, Preprocess, "preprocess"));
  exports.Set("cudaCapability", Napi::Function::New(env, CudaCapability, "cudaCapability"));
  exports.Set("errorCodes", ErrorCodes(env));
  return exports;
}

}  // namespace dfdet

static Napi::Object InitDfdet(Napi::Env env, Napi::Object exports) { return dfdet::Init(env, exports); }

NODE_API_MODULE(dfdet, InitDfdet)
