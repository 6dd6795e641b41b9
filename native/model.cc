// NativeModel: a TorchScript module loaded by libtorch, run on the libuv thread pool.
#include "model.h"

#include "device.h"
#include "tensors.h"

#include <torch/csrc/jit/serialization/import.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <mutex>
#include <streambuf>
#include <vector>

namespace dfdet {

namespace {

// State shared by the JS wrapper and every worker in flight, so a finalizer or dispose() during a
// run never frees the module under it.
struct ModelState {
  torch::jit::Module module;
  // A backstop only: lib/model.ts's per-model queue owns the order of runs (abort while queued,
  // dispose after the queue) and never has two runs here at once. The lock keeps callers of the
  // raw binding (tests, benchmarks) from running one module on two threads; uncontended, it costs
  // nothing on the Model path.
  std::mutex runMutex;
  c10::Device device{at::kCPU};
  at::ScalarType dtype = at::kFloat;
  // Below float32, a dfdet detector (methods pooled + head) keeps its head in float32: the ViT
  // runs in `dtype`, its pooled feature is widened, and the L2 norm and the head's logits are
  // float32 (bf16 logits would round pFake to ~1e-3 steps and tie scores). See mixedRun().
  bool mixedHead = false;
  std::vector<std::string> methods;
  int64_t parameterCount = 0;
  int64_t parameterBytes = 0;
  std::map<std::string, std::string> extraFiles;
  // Simple root attributes, read once at load: info() must not wait for a run's lock.
  std::vector<std::pair<std::string, c10::IValue>> attributes;
  // Memory of parameters and buffers: an output aliasing it (a method returning self.weight) is
  // copied, or JS could write into the model.
  std::vector<std::pair<const uint8_t*, const uint8_t*>> weightSpans;
};

// A read-only streambuf over pinned JS memory: torch::jit::load reads Buffers without a copy.
class MemoryBuf : public std::streambuf {
 public:
  MemoryBuf(const char* data, size_t size) {
    char* p = const_cast<char*>(data);
    setg(p, p, p + size);
  }

 protected:
  pos_type seekoff(off_type off, std::ios_base::seekdir dir, std::ios_base::openmode) override {
    char* target = dir == std::ios_base::beg ? eback() + off : dir == std::ios_base::cur ? gptr() + off : egptr() + off;
    if (target < eback() || target > egptr()) return pos_type(off_type(-1));
    setg(eback(), target, egptr());
    return pos_type(target - eback());
  }
  pos_type seekpos(pos_type pos, std::ios_base::openmode mode) override {
    return seekoff(off_type(pos), std::ios_base::beg, mode);
  }
};

// Name of the first parameter or buffer holding NaN/Inf, or "" when every weight is finite.
std::string firstNonFiniteWeight(const torch::jit::Module& module) {
  c10::InferenceMode guard;
  auto finite = [](const at::Tensor& t) {
    return !t.defined() || !at::isFloatingType(t.scalar_type()) || t.numel() == 0 || at::isfinite(t).all().item<bool>();
  };
  for (const auto& p : module.named_parameters(/*recurse=*/true))
    if (!finite(p.value)) return p.name;
  for (const auto& b : module.named_buffers(/*recurse=*/true))
    if (!finite(b.value)) return b.name;
  return "";
}

// Dtype strings are checked in TypeScript first (lib/model-options.ts); this is the backstop.
at::ScalarType parseFloatDType(Napi::Env env, const std::string& s) {
  if (s == "float32") return at::kFloat;
  if (s == "float16") return at::kHalf;
  if (s == "bfloat16") return at::kBFloat16;
  throwTyped(env, ErrorCode::BAD_INPUT, "Expected one of float32, float16, bfloat16 for dtype but received '" + s + "'");
}

// forward and features of a mixed-precision detector: the ViT in the model's dtype up to the pooled
// CLS feature, then float32 for what the detector's source does after it (vision.torchscript:
// features = f / |f|, forward = head(pooled(x))). Other methods run as they are.
c10::IValue mixedRun(ModelState& st, const std::string& method, torch::jit::Method& m, std::vector<c10::IValue> args) {
  if (method != "forward" && method != "features") return m(std::move(args));
  at::Tensor f = st.module.get_method("pooled")(std::move(args)).toTensor().to(at::kFloat);
  if (method == "features") return f / f.norm(2, -1, true).clamp_min(1e-12);
  return st.module.get_method("head")({f});
}

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeModel",
                       {StaticMethod("load", &NativeModel::Load), InstanceMethod("info", &NativeModel::Info),
                        InstanceMethod("run", &NativeModel::Run), InstanceMethod("dispose", &NativeModel::Dispose),
                        InstanceAccessor("disposed", &NativeModel::Disposed, nullptr)});
  }

  explicit NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
    // Only load() creates instances: it passes an External holding the loaded state.
    if (info.Length() != 1 || !info[0].IsExternal())
      throwTyped(info.Env(), ErrorCode::BAD_INPUT, "NativeModel cannot be constructed directly; use NativeModel.load()");
    auto* holder = info[0].As<Napi::External<std::shared_ptr<ModelState>>>().Data();
    state_ = *holder;
    accountedBytes_ = state_->parameterBytes;
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), accountedBytes_);
  }

  ~NativeModel() override {
    // The finalizer may run with runs still in flight: they hold their own shared_ptr.
    ReleaseAccounting();
  }

  static Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Run(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), gate_.disposing()); }

  void RunFinished() { gate_.finished(Env(), [this] { Release(); }); }

 private:
  void Release() {
    state_.reset();
    ReleaseAccounting();
  }
  void ReleaseAccounting() {
    if (accountedBytes_ == 0) return;
    int64_t ignored;
    napi_adjust_external_memory(Env(), -accountedBytes_, &ignored);
    accountedBytes_ = 0;
  }

  std::shared_ptr<ModelState> state_;
  DisposeGate gate_;
  int64_t accountedBytes_ = 0;
};

class LoadWorker : public PromiseWorker {
 public:
  LoadWorker(Napi::Env env, AddonData* data) : PromiseWorker(env, "dfdet.load", ErrorCode::MODEL_LOAD_FAILED), data_(data) {}

  std::string path;
  Napi::ObjectReference bytesPin;  // keeps a Buffer source alive while it is read
  const char* bytes = nullptr;
  size_t size = 0;
  c10::Device device{at::kCPU};
  at::ScalarType dtype = at::kFloat;
  bool optimize = false;
  std::vector<std::string> extraFileNames;

 protected:
  void Run() override {
    auto st = std::make_shared<ModelState>();
    torch::jit::ExtraFilesMap extra;
    for (const auto& n : extraFileNames) extra[n] = "";
    if (bytes) {
      MemoryBuf buf(bytes, size);
      std::istream in(&buf);
      st->module = torch::jit::load(in, device, extra);
    } else {
      st->module = torch::jit::load(path, device, extra);
    }
    for (const auto& kv : extra)
      if (!kv.second.empty()) st->extraFiles[kv.first] = kv.second;
    st->module.eval();
    if (dtype != at::kFloat) {
      auto& m = st->module;
      st->mixedHead = m.find_method("pooled") && m.find_method("head") && m.hasattr("head_weight") && m.hasattr("head_bias");
      // The head's own float32 values (a round trip through bf16 would round them).
      at::Tensor headWeight, headBias;
      if (st->mixedHead) {
        headWeight = m.attr("head_weight").toTensor().to(at::kFloat, /*non_blocking=*/false, /*copy=*/true);
        headBias = m.attr("head_bias").toTensor().to(at::kFloat, false, true);
      }
      m.to(dtype);
      if (st->mixedHead) {
        m.setattr("head_weight", headWeight);
        m.setattr("head_bias", headBias);
      }
    }
    // A NaN or infinite weight never gives a meaningful score: refuse the file here, naming the
    // tensor, instead of scoring with it (one cheap pass over the weights). Checked after the cast:
    // a large float32 weight overflows float16.
    std::string badWeight = firstNonFiniteWeight(st->module);
    if (!badWeight.empty()) {
      Fail(ErrorCode::BAD_WEIGHTS, "weight '" + badWeight + "' holds NaN or infinite values" +
                              (dtype == at::kFloat ? std::string() : " in " + std::string(dtypeName(dtype))) +
                              ": the model file is corrupt or was saved from a diverged training run");
      return;
    }
    st->device = device;
    st->dtype = dtype;
    for (const auto& p : st->module.parameters()) {
      st->parameterCount += p.numel();
      st->parameterBytes += p.numel() * static_cast<int64_t>(p.element_size());
    }
    for (const auto& m : st->module.get_methods()) st->methods.push_back(m.name());
    for (const auto& a : st->module.named_attributes(/*recurse=*/false)) {
      if (a.name == "training") continue;
      const c10::IValue& v = a.value;
      if (v.isString() || v.isInt() || v.isDouble() || v.isBool()) st->attributes.emplace_back(a.name, v);
    }
    auto addSpan = [&](const at::Tensor& t) {
      if (!t.defined() || !t.has_storage() || !t.storage().data()) return;
      auto* b = static_cast<const uint8_t*>(t.storage().data());
      st->weightSpans.emplace_back(b, b + t.storage().nbytes());
    };
    for (const auto& p : st->module.parameters()) addSpan(p);
    for (const auto& b : st->module.buffers()) addSpan(b);
    if (optimize) {
      std::vector<std::string> others;
      for (const auto& m : st->methods)
        if (m != "forward") others.push_back(m);
      auto frozen = torch::jit::freeze(st->module, others);
      st->module = torch::jit::optimize_for_inference(frozen, others);
    }
    state_ = st;
  }

  Napi::Value Resolve(Napi::Env env) override {
    if (data_->closing) throw makeError(env, ErrorCode::DISPOSED, "the JavaScript environment is shutting down");
    auto holder = std::make_unique<std::shared_ptr<ModelState>>(state_);
    // The External only lives for the constructor call; the wrapper copies the shared_ptr.
    Napi::External<std::shared_ptr<ModelState>> ext = Napi::External<std::shared_ptr<ModelState>>::New(env, holder.get());
    return data_->modelConstructor.New({ext});
  }

 private:
  AddonData* data_;
  std::shared_ptr<ModelState> state_;
};

class RunWorker : public PromiseWorker {
 public:
  RunWorker(Napi::Env env, NativeModel* owner, Napi::Object ownerObj, std::shared_ptr<ModelState> st)
      : PromiseWorker(env, "dfdet.run", ErrorCode::RUNTIME_ERROR), owner_(owner), state_(std::move(st)) {
    ownerPin_ = Napi::Persistent(ownerObj);  // the wrapper must outlive RunFinished()
  }

  std::string method;
  std::vector<PinnedTensor> inputs;
  bool checkFinite = true;

 protected:
  void Run() override {
    std::lock_guard<std::mutex> lock(state_->runMutex);
    c10::InferenceMode guard;
    auto m = state_->module.find_method(method);
    if (!m) {
      std::string names;
      for (const auto& n : state_->methods) names += (names.empty() ? "" : ", ") + n;
      Fail(ErrorCode::BAD_INPUT, "the model has no method '" + method + "' (it has: " + names + ")");
      return;
    }
    std::vector<c10::IValue> args;
    std::vector<std::pair<const uint8_t*, const uint8_t*>> spans;
    for (size_t i = 0; i < inputs.size(); i++) {
      at::Tensor t = inputs[i].tensor;
      spans.emplace_back(inputs[i].begin, inputs[i].end);
      // The one NaN check of a Model.run (vectorised, off the event loop). The Batcher checks its
      // items itself, to fail only the caller whose item is bad, and turns this one off.
      if (checkFinite && at::isFloatingType(t.scalar_type()) && t.numel() > 0 && !at::isfinite(t).all().item<bool>()) {
        Fail(ErrorCode::BAD_INPUT, "input " + std::to_string(i) + " holds NaN or infinite values");
        return;
      }
      if (!t.is_contiguous()) t = t.contiguous();
      // A mixed model's head takes float32 features (its weights stayed float32).
      const at::ScalarType want = state_->mixedHead && method == "head" ? at::kFloat : state_->dtype;
      if (at::isFloatingType(t.scalar_type()) && t.scalar_type() != want) t = t.to(want);
      if (!state_->device.is_cpu()) t = t.to(state_->device);  // one staged copy to the GPU
      args.emplace_back(t);
    }
    c10::IValue out = state_->mixedHead ? mixedRun(*state_, method, *m, std::move(args)) : (*m)(std::move(args));
    spans.insert(spans.end(), state_->weightSpans.begin(), state_->weightSpans.end());
    result_ = prepareOutput(out, spans);
  }

  Napi::Value Resolve(Napi::Env env) override { return toJs(env, result_); }

  void Settled() override {
    result_ = c10::IValue();
    owner_->RunFinished();
    // Inputs (pins) are released with the worker, on this thread.
  }

 private:
  NativeModel* owner_;
  Napi::ObjectReference ownerPin_;
  std::shared_ptr<ModelState> state_;
  c10::IValue result_;
};

Napi::Value NativeModel::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* data = env.GetInstanceData<AddonData>();
  if (info.Length() < 2 || !info[1].IsObject()) throwTyped(env, ErrorCode::BAD_INPUT, "Expected an options object for load()");
  Napi::Object opts = info[1].As<Napi::Object>();
  return queueWorker(new LoadWorker(env, data), [&](LoadWorker& w) {
    if (info[0].IsString()) {
      w.path = info[0].As<Napi::String>().Utf8Value();
    } else if (info[0].IsTypedArray()) {
      Napi::TypedArray a = info[0].As<Napi::TypedArray>();
      w.bytes = static_cast<const char*>(a.ArrayBuffer().Data()) + a.ByteOffset();
      w.size = a.ByteLength();
      w.bytesPin = Napi::Persistent(a.As<Napi::Object>());
    } else {
      throwTyped(env, ErrorCode::BAD_INPUT, "Expected a path string or a Uint8Array for the model source");
    }
    Napi::Value dev = opts.Get("device");
    w.device = parseDeviceOrThrow(env, dev.IsString() ? dev.As<Napi::String>().Utf8Value() : "cpu");
    Napi::Value dt = opts.Get("dtype");
    w.dtype = parseFloatDType(env, dt.IsString() ? dt.As<Napi::String>().Utf8Value() : "float32");
    w.optimize = opts.Get("optimize").ToBoolean().Value();
    Napi::Value ef = opts.Get("extraFiles");
    if (ef.IsArray()) {
      Napi::Array a = ef.As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); i++) w.extraFileNames.push_back(a.Get(i).ToString().Utf8Value());
    }
  });
}

Napi::Value NativeModel::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!state_) throwTyped(env, ErrorCode::DISPOSED, "the model was disposed");
  Napi::Object o = Napi::Object::New(env);
  Napi::Array methods = Napi::Array::New(env, state_->methods.size());
  for (size_t i = 0; i < state_->methods.size(); i++) methods.Set(static_cast<uint32_t>(i), state_->methods[i]);
  o.Set("methods", methods);
  o.Set("parameterCount", Napi::Number::New(env, static_cast<double>(state_->parameterCount)));
  o.Set("parameterBytes", Napi::Number::New(env, static_cast<double>(state_->parameterBytes)));
  o.Set("device", state_->device.str());
  o.Set("dtype", dtypeName(state_->dtype));
  o.Set("torchVersion", TORCH_VERSION);
  Napi::Object extra = Napi::Object::New(env);
  for (const auto& kv : state_->extraFiles) extra.Set(kv.first, kv.second);
  o.Set("extraFiles", extra);
  Napi::Object attrs = Napi::Object::New(env);
  for (const auto& [name, v] : state_->attributes) {
    if (v.isString()) attrs.Set(name, v.toStringRef());
    else if (v.isInt()) attrs.Set(name, Napi::Number::New(env, static_cast<double>(v.toInt())));
    else if (v.isDouble()) attrs.Set(name, Napi::Number::New(env, v.toDouble()));
    else if (v.isBool()) attrs.Set(name, Napi::Boolean::New(env, v.toBool()));
  }
  o.Set("attributes", attrs);
  return o;
}

Napi::Value NativeModel::Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (gate_.disposing() || !state_) throwTyped(env, ErrorCode::DISPOSED, "the model was disposed");
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsArray())
    throwTyped(env, ErrorCode::BAD_INPUT, "Expected run(method: string, inputs: NativeTensor[], options?)");
  Napi::Promise p = queueWorker(new RunWorker(env, this, Value(), state_), [&](RunWorker& w) {
    w.method = info[0].As<Napi::String>().Utf8Value();
    Napi::Array arr = info[1].As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); i++) w.inputs.push_back(wrapTensor(env, arr.Get(i), "inputs[" + std::to_string(i) + "]"));
    if (info.Length() > 2 && info[2].IsObject()) {
      Napi::Value cf = info[2].As<Napi::Object>().Get("checkFinite");
      if (!cf.IsUndefined()) w.checkFinite = cf.ToBoolean().Value();
    }
  });
  gate_.started();  // the worker cannot complete before this returns: completion runs on this thread
  return p;
}

Napi::Value NativeModel::Dispose(const Napi::CallbackInfo& info) {
  return gate_.dispose(info.Env(), !state_, [this] { Release(); });
}

}  // namespace

Napi::Function initModelClass(Napi::Env env, AddonData* data) {
  Napi::Function ctor = NativeModel::Define(env);
  data->modelConstructor = Napi::Persistent(ctor);
  return ctor;
}

}  // namespace dfdet
