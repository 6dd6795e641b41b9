#include "common.h"

#include <ATen/Parallel.h>

#include <new>

namespace dfdet {

std::atomic<int> gDesiredThreads{0};
std::atomic<int64_t> gLiveExternalTensors{0};
std::atomic<int64_t> gLiveExternalBytes{0};

void applyThreads() {
  int want = gDesiredThreads.load();
  if (want > 0 && at::get_num_threads() != want) at::set_num_threads(want);
}

static bool mentionsOutOfMemory(const std::string& m) {
  return m.find("out of memory") != std::string::npos || m.find("not enough memory") != std::string::npos ||
         m.find("can't allocate memory") != std::string::npos;
}

ErrorInfo classifyCurrentException(ErrorCode fallback) {
  try {
    throw;
  } catch (const c10::OutOfMemoryError& e) {
    return {ErrorCode::OUT_OF_MEMORY, e.what_without_backtrace()};
  } catch (const c10::Error& e) {
    std::string m = e.what_without_backtrace();
    return {mentionsOutOfMemory(m) ? ErrorCode::OUT_OF_MEMORY : fallback, m};
  } catch (const std::bad_alloc& e) {
    return {ErrorCode::OUT_OF_MEMORY, std::string("allocation failed: ") + e.what()};
  } catch (const std::exception& e) {
    // torch::jit::ErrorReport (TorchScript compile errors) lands here: it is not a c10::Error.
    std::string m = e.what();
    return {mentionsOutOfMemory(m) ? ErrorCode::OUT_OF_MEMORY : fallback, m};
  } catch (...) {
    return {fallback, "unknown native exception"};
  }
}

Napi::Error makeError(Napi::Env env, ErrorCode code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, codeName(code)));
  return err;
}

void throwTyped(Napi::Env env, ErrorCode code, const std::string& message) {
  throw makeError(env, code, message);
}

void PromiseWorker::Execute() {
  try {
    applyThreads();
    Run();
  } catch (...) {
    ErrorInfo info = classifyCurrentException(fallbackCode_);
    errorCode_ = info.code;
    SetError(info.message.empty() ? "native error" : info.message);
  }
}

// OnOK/OnError run from a libuv callback: nothing may escape them. When the environment is
// being torn down (a worker_thread terminated mid-run) every N-API call fails; then there is
// nobody left to tell, and the only job is to release state without throwing.
void PromiseWorker::OnOK() {
  Napi::Env env = Env();
  try {
    try {
      deferred_.Resolve(Resolve(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (...) {
      ErrorInfo info = classifyCurrentException(fallbackCode_);
      deferred_.Reject(makeError(env, info.code, info.message).Value());
    }
  } catch (...) {
  }
  try {
    Settled();
  } catch (...) {
  }
}

void PromiseWorker::OnError(const Napi::Error& e) {
  Napi::Env env = Env();
  try {
    deferred_.Reject(makeError(env, errorCode_.value_or(fallbackCode_), e.Message()).Value());
  } catch (...) {
  }
  try {
    Settled();
  } catch (...) {
  }
}

}  // namespace dfdet
