// NativeTrainer: the paper's LN-tuning of a dfdet TorchScript detector with libtorch autograd.
// Only the parameters JS names are trained (LayerNorms and the head); everything else is frozen.
// One optimisation step per call, on the libuv thread pool: JS owns the loop, the schedule
// (the learning rate of each step), the randomness (slerp partners and weights) and cancellation.
#include "train.h"

#include "tensors.h"

#include <ATen/autocast_mode.h>
#include <torch/cuda.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>
#include <torch/serialize.h>
#include <torch/version.h>

#include <cmath>
#include <map>
#include <mutex>
#include <regex>
#include <set>

namespace dfdet {

namespace {

struct TrainerState {
  torch::jit::Module module;
  std::mutex mutex;  // one step, evaluation or save at a time
  c10::Device device{at::kCPU};
  bool bf16 = false;  // autocast matmuls to bfloat16; weights, LayerNorms and losses stay float32
  std::vector<std::string> names;  // trainable parameters, in optimiser order
  std::vector<at::Tensor> params;
  std::vector<std::string> allNames;
  std::unique_ptr<torch::optim::AdamW> optimizer;
  double labelSmoothing = 0, alignment = 0, uniformity = 0, gradClip = 0;
  int64_t steps = 0;
};

// Per-environment constructor reference (no static N-API references): freed by a cleanup hook.
struct TrainerEnv {
  Napi::FunctionReference constructor;
};

// bf16 autocast on the calling thread for the scope's lifetime (libtorch 1.13 and 2.x APIs).
class AutocastScope {
 public:
  AutocastScope(bool enable, c10::Device device) : enabled_(enable), cuda_(device.is_cuda()) {
    if (enabled_) set(true);
  }
  ~AutocastScope() {
    if (!enabled_) return;
    set(false);
    at::autocast::clear_cache();
  }

 private:
  void set(bool on) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    const c10::DeviceType t = cuda_ ? c10::DeviceType::CUDA : c10::DeviceType::CPU;
    at::autocast::set_autocast_dtype(t, at::kBFloat16);
    at::autocast::set_autocast_enabled(t, on);
#else
    if (cuda_) {
      at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
      at::autocast::set_enabled(on);
    } else {
      at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
      at::autocast::set_cpu_enabled(on);
    }
#endif
  }
  bool enabled_;
  bool cuda_;
};

// Spherical interpolation between rows of unit vectors (the paper's feature augmentation).
// F.normalize: rows divided by their L2 norm (at least 1e-12).
at::Tensor normalizeRows(const at::Tensor& a) { return a / a.norm(2, -1, true).clamp_min(1e-12); }

at::Tensor slerp(const at::Tensor& a, const at::Tensor& b, const at::Tensor& t) {
  at::Tensor an = normalizeRows(a);
  at::Tensor bn = normalizeRows(b);
  at::Tensor dot = (an * bn).sum(-1, true).clamp(-1 + 1e-7, 1 - 1e-7);
  at::Tensor theta = at::acos(dot);
  at::Tensor s = at::sin(theta);
  at::Tensor tt = t * theta;
  return at::sin(theta - tt) / s * an + at::sin(tt) / s * bn;
}

// Label-aware alignment (Wang & Isola 2020, as GenD uses it): mean squared distance of same-label pairs.
at::Tensor alignmentLoss(const at::Tensor& e, const at::Tensor& labels) {
  at::Tensor same = labels.unsqueeze(1).eq(labels.unsqueeze(0)).triu(1);
  at::Tensor idx = same.nonzero();
  if (idx.size(0) == 0) return at::zeros({}, e.options());
  at::Tensor x = e.index_select(0, idx.select(1, 0));
  at::Tensor y = e.index_select(0, idx.select(1, 1));
  return (x - y).norm(2, 1).pow(2).mean();
}

// Uniformity (Wang & Isola 2020, t = 2): log of the mean Gaussian potential of all pairs.
at::Tensor uniformityLoss(const at::Tensor& e) {
  if (e.size(0) < 2) return at::zeros({}, e.options());
  return at::pdist(e, 2).pow(2).mul(-2.0).exp().mean().clamp_min(1e-6).log();
}

double scalar(const at::Tensor& t) { return t.detach().to(at::kDouble).cpu().item<double>(); }

c10::Device parseTrainDevice(const std::string& s) {
  c10::Device d(s);  // throws c10::Error for malformed strings: BAD_INPUT via queueWorker
  if (d.is_cuda() && !torch::cuda::is_available()) throw std::runtime_error("device '" + s + "' requested but this libtorch has no usable CUDA");
  if (!d.is_cpu() && !d.is_cuda()) throw std::runtime_error("device '" + s + "' is not supported (use cpu, cuda or cuda:N)");
  return d;
}

class NativeTrainer;

class CreateWorker : public PromiseWorker {
 public:
  CreateWorker(Napi::Env env, TrainerEnv* te) : PromiseWorker(env, "dfdet.trainer.create", ErrorCode::MODEL_LOAD_FAILED), te_(te) {}
  std::string path;
  std::string deviceName = "cpu";
  bool bf16 = false;
  std::string trainable, decay;  // ECMAScript regular expressions over parameter names
  double weightDecay = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double labelSmoothing = 0, alignment = 0, uniformity = 0, gradClip = 0;

 protected:
  void Run() override {
    auto st = std::make_shared<TrainerState>();
    st->device = parseTrainDevice(deviceName);
    st->module = torch::jit::load(path, st->device);
    for (const char* m : {"pooled", "head"})
      if (!st->module.find_method(m)) {
        Fail(ErrorCode::UNSUPPORTED, std::string("the model has no '") + m + "' method: only dfdet detector files (dfdet convert / model init) can be trained");
        return;
      }
    st->module.train();
    std::vector<at::Tensor> decayed, plain;
    std::vector<std::string> decayedNames, plainNames;
    const std::regex trainRe(trainable, std::regex::ECMAScript), decayRe(decay.empty() ? "$^" : decay, std::regex::ECMAScript);
    for (const auto& p : st->module.named_parameters(/*recurse=*/true)) {
      st->allNames.push_back(p.name);
      at::Tensor t = p.value;
      const bool train = std::regex_search(p.name, trainRe);
      t.requires_grad_(train);
      if (!train) continue;
      if (t.scalar_type() != at::kFloat) throw std::runtime_error("trainable parameter " + p.name + " is not float32");
      const bool wd = std::regex_search(p.name, decayRe);
      (wd ? decayed : plain).push_back(t);
      (wd ? decayedNames : plainNames).push_back(p.name);
    }
    if (decayed.empty() && plain.empty()) {
      Fail(ErrorCode::BAD_INPUT, "no parameter of the model matches /" + trainable + "/");
      return;
    }
    auto opts = [&](double wd) {
      return std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(1e-3).betas({beta1, beta2}).eps(eps).weight_decay(wd));
    };
    std::vector<torch::optim::OptimizerParamGroup> groups;
    // Both groups always exist (possibly empty), so checkpoints have one layout.
    groups.emplace_back(decayed, opts(weightDecay));
    groups.emplace_back(plain, opts(0.0));
    st->optimizer = std::make_unique<torch::optim::AdamW>(groups, *opts(0.0));
    st->names = decayedNames;
    st->names.insert(st->names.end(), plainNames.begin(), plainNames.end());
    st->params = decayed;
    st->params.insert(st->params.end(), plain.begin(), plain.end());
    st->bf16 = bf16;
    st->labelSmoothing = labelSmoothing;
    st->alignment = alignment;
    st->uniformity = uniformity;
    st->gradClip = gradClip;
    state_ = st;
  }

  Napi::Value Resolve(Napi::Env env) override {
    auto* data = env.GetInstanceData<AddonData>();
    if (data && data->closing) throw makeError(env, ErrorCode::DISPOSED, "the JavaScript environment is shutting down");
    auto holder = std::make_unique<std::shared_ptr<TrainerState>>(state_);
    auto ext = Napi::External<std::shared_ptr<TrainerState>>::New(env, holder.get());
    return te_->constructor.New({ext});
  }

 private:
  TrainerEnv* te_;
  std::shared_ptr<TrainerState> state_;
};

// Base of the workers that use a trainer: keeps the state and the JS wrapper alive.
class TrainerWorker : public PromiseWorker {
 public:
  TrainerWorker(Napi::Env env, const char* name, NativeTrainer* owner, Napi::Object ownerObj, std::shared_ptr<TrainerState> st);

 protected:
  void Settled() override;
  std::shared_ptr<TrainerState> state_;

 private:
  NativeTrainer* owner_;
  Napi::ObjectReference ownerPin_;
};

class NativeTrainer : public Napi::ObjectWrap<NativeTrainer> {
 public:
  static Napi::Function Define(Napi::Env env, TrainerEnv* te) {
    return DefineClass(env, "NativeTrainer",
                       {StaticMethod("create", &NativeTrainer::Create, napi_default, te),
                        InstanceMethod("info", &NativeTrainer::Info), InstanceMethod("step", &NativeTrainer::Step),
                        InstanceMethod("evaluate", &NativeTrainer::Evaluate), InstanceMethod("saveModel", &NativeTrainer::SaveModel),
                        InstanceMethod("saveCheckpoint", &NativeTrainer::SaveCheckpoint),
                        InstanceMethod("loadCheckpoint", &NativeTrainer::LoadCheckpoint),
                        InstanceMethod("dispose", &NativeTrainer::Dispose),
                        InstanceAccessor("disposed", &NativeTrainer::Disposed, nullptr)});
  }

  explicit NativeTrainer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeTrainer>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      throwTyped(info.Env(), ErrorCode::BAD_INPUT, "NativeTrainer cannot be constructed directly; use NativeTrainer.create()");
    state_ = *info[0].As<Napi::External<std::shared_ptr<TrainerState>>>().Data();
  }

  static Napi::Value Create(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value Evaluate(const Napi::CallbackInfo& info);
  Napi::Value SaveModel(const Napi::CallbackInfo& info);
  Napi::Value SaveCheckpoint(const Napi::CallbackInfo& info);
  Napi::Value LoadCheckpoint(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), disposing_ || !state_); }

  void Finished() {
    inFlight_--;
    MaybeFinishDispose();
  }

 private:
  std::shared_ptr<TrainerState> Alive(Napi::Env env) {
    if (disposing_ || !state_) throwTyped(env, ErrorCode::DISPOSED, "the trainer was disposed");
    return state_;
  }
  template <typename W, typename C>
  Napi::Value Queue(W* w, C&& configure) {
    Napi::Promise p = queueWorker(w, std::forward<C>(configure));
    inFlight_++;
    return p;
  }
  void MaybeFinishDispose() {
    if (!disposing_ || inFlight_ > 0) return;
    state_.reset();
    for (auto& d : pendingDisposals_) d.Resolve(Env().Undefined());
    pendingDisposals_.clear();
  }

  std::shared_ptr<TrainerState> state_;
  bool disposing_ = false;
  int inFlight_ = 0;
  std::vector<Napi::Promise::Deferred> pendingDisposals_;
};

TrainerWorker::TrainerWorker(Napi::Env env, const char* name, NativeTrainer* owner, Napi::Object ownerObj, std::shared_ptr<TrainerState> st)
    : PromiseWorker(env, name, ErrorCode::RUNTIME_ERROR), state_(std::move(st)), owner_(owner) {
  ownerPin_ = Napi::Persistent(ownerObj);
}

void TrainerWorker::Settled() { owner_->Finished(); }

// A float tensor in, checked for NaN and moved to the trainer's device.
at::Tensor deviceInput(const PinnedTensor& p, const TrainerState& st, at::ScalarType type) {
  at::Tensor t = p.tensor;
  if (at::isFloatingType(t.scalar_type()) && t.numel() > 0 && !at::isfinite(t).all().item<bool>())
    throw std::invalid_argument("input holds NaN or infinite values");
  return t.to(st.device, type, /*non_blocking=*/false, /*copy=*/false).contiguous();
}

class StepWorker : public TrainerWorker {
 public:
  using TrainerWorker::TrainerWorker;
  PinnedTensor images, labels, partner, weight;
  bool slerpOn = false;
  double lr = 1e-3;

 protected:
  void Run() override {
    std::lock_guard<std::mutex> lock(state_->mutex);
    TrainerState& st = *state_;
    torch::AutoGradMode grad(true);
    at::Tensor x, y, part, w;
    try {
      x = deviceInput(images, st, at::kFloat);
      y = deviceInput(labels, st, at::kLong);
      if (slerpOn) {
        part = deviceInput(partner, st, at::kLong);
        w = deviceInput(weight, st, at::kFloat);
      }
    } catch (const std::invalid_argument& e) {
      Fail(ErrorCode::BAD_INPUT, e.what());
      return;
    }
    const int64_t b = x.size(0);
    if (y.dim() != 1 || y.size(0) != b || (y.lt(0) | y.gt(1)).any().item<bool>()) {
      Fail(ErrorCode::BAD_INPUT, "Expected one label (0 or 1) per image");
      return;
    }
    if (slerpOn && (part.numel() != b || w.numel() != b || (part.ge(b) | part.lt(-1)).any().item<bool>())) {
      Fail(ErrorCode::BAD_INPUT, "Expected one slerp partner in [-1, batch) and one weight per image");
      return;
    }
    at::Tensor logits, f;
    {
      AutocastScope autocast(st.bf16, st.device);
      f = st.module.get_method("pooled")({x}).toTensor();
      if (slerpOn) {
        f = f.to(at::kFloat);
        at::Tensor has = part.ge(0);
        at::Tensor idx = at::where(has, part, at::arange(b, part.options()));
        at::Tensor mixed = slerp(f, f.index_select(0, idx), w.unsqueeze(1));
        f = at::where(has.unsqueeze(1), mixed, f);
      }
      logits = st.module.get_method("head")({f}).toTensor();
    }
    logits = logits.to(at::kFloat);
    namespace F = torch::nn::functional;
    at::Tensor ce = F::cross_entropy(logits, y, F::CrossEntropyFuncOptions().label_smoothing(st.labelSmoothing));
    at::Tensor emb = normalizeRows(f.to(at::kFloat));
    at::Tensor loss = ce;
    at::Tensor al, un;
    if (st.alignment > 0) loss = loss + st.alignment * (al = alignmentLoss(emb, y));
    if (st.uniformity > 0) loss = loss + st.uniformity * (un = uniformityLoss(emb));
    st.optimizer->zero_grad();
    loss.backward();
    // The norm before clipping (what PyTorch's clip_grad_norm_ returns); infinity never clips.
    gradNorm_ = torch::nn::utils::clip_grad_norm_(st.params, st.gradClip > 0 ? st.gradClip : INFINITY);
    for (auto& g : st.optimizer->param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    st.optimizer->step();
    st.steps++;
    loss_ = scalar(loss);
    ce_ = scalar(ce);
    align_ = al.defined() ? scalar(al) : 0;
    unif_ = un.defined() ? scalar(un) : 0;
    logits_ = logits.detach().to(at::kCPU).contiguous();
    stepIndex_ = st.steps;
  }

  Napi::Value Resolve(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("loss", loss_);
    o.Set("ce", ce_);
    o.Set("alignment", align_);
    o.Set("uniformity", unif_);
    o.Set("gradNorm", gradNorm_);
    o.Set("step", static_cast<double>(stepIndex_));
    o.Set("logits", toJs(env, prepareOutputTensor(logits_, {})));
    return o;
  }

 private:
  double loss_ = 0, ce_ = 0, align_ = 0, unif_ = 0, gradNorm_ = 0;
  int64_t stepIndex_ = 0;
  at::Tensor logits_;
};

class EvalWorker : public TrainerWorker {
 public:
  using TrainerWorker::TrainerWorker;
  PinnedTensor images;

 protected:
  void Run() override {
    std::lock_guard<std::mutex> lock(state_->mutex);
    TrainerState& st = *state_;
    at::Tensor x;
    try {
      x = deviceInput(images, st, at::kFloat);
    } catch (const std::invalid_argument& e) {
      Fail(ErrorCode::BAD_INPUT, e.what());
      return;
    }
    torch::NoGradGuard noGrad;
    st.module.eval();
    try {
      AutocastScope autocast(st.bf16, st.device);
      at::Tensor f = st.module.get_method("pooled")({x}).toTensor();
      logits_ = st.module.get_method("head")({f}).toTensor().to(at::kFloat).to(at::kCPU).contiguous();
    } catch (...) {
      st.module.train();
      throw;
    }
    st.module.train();
  }
  Napi::Value Resolve(Napi::Env env) override { return toJs(env, prepareOutputTensor(logits_, {})); }

 private:
  at::Tensor logits_;
};

class SaveModelWorker : public TrainerWorker {
 public:
  using TrainerWorker::TrainerWorker;
  std::string path;
  torch::jit::ExtraFilesMap extra;

 protected:
  void Run() override {
    std::lock_guard<std::mutex> lock(state_->mutex);
    TrainerState& st = *state_;
    // Saved in inference mode and without grad flags: the file is a plain detector.
    st.module.eval();
    for (auto& p : st.params) p.requires_grad_(false);
    try {
      st.module.save(path, extra);
    } catch (...) {
      st.module.train();
      for (auto& p : st.params) p.requires_grad_(true);
      throw;
    }
    st.module.train();
    for (auto& p : st.params) p.requires_grad_(true);
  }
  Napi::Value Resolve(Napi::Env env) override { return env.Undefined(); }
};

// Checkpoint: trainable tensors (p0..pN, names in `names`), the optimiser state and JS metadata.
class SaveCheckpointWorker : public TrainerWorker {
 public:
  using TrainerWorker::TrainerWorker;
  std::string path, meta;

 protected:
  void Run() override {
    std::lock_guard<std::mutex> lock(state_->mutex);
    TrainerState& st = *state_;
    torch::serialize::OutputArchive ar;
    std::vector<std::string> names = st.names;
    for (size_t i = 0; i < st.params.size(); i++) ar.write("p" + std::to_string(i), st.params[i].detach().to(at::kCPU));
    ar.write("names", c10::IValue(c10::List<std::string>(names)));
    ar.write("steps", c10::IValue(st.steps));
    ar.write("meta", c10::IValue(meta));
    torch::serialize::OutputArchive opt;
    st.optimizer->save(opt);
    ar.write("optimizer", opt);
    ar.save_to(path);
  }
  Napi::Value Resolve(Napi::Env env) override { return env.Undefined(); }
};

class LoadCheckpointWorker : public TrainerWorker {
 public:
  using TrainerWorker::TrainerWorker;
  std::string path;

 protected:
  void Run() override {
    std::lock_guard<std::mutex> lock(state_->mutex);
    TrainerState& st = *state_;
    torch::serialize::InputArchive ar;
    ar.load_from(path, st.device);
    c10::IValue names, steps, meta;
    ar.read("names", names);
    ar.read("steps", steps);
    ar.read("meta", meta);
    auto list = names.toList();
    if (list.size() != st.names.size()) {
      Fail(ErrorCode::BAD_INPUT, "the checkpoint holds " + std::to_string(list.size()) + " trained tensors, this trainer " + std::to_string(st.names.size()));
      return;
    }
    std::vector<at::Tensor> loaded(st.params.size());
    for (size_t i = 0; i < st.params.size(); i++) {
      const std::string n = list.get(i).toStringRef();
      if (n != st.names[i]) {
        Fail(ErrorCode::BAD_INPUT, "the checkpoint's tensor " + std::to_string(i) + " is " + n + ", expected " + st.names[i]);
        return;
      }
      ar.read("p" + std::to_string(i), loaded[i]);
      if (!loaded[i].sizes().equals(st.params[i].sizes())) {
        Fail(ErrorCode::BAD_INPUT, "the checkpoint's " + n + " has another shape than the model's");
        return;
      }
    }
    torch::serialize::InputArchive opt;
    ar.read("optimizer", opt);
    {
      torch::NoGradGuard noGrad;
      for (size_t i = 0; i < st.params.size(); i++) st.params[i].copy_(loaded[i]);
    }
    st.optimizer->load(opt);
    st.steps = steps.toInt();
    meta_ = meta.toStringRef();
  }
  Napi::Value Resolve(Napi::Env env) override { return Napi::String::New(env, meta_); }

 private:
  std::string meta_;
};

double numberOr(const Napi::Object& o, const char* key, double fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
}

std::string pattern(Napi::Env env, const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return "";
  if (!v.IsString()) throwTyped(env, ErrorCode::BAD_INPUT, std::string("Expected a regular expression source string for ") + key);
  std::string s = v.As<Napi::String>().Utf8Value();
  try {
    std::regex check(s, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throwTyped(env, ErrorCode::BAD_INPUT, std::string("Expected a valid regular expression for ") + key + " but received /" + s + "/");
  }
  return s;
}

std::string stringArg(Napi::Env env, const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString()) throwTyped(env, ErrorCode::BAD_INPUT, std::string("Expected a string for ") + what);
  return info[i].As<Napi::String>().Utf8Value();
}

Napi::Value NativeTrainer::Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* te = static_cast<TrainerEnv*>(info.Data());
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject())
    throwTyped(env, ErrorCode::BAD_INPUT, "Expected create(path: string, options: object)");
  Napi::Object o = info[1].As<Napi::Object>();
  return queueWorker(new CreateWorker(env, te), [&](CreateWorker& w) {
    w.path = info[0].As<Napi::String>().Utf8Value();
    Napi::Value dev = o.Get("device");
    if (dev.IsString()) w.deviceName = dev.As<Napi::String>().Utf8Value();
    Napi::Value dt = o.Get("dtype");
    const std::string dtype = dt.IsString() ? dt.As<Napi::String>().Utf8Value() : "float32";
    if (dtype != "float32" && dtype != "bfloat16") throwTyped(env, ErrorCode::BAD_INPUT, "Expected 'float32' or 'bfloat16' for dtype but received '" + dtype + "'");
    w.bf16 = dtype == "bfloat16";
    w.trainable = pattern(env, o, "trainable");
    if (w.trainable.empty()) throwTyped(env, ErrorCode::BAD_INPUT, "Expected a regular expression for trainable");
    w.decay = pattern(env, o, "decay");
    w.weightDecay = numberOr(o, "weightDecay", 0);
    w.beta1 = numberOr(o, "beta1", 0.9);
    w.beta2 = numberOr(o, "beta2", 0.999);
    w.eps = numberOr(o, "eps", 1e-8);
    w.labelSmoothing = numberOr(o, "labelSmoothing", 0);
    w.alignment = numberOr(o, "alignment", 0);
    w.uniformity = numberOr(o, "uniformity", 0);
    w.gradClip = numberOr(o, "gradClip", 0);
  });
}

Napi::Value NativeTrainer::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto st = Alive(env);
  Napi::Object o = Napi::Object::New(env);
  auto arr = [&](const std::vector<std::string>& v) {
    Napi::Array a = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); i++) a.Set(static_cast<uint32_t>(i), v[i]);
    return a;
  };
  o.Set("trainable", arr(st->names));
  o.Set("parameters", arr(st->allNames));
  int64_t count = 0;
  for (const auto& p : st->params) count += p.numel();
  o.Set("trainableCount", Napi::Number::New(env, static_cast<double>(count)));
  o.Set("device", st->device.str());
  o.Set("dtype", st->bf16 ? "bfloat16" : "float32");
  return o;
}

Napi::Value NativeTrainer::Step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto st = Alive(env);
  if (info.Length() < 3 || !info[2].IsObject()) throwTyped(env, ErrorCode::BAD_INPUT, "Expected step(images, labels, options)");
  return Queue(new StepWorker(env, "dfdet.trainer.step", this, Value(), st), [&](StepWorker& w) {
    w.images = wrapTensor(env, info[0], "images");
    w.labels = wrapTensor(env, info[1], "labels");
    Napi::Object o = info[2].As<Napi::Object>();
    w.lr = numberOr(o, "lr", 1e-3);
    if (!(w.lr >= 0) || !std::isfinite(w.lr)) throwTyped(env, ErrorCode::BAD_INPUT, "Expected a finite non-negative number for lr");
    Napi::Value p = o.Get("slerpPartner");
    if (!p.IsUndefined() && !p.IsNull()) {
      w.slerpOn = true;
      w.partner = wrapTensor(env, p, "slerpPartner");
      w.weight = wrapTensor(env, o.Get("slerpWeight"), "slerpWeight");
    }
    if (w.images.tensor.dim() != 4) throwTyped(env, ErrorCode::BAD_INPUT, "Expected images of shape [B, 3, H, W]");
  });
}

Napi::Value NativeTrainer::Evaluate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto st = Alive(env);
  return Queue(new EvalWorker(env, "dfdet.trainer.evaluate", this, Value(), st), [&](EvalWorker& w) {
    w.images = wrapTensor(env, info[0], "images");
    if (w.images.tensor.dim() != 4) throwTyped(env, ErrorCode::BAD_INPUT, "Expected images of shape [B, 3, H, W]");
  });
}

Napi::Value NativeTrainer::SaveModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto st = Alive(env);
  return Queue(new SaveModelWorker(env, "dfdet.trainer.saveModel", this, Value(), st), [&](SaveModelWorker& w) {
    w.path = stringArg(env, info, 0, "path");
    if (info.Length() > 1 && info[1].IsObject()) {
      Napi::Object o = info[1].As<Napi::Object>();
      Napi::Array keys = o.GetPropertyNames();
      for (uint32_t i = 0; i < keys.Length(); i++) {
        std::string k = keys.Get(i).ToString().Utf8Value();
        w.extra[k] = o.Get(k).ToString().Utf8Value();
      }
    }
  });
}

Napi::Value NativeTrainer::SaveCheckpoint(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto st = Alive(env);
  return Queue(new SaveCheckpointWorker(env, "dfdet.trainer.saveCheckpoint", this, Value(), st), [&](SaveCheckpointWorker& w) {
    w.path = stringArg(env, info, 0, "path");
    w.meta = stringArg(env, info, 1, "meta");
  });
}

Napi::Value NativeTrainer::LoadCheckpoint(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto st = Alive(env);
  return Queue(new LoadCheckpointWorker(env, "dfdet.trainer.loadCheckpoint", this, Value(), st),
               [&](LoadCheckpointWorker& w) { w.path = stringArg(env, info, 0, "path"); });
}

Napi::Value NativeTrainer::Dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto d = Napi::Promise::Deferred::New(env);
  if (!state_) {
    d.Resolve(env.Undefined());
    return d.Promise();
  }
  disposing_ = true;
  pendingDisposals_.push_back(d);
  MaybeFinishDispose();
  return d.Promise();
}

}  // namespace

Napi::Function initTrainerClass(Napi::Env env) {
  auto* te = new TrainerEnv();
  env.AddCleanupHook([te] { delete te; });
  Napi::Function ctor = NativeTrainer::Define(env, te);
  te->constructor = Napi::Persistent(ctor);
  return ctor;
}

}  // namespace dfdet
