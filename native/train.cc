// NativeTrainer: the N-API face of the training engine (trainer.h). One optimisation step per
// call, on the libuv thread pool: JS owns the loop, the schedule (each step's learning rate), the
// randomness (slerp partners and weights) and cancellation between steps.
#include "train.h"

#include "tensors.h"
#include "trainer.h"

#include <cmath>

namespace dfdet {

namespace {

// Per-environment constructor reference (no static N-API references): freed by a cleanup hook.
struct TrainerEnv {
  Napi::FunctionReference constructor;
};

class NativeTrainer;

// A worker of the engine: TrainError becomes a rejection with its code, anything else is
// classified by PromiseWorker (fallback RUNTIME_ERROR, or MODEL_LOAD_FAILED for create).
class EngineWorker : public PromiseWorker {
 public:
  using PromiseWorker::PromiseWorker;

 protected:
  virtual void Work() = 0;
  void Run() override {
    try {
      Work();
    } catch (const TrainError& e) {
      Fail(e.code, e.what());
    }
  }
};

class CreateWorker : public EngineWorker {
 public:
  CreateWorker(Napi::Env env, TrainerEnv* te) : EngineWorker(env, "dfdet.trainer.create", ErrorCode::MODEL_LOAD_FAILED), te_(te) {}
  TrainerConfig config;

 protected:
  void Work() override { state_ = createTrainer(config); }
  Napi::Value Resolve(Napi::Env env) override {
    auto* data = env.GetInstanceData<AddonData>();
    if (data && data->closing) throw makeError(env, ErrorCode::DISPOSED, "the JavaScript environment is shutting down");
    auto holder = std::make_unique<std::shared_ptr<TrainerState>>(state_);
    return te_->constructor.New({Napi::External<std::shared_ptr<TrainerState>>::New(env, holder.get())});
  }

 private:
  TrainerEnv* te_;
  std::shared_ptr<TrainerState> state_;
};

// A worker that uses a trainer: keeps its state and its JS wrapper alive until settled.
class TrainerWorker : public EngineWorker {
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
  Napi::Value Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), gate_.disposing() || !state_); }

  void Finished() { gate_.finished(Env(), [this] { state_.reset(); }); }

 private:
  std::shared_ptr<TrainerState> Alive(Napi::Env env) {
    if (gate_.disposing() || !state_) throwTyped(env, ErrorCode::DISPOSED, "the trainer was disposed");
    return state_;
  }
  // Queues a worker made on this trainer; `configure` reads the call's arguments into it.
  template <typename W, typename C>
  Napi::Value Queue(const Napi::CallbackInfo& info, const char* name, C&& configure) {
    auto st = Alive(info.Env());
    Napi::Promise p = queueWorker(new W(info.Env(), name, this, Value(), st), std::forward<C>(configure));
    gate_.started();  // the worker cannot complete before this returns: completion runs on this thread
    return p;
  }
  std::shared_ptr<TrainerState> state_;
  DisposeGate gate_;
};

TrainerWorker::TrainerWorker(Napi::Env env, const char* name, NativeTrainer* owner, Napi::Object ownerObj, std::shared_ptr<TrainerState> st)
    : EngineWorker(env, name, ErrorCode::RUNTIME_ERROR), state_(std::move(st)), owner_(owner) {
  ownerPin_ = Napi::Persistent(ownerObj);
}

void TrainerWorker::Settled() { owner_->Finished(); }

class StepWorker : public TrainerWorker {
 public:
  using TrainerWorker::TrainerWorker;
  PinnedTensor images, labels, partner, weight;
  double lr = 1e-3;

 protected:
  void Work() override { result_ = trainStep(*state_, images.tensor, labels.tensor, partner.tensor, weight.tensor, lr); }
  Napi::Value Resolve(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("loss", result_.loss);
    o.Set("ce", result_.ce);
    o.Set("alignment", result_.alignment);
    o.Set("uniformity", result_.uniformity);
    o.Set("gradNorm", result_.gradNorm);
    o.Set("step", static_cast<double>(result_.step));
    o.Set("logits", toJs(env, prepareOutputTensor(result_.logits, {})));
    return o;
  }

 private:
  StepResult result_;
};

class EvalWorker : public TrainerWorker {
 public:
  using TrainerWorker::TrainerWorker;
  PinnedTensor images;

 protected:
  void Work() override { logits_ = evaluateLogits(*state_, images.tensor); }
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
  void Work() override { saveTrainedModel(*state_, path, extra); }
  Napi::Value Resolve(Napi::Env env) override { return env.Undefined(); }
};

class SaveCheckpointWorker : public TrainerWorker {
 public:
  using TrainerWorker::TrainerWorker;
  std::string path, meta;

 protected:
  void Work() override { saveTrainerCheckpoint(*state_, path, meta); }
  Napi::Value Resolve(Napi::Env env) override { return env.Undefined(); }
};

class LoadCheckpointWorker : public TrainerWorker {
 public:
  using TrainerWorker::TrainerWorker;
  std::string path;

 protected:
  void Work() override { meta_ = loadTrainerCheckpoint(*state_, path); }
  Napi::Value Resolve(Napi::Env env) override { return Napi::String::New(env, meta_); }

 private:
  std::string meta_;
};

double numberOr(const Napi::Object& o, const char* key, double fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
}

std::string stringOr(Napi::Env env, const Napi::Object& o, const char* key, const std::string& fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsString()) throwTyped(env, ErrorCode::BAD_INPUT, std::string("Expected a string for ") + key);
  return v.As<Napi::String>().Utf8Value();
}

std::string stringArg(Napi::Env env, const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString()) throwTyped(env, ErrorCode::BAD_INPUT, std::string("Expected a string for ") + what);
  return info[i].As<Napi::String>().Utf8Value();
}

PinnedTensor imagesArg(Napi::Env env, const Napi::CallbackInfo& info) {
  if (info.Length() < 1) throwTyped(env, ErrorCode::BAD_INPUT, "Expected images of shape [B, 3, H, W]");
  PinnedTensor t = wrapTensor(env, info[0], "images");
  if (t.tensor.dim() != 4 || t.tensor.size(0) < 1) throwTyped(env, ErrorCode::BAD_INPUT, "Expected images of shape [B, 3, H, W]");
  return t;
}

Napi::Value NativeTrainer::Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* te = static_cast<TrainerEnv*>(info.Data());
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject())
    throwTyped(env, ErrorCode::BAD_INPUT, "Expected create(path: string, options: object)");
  Napi::Object o = info[1].As<Napi::Object>();
  return queueWorker(new CreateWorker(env, te), [&](CreateWorker& w) {
    TrainerConfig& c = w.config;
    c.path = info[0].As<Napi::String>().Utf8Value();
    c.device = stringOr(env, o, "device", "cpu");
    const std::string dtype = stringOr(env, o, "dtype", "float32");
    if (dtype != "float32" && dtype != "bfloat16") throwTyped(env, ErrorCode::BAD_INPUT, "Expected 'float32' or 'bfloat16' for dtype but received '" + dtype + "'");
    c.bf16 = dtype == "bfloat16";
    c.trainable = stringOr(env, o, "trainable", "");
    if (c.trainable.empty()) throwTyped(env, ErrorCode::BAD_INPUT, "Expected a regular expression for trainable");
    c.decay = stringOr(env, o, "decay", "");
    c.weightDecay = numberOr(o, "weightDecay", 0);
    c.beta1 = numberOr(o, "beta1", 0.9);
    c.beta2 = numberOr(o, "beta2", 0.999);
    c.eps = numberOr(o, "eps", 1e-8);
    c.labelSmoothing = numberOr(o, "labelSmoothing", 0);
    c.alignment = numberOr(o, "alignment", 0);
    c.uniformity = numberOr(o, "uniformity", 0);
    c.gradClip = numberOr(o, "gradClip", 0);
    for (double v : {c.weightDecay, c.beta1, c.beta2, c.eps, c.labelSmoothing, c.alignment, c.uniformity, c.gradClip})
      if (!std::isfinite(v) || v < 0) throwTyped(env, ErrorCode::BAD_INPUT, "Expected finite non-negative numbers for the trainer's hyper-parameters");
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
  return Queue<StepWorker>(info, "dfdet.trainer.step", [&](StepWorker& w) {
    if (info.Length() < 3 || !info[2].IsObject()) throwTyped(env, ErrorCode::BAD_INPUT, "Expected step(images, labels, options)");
    w.images = imagesArg(env, info);
    w.labels = wrapTensor(env, info[1], "labels");
    Napi::Object o = info[2].As<Napi::Object>();
    w.lr = numberOr(o, "lr", NAN);
    if (!(w.lr >= 0) || !std::isfinite(w.lr)) throwTyped(env, ErrorCode::BAD_INPUT, "Expected a finite non-negative number for lr");
    Napi::Value p = o.Get("slerpPartner");
    if (!p.IsUndefined() && !p.IsNull()) {
      w.partner = wrapTensor(env, p, "slerpPartner");
      w.weight = wrapTensor(env, o.Get("slerpWeight"), "slerpWeight");
    }
  });
}

Napi::Value NativeTrainer::Evaluate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Queue<EvalWorker>(info, "dfdet.trainer.evaluate", [&](EvalWorker& w) { w.images = imagesArg(env, info); });
}

Napi::Value NativeTrainer::SaveModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Queue<SaveModelWorker>(info, "dfdet.trainer.saveModel", [&](SaveModelWorker& w) {
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
  return Queue<SaveCheckpointWorker>(info, "dfdet.trainer.saveCheckpoint", [&](SaveCheckpointWorker& w) {
    w.path = stringArg(env, info, 0, "path");
    w.meta = stringArg(env, info, 1, "meta");
  });
}

Napi::Value NativeTrainer::LoadCheckpoint(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Queue<LoadCheckpointWorker>(info, "dfdet.trainer.loadCheckpoint", [&](LoadCheckpointWorker& w) { w.path = stringArg(env, info, 0, "path"); });
}

Napi::Value NativeTrainer::Dispose(const Napi::CallbackInfo& info) {
  return gate_.dispose(info.Env(), !state_, [this] { state_.reset(); });
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
