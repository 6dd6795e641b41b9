// Shared helpers of the dfdet addon: error classification, per-environment data, the async worker
// base that turns every C++ exception into a rejected promise with a stable `code`.
#pragma once

#include <napi.h>
#include <torch/script.h>

#include "errors.h"

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace dfdet {

// The explicit dispose() of an object whose async workers may be in flight: dispose() promises
// resolve once the last worker has settled, and `release` (which frees the object's state) runs
// then, once. Used on the JS thread only.
class DisposeGate {
 public:
  bool disposing() const { return disposing_; }
  // A worker was queued (call before it can settle: completion runs on this thread).
  void started() { inFlight_++; }
  // A worker settled.
  template <typename F>
  void finished(Napi::Env env, F&& release) {
    inFlight_--;
    settle(env, std::forward<F>(release));
  }
  // dispose(): resolves at once when `released` already, else when no worker is left in flight.
  template <typename F>
  Napi::Promise dispose(Napi::Env env, bool released, F&& release) {
    auto d = Napi::Promise::Deferred::New(env);
    if (released) {
      d.Resolve(env.Undefined());
      return d.Promise();
    }
    disposing_ = true;
    pending_.push_back(d);
    settle(env, std::forward<F>(release));
    return d.Promise();
  }

 private:
  template <typename F>
  void settle(Napi::Env env, F&& release) {
    if (!disposing_ || inFlight_ > 0 || pending_.empty()) return;
    release();
    for (auto& d : pending_) d.Resolve(env.Undefined());
    pending_.clear();
  }
  bool disposing_ = false;
  int inFlight_ = 0;
  std::vector<Napi::Promise::Deferred> pending_;
};

// Per-environment state (one per main thread / worker_thread). No static N-API references.
struct AddonData {
  Napi::FunctionReference modelConstructor;
  // Set by the environment's cleanup hook: work finishing after that creates no new JS objects.
  bool closing = false;
};

// Desired libtorch intra-op thread count. Process-wide on purpose: OpenMP sets the count per
// calling thread, so every worker re-applies it before heavy work (see applyThreads()).
extern std::atomic<int> gDesiredThreads;
void applyThreads();

// Live tensors whose memory is owned by JS ArrayBuffers (for tests and leak checks).
extern std::atomic<int64_t> gLiveExternalTensors;
extern std::atomic<int64_t> gLiveExternalBytes;

struct ErrorInfo {
  ErrorCode code;
  std::string message;
};

// Maps the exception in flight to a code; `fallback` is the code for errors of the operation itself.
ErrorInfo classifyCurrentException(ErrorCode fallback);

Napi::Error makeError(Napi::Env env, ErrorCode code, const std::string& message);

// An AsyncWorker that settles a promise. Subclasses implement Run() (thread pool, no N-API) and
// Resolve() (JS thread). Every exception thrown by Run() becomes a typed rejection.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, const char* name, ErrorCode fallbackCode)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)), fallbackCode_(fallbackCode) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  virtual void Run() = 0;
  virtual Napi::Value Resolve(Napi::Env env) = 0;
  // Called on the JS thread after the promise settled, success or not.
  virtual void Settled() {}

  void Fail(ErrorCode code, const std::string& message) {
    errorCode_ = code;
    SetError(message);
  }

 private:
  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& e) override;

  Napi::Promise::Deferred deferred_;
  ErrorCode fallbackCode_;
  std::optional<ErrorCode> errorCode_;
};

// Fills in a worker on the JS thread, then queues it. If filling in throws (a JS error for bad
// arguments) the worker is freed and the error propagates to the caller.
template <typename W, typename Configure>
Napi::Promise queueWorker(W* w, Configure&& configure) {
  Napi::Env env = w->Env();
  try {
    configure(*w);
  } catch (const Napi::Error&) {
    delete w;
    throw;
  } catch (...) {
    // libtorch (c10::Error) or the standard library threw on the JS thread: only Napi::Error may
    // leave a binding function, anything else would terminate the process.
    delete w;
    ErrorInfo info = classifyCurrentException(ErrorCode::BAD_INPUT);
    throw makeError(env, info.code, info.message);
  }
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// Throws a JS error with a code from a synchronous binding function.
[[noreturn]] void throwTyped(Napi::Env env, ErrorCode code, const std::string& message);

}  // namespace dfdet
