// The training engine behind NativeTrainer: LN-tuning with libtorch autograd on a dfdet
// TorchScript detector (its `pooled` and `head` methods), the paper's slerp feature augmentation,
// cross-entropy and GenD's alignment/uniformity losses, AdamW, clipping, bf16 autocast, checkpoints.
#include "trainer.h"

#include <ATen/autocast_mode.h>
#include <torch/cuda.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/serialize.h>
#include <torch/version.h>

#include <cmath>
#include <regex>

namespace dfdet {

namespace {

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

// F.normalize: rows divided by their L2 norm (at least 1e-12).
at::Tensor normalizeRows(const at::Tensor& a) { return a / a.norm(2, -1, true).clamp_min(1e-12); }

// Spherical interpolation between rows, on the unit sphere (the paper's feature augmentation).
at::Tensor slerp(const at::Tensor& a, const at::Tensor& b, const at::Tensor& t) {
  at::Tensor an = normalizeRows(a);
  at::Tensor bn = normalizeRows(b);
  at::Tensor theta = at::acos((an * bn).sum(-1, true).clamp(-1 + 1e-7, 1 - 1e-7));
  at::Tensor s = at::sin(theta);
  at::Tensor tt = t * theta;
  return at::sin(theta - tt) / s * an + at::sin(tt) / s * bn;
}

// Label-aware alignment (Wang & Isola 2020, as GenD uses it): mean squared distance of same-label pairs.
at::Tensor alignmentLoss(const at::Tensor& e, const at::Tensor& labels) {
  at::Tensor idx = labels.unsqueeze(1).eq(labels.unsqueeze(0)).triu(1).nonzero();
  if (idx.size(0) == 0) return at::zeros({}, e.options());
  return (e.index_select(0, idx.select(1, 0)) - e.index_select(0, idx.select(1, 1))).norm(2, 1).pow(2).mean();
}

// Uniformity (Wang & Isola 2020, t = 2): log of the mean Gaussian potential over all pairs.
at::Tensor uniformityLoss(const at::Tensor& e) {
  if (e.size(0) < 2) return at::zeros({}, e.options());
  return at::pdist(e, 2).pow(2).mul(-2.0).exp().mean().clamp_min(1e-6).log();
}

double scalar(const at::Tensor& t) { return t.detach().to(at::kDouble).cpu().item<double>(); }

// A caller's float/int tensor on the trainer's device; NaN or infinity is BAD_INPUT.
at::Tensor onDevice(const at::Tensor& t, const TrainerState& st, at::ScalarType type, const char* what) {
  if (at::isFloatingType(t.scalar_type()) && t.numel() > 0 && !at::isfinite(t).all().item<bool>())
    throw TrainError(ErrorCode::BAD_INPUT, std::string(what) + " holds NaN or infinite values");
  return t.to(st.device, type, /*non_blocking=*/false, /*copy=*/false).contiguous();
}

std::regex compile(const std::string& source) {
  try {
    return std::regex(source.empty() ? "$^" : source, std::regex::ECMAScript);
  } catch (const std::regex_error&) {
    throw TrainError(ErrorCode::BAD_INPUT, "Expected a valid regular expression but received /" + source + "/");
  }
}

// Runs `f` in eval mode without grad flags on the trained tensors, then restores training mode.
template <typename F>
void asPlainModel(TrainerState& st, F&& f) {
  st.module.eval();
  for (auto& p : st.params) p.requires_grad_(false);
  try {
    f();
  } catch (...) {
    st.module.train();
    for (auto& p : st.params) p.requires_grad_(true);
    throw;
  }
  st.module.train();
  for (auto& p : st.params) p.requires_grad_(true);
}

}  // namespace

std::shared_ptr<TrainerState> createTrainer(const TrainerConfig& c) {
  auto st = std::make_shared<TrainerState>();
  st->device = c10::Device(c.device);
  if (st->device.is_cuda() && !torch::cuda::is_available())
    throw TrainError(ErrorCode::UNSUPPORTED, "device '" + c.device + "' requested but this libtorch has no usable CUDA");
  if (!st->device.is_cpu() && !st->device.is_cuda()) throw TrainError(ErrorCode::UNSUPPORTED, "device '" + c.device + "' is not supported (use cpu, cuda or cuda:N)");
  const std::regex trainRe = compile(c.trainable), decayRe = compile(c.decay);
  st->module = torch::jit::load(c.path, st->device);
  for (const char* m : {"pooled", "head"})
    if (!st->module.find_method(m))
      throw TrainError(ErrorCode::UNSUPPORTED, std::string("the model has no '") + m + "' method: only dfdet detector files (dfdet convert / model init) can be trained");
  st->module.train();
  std::vector<at::Tensor> decayed, plain;
  std::vector<std::string> decayedNames, plainNames;
  for (const auto& p : st->module.named_parameters(/*recurse=*/true)) {
    st->allNames.push_back(p.name);
    at::Tensor t = p.value;
    const bool train = std::regex_search(p.name, trainRe);
    t.requires_grad_(train);
    if (!train) continue;
    if (t.scalar_type() != at::kFloat) throw TrainError(ErrorCode::UNSUPPORTED, "trainable parameter " + p.name + " is not float32");
    const bool wd = std::regex_search(p.name, decayRe);
    (wd ? decayed : plain).push_back(t);
    (wd ? decayedNames : plainNames).push_back(p.name);
  }
  if (decayed.empty() && plain.empty()) throw TrainError(ErrorCode::BAD_INPUT, "no parameter of the model matches /" + c.trainable + "/");
  auto opts = [&](double wd) {
    return std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(1e-3).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(wd));
  };
  // Both groups always exist (possibly empty), so checkpoints have one layout.
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decayed, opts(c.weightDecay));
  groups.emplace_back(plain, opts(0.0));
  st->optimizer = std::make_unique<torch::optim::AdamW>(groups, *opts(0.0));
  st->names = decayedNames;
  st->names.insert(st->names.end(), plainNames.begin(), plainNames.end());
  st->params = decayed;
  st->params.insert(st->params.end(), plain.begin(), plain.end());
  st->bf16 = c.bf16;
  st->labelSmoothing = c.labelSmoothing;
  st->alignment = c.alignment;
  st->uniformity = c.uniformity;
  st->gradClip = c.gradClip;
  return st;
}

StepResult trainStep(TrainerState& st, const at::Tensor& images, const at::Tensor& labels, const at::Tensor& partner,
                     const at::Tensor& weight, double lr) {
  std::lock_guard<std::mutex> lock(st.mutex);
  torch::AutoGradMode grad(true);
  const bool slerpOn = partner.defined();
  at::Tensor x = onDevice(images, st, at::kFloat, "images");
  at::Tensor y = onDevice(labels, st, at::kLong, "labels");
  at::Tensor part = slerpOn ? onDevice(partner, st, at::kLong, "slerpPartner") : at::Tensor();
  at::Tensor w = slerpOn ? onDevice(weight, st, at::kFloat, "slerpWeight") : at::Tensor();
  const int64_t b = x.size(0);
  if (y.dim() != 1 || y.size(0) != b || (y.lt(0) | y.gt(1)).any().item<bool>()) throw TrainError(ErrorCode::BAD_INPUT, "Expected one label (0 or 1) per image");
  if (slerpOn && (part.numel() != b || w.numel() != b || (part.ge(b) | part.lt(-1)).any().item<bool>()))
    throw TrainError(ErrorCode::BAD_INPUT, "Expected one slerp partner in [-1, batch) and one weight per image");
  at::Tensor logits, f;
  {
    AutocastScope autocast(st.bf16, st.device);
    f = st.module.get_method("pooled")({x}).toTensor();
    if (slerpOn) {
      f = f.to(at::kFloat);
      at::Tensor has = part.ge(0);
      at::Tensor mixed = slerp(f, f.index_select(0, at::where(has, part, at::arange(b, part.options()))), w.unsqueeze(1));
      f = at::where(has.unsqueeze(1), mixed, f);
    }
    logits = st.module.get_method("head")({f}).toTensor().to(at::kFloat);
  }
  namespace F = torch::nn::functional;
  at::Tensor ce = F::cross_entropy(logits, y, F::CrossEntropyFuncOptions().label_smoothing(st.labelSmoothing));
  at::Tensor emb = normalizeRows(f.to(at::kFloat));
  at::Tensor loss = ce, al, un;
  if (st.alignment > 0) loss = loss + st.alignment * (al = alignmentLoss(emb, y));
  if (st.uniformity > 0) loss = loss + st.uniformity * (un = uniformityLoss(emb));
  st.optimizer->zero_grad();
  loss.backward();
  StepResult r;
  // The norm before clipping (what PyTorch's clip_grad_norm_ returns); infinity never clips.
  r.gradNorm = torch::nn::utils::clip_grad_norm_(st.params, st.gradClip > 0 ? st.gradClip : INFINITY);
  for (auto& g : st.optimizer->param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
  st.optimizer->step();
  r.step = ++st.steps;
  r.loss = scalar(loss);
  r.ce = scalar(ce);
  r.alignment = al.defined() ? scalar(al) : 0;
  r.uniformity = un.defined() ? scalar(un) : 0;
  r.logits = logits.detach().to(at::kCPU).contiguous();
  return r;
}

at::Tensor evaluateLogits(TrainerState& st, const at::Tensor& images) {
  std::lock_guard<std::mutex> lock(st.mutex);
  at::Tensor x = onDevice(images, st, at::kFloat, "images");
  torch::NoGradGuard noGrad;
  at::Tensor logits;
  asPlainModel(st, [&] {
    AutocastScope autocast(st.bf16, st.device);
    at::Tensor f = st.module.get_method("pooled")({x}).toTensor();
    logits = st.module.get_method("head")({f}).toTensor().to(at::kFloat).to(at::kCPU).contiguous();
  });
  return logits;
}

void saveTrainedModel(TrainerState& st, const std::string& path, const torch::jit::ExtraFilesMap& extra) {
  std::lock_guard<std::mutex> lock(st.mutex);
  asPlainModel(st, [&] { st.module.save(path, extra); });
}

// Layout: tensors p0..pN (names in `names`), `steps`, `meta` (the caller's JSON), `optimizer`.
void saveTrainerCheckpoint(TrainerState& st, const std::string& path, const std::string& meta) {
  std::lock_guard<std::mutex> lock(st.mutex);
  torch::serialize::OutputArchive ar;
  for (size_t i = 0; i < st.params.size(); i++) ar.write("p" + std::to_string(i), st.params[i].detach().to(at::kCPU));
  ar.write("names", c10::IValue(c10::List<std::string>(st.names)));
  ar.write("steps", c10::IValue(st.steps));
  ar.write("meta", c10::IValue(meta));
  torch::serialize::OutputArchive opt;
  st.optimizer->save(opt);
  ar.write("optimizer", opt);
  ar.save_to(path);
}

std::string loadTrainerCheckpoint(TrainerState& st, const std::string& path) {
  std::lock_guard<std::mutex> lock(st.mutex);
  torch::serialize::InputArchive ar;
  ar.load_from(path, st.device);
  c10::IValue names, steps, meta;
  ar.read("names", names);
  ar.read("steps", steps);
  ar.read("meta", meta);
  auto list = names.toList();
  if (list.size() != st.names.size())
    throw TrainError(ErrorCode::BAD_INPUT, "the checkpoint holds " + std::to_string(list.size()) + " trained tensors, this trainer " + std::to_string(st.names.size()));
  std::vector<at::Tensor> loaded(st.params.size());
  for (size_t i = 0; i < st.params.size(); i++) {
    const std::string n = list.get(i).toStringRef();
    if (n != st.names[i]) throw TrainError(ErrorCode::BAD_INPUT, "the checkpoint's tensor " + std::to_string(i) + " is " + n + ", expected " + st.names[i]);
    ar.read("p" + std::to_string(i), loaded[i]);
    if (!loaded[i].sizes().equals(st.params[i].sizes())) throw TrainError(ErrorCode::BAD_INPUT, "the checkpoint's " + n + " has another shape than the model's");
  }
  torch::serialize::InputArchive opt;
  ar.read("optimizer", opt);
  {
    torch::NoGradGuard noGrad;
    for (size_t i = 0; i < st.params.size(); i++) st.params[i].copy_(loaded[i]);
  }
  st.optimizer->load(opt);
  st.steps = steps.toInt();
  return meta.toStringRef();
}

}  // namespace dfdet
