// Batched preprocessing: face crops (affine warp), Pillow-exact resize, CLIP normalisation.
//
// The reference is the JS path (lib/faces/align.ts warpAffine, lib/media/resample.ts resizeRgb,
// lib/media/transform.ts clipTransform); both native paths keep its arithmetic, so they give the
// same bytes:
// - the warp samples in float64 with the same weights and sum order, rounds half up to uint8;
// - the resize uses Pillow's 22-bit fixed-point coefficients and integer sums, clipping to uint8
//   between the horizontal and vertical passes;
// - normalisation reads a float32 lookup table built as numpy's float32 arithmetic does.
// On the CPU vectorised loops run crops in parallel (preprocess_cpu.cc, preprocess_kernels.cc);
// on other devices the same steps run as batched libtorch ops (preprocess_ops.cc). Both use
// Pillow's coefficients from pillow_coeffs.cc.
#include "preprocess.h"

#include "device.h"
#include "tensors.h"

#include <cmath>
#include <limits>

namespace dfdet {

// numpy's float32 normalisation as a [3 * 256] lookup table (lib/media/transform.ts normLut).
std::vector<float> normLut(const PreprocessRequest& r) {
  std::vector<float> lut(3 * 256);
  for (int c = 0; c < 3; c++) {
    const float m = static_cast<float>(r.mean[c]);
    const float s = static_cast<float>(r.stdev[c]);
    for (int v = 0; v < 256; v++) {
      const float x = static_cast<float>(v * (1.0 / 255));
      const float d = x - m;
      lut[c * 256 + v] = d / s;
    }
  }
  return lut;
}

namespace {

class PreprocessWorker : public PromiseWorker {
 public:
  explicit PreprocessWorker(Napi::Env env) : PromiseWorker(env, "dfdet.preprocess", ErrorCode::RUNTIME_ERROR) {}
  PreprocessRequest request;

 protected:
  void Run() override {
    c10::InferenceMode guard;
    at::Tensor t = request.device.is_cpu() && !request.useOps ? preprocessLoops(request) : preprocessOps(request);
    result_ = prepareOutputTensor(t, {});
  }
  Napi::Value Resolve(Napi::Env env) override { return toJs(env, c10::IValue(result_)); }
  void Settled() override { result_ = at::Tensor(); }

 private:
  at::Tensor result_;
};

[[noreturn]] void bad(Napi::Env env, const std::string& msg) { throwTyped(env, ErrorCode::BAD_INPUT, msg); }

int64_t readInt(Napi::Env env, const Napi::Object& o, const char* key, int64_t lo, int64_t hi) {
  Napi::Value v = o.Get(key);
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : std::numeric_limits<double>::quiet_NaN();
  if (!(d >= lo && d <= hi) || d != std::floor(d))
    bad(env, std::string("Expected an integer between ") + std::to_string(lo) + " and " + std::to_string(hi) + " for " + key);
  return static_cast<int64_t>(d);
}

void readTriple(Napi::Env env, const Napi::Object& o, const char* key, double* out, bool positive) {
  Napi::Value v = o.Get(key);
  if (!v.IsArray() || v.As<Napi::Array>().Length() != 3) bad(env, std::string("Expected an array of 3 numbers for ") + key);
  for (uint32_t i = 0; i < 3; i++) {
    Napi::Value e = v.As<Napi::Array>().Get(i);
    double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : std::numeric_limits<double>::quiet_NaN();
    if (!std::isfinite(d) || (positive && !(d > 0))) bad(env, std::string("Expected finite") + (positive ? " positive" : "") + " numbers for " + key);
    out[i] = d;
  }
}

}  // namespace

Napi::Value Preprocess(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) bad(env, "Expected a preprocess request object");
  Napi::Object o = info[0].As<Napi::Object>();
  return queueWorker(new PreprocessWorker(env), [&](PreprocessWorker& w) {
    PreprocessRequest& r = w.request;
    Napi::Value images = o.Get("images");
    if (!images.IsArray()) bad(env, "Expected an array of uint8 [H, W, 3] tensors for images");
    Napi::Array a = images.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      PinnedTensor t = wrapTensor(env, a.Get(i), "images[" + std::to_string(i) + "]");
      const auto& x = t.tensor;
      if (x.scalar_type() != at::kByte || x.dim() != 3 || x.size(2) != 3 || x.size(0) < 1 || x.size(1) < 1)
        bad(env, "Expected a uint8 [H, W, 3] tensor for images[" + std::to_string(i) + "]");
      if (!x.is_contiguous()) t.tensor = x.contiguous();
      r.images.push_back(std::move(t));
    }
    Napi::Value imageOf = o.Get("imageOf");
    Napi::Value matrices = o.Get("matrices");
    if (!imageOf.IsTypedArray() || imageOf.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
      bad(env, "Expected an Int32Array for imageOf");
    if (!matrices.IsTypedArray() || matrices.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
      bad(env, "Expected a Float64Array for matrices");
    Napi::Int32Array io = imageOf.As<Napi::Int32Array>();
    Napi::Float64Array mo = matrices.As<Napi::Float64Array>();
    if (mo.ElementLength() != io.ElementLength() * 6) bad(env, "Expected 6 matrix values per crop");
    for (size_t i = 0; i < io.ElementLength(); i++) {
      if (io[i] < 0 || static_cast<size_t>(io[i]) >= r.images.size()) bad(env, "Expected an image index for imageOf[" + std::to_string(i) + "]");
      r.imageOf.push_back(io[i]);
    }
    for (size_t i = 0; i < mo.ElementLength(); i++) r.matrices.push_back(mo[i]);
    for (size_t k = 0; k < io.ElementLength(); k++) {
      const double* m = &r.matrices[k * 6];
      if (std::isnan(m[0])) continue;
      bool finite = true;
      for (int j = 0; j < 6; j++) finite = finite && std::isfinite(m[j]);
      if (!finite || !(std::abs(m[0] * m[4] - m[1] * m[3]) > 1e-15)) bad(env, "Expected a finite, invertible affine matrix for crop " + std::to_string(k));
    }
    r.cropSize = readInt(env, o, "cropSize", 1, 4096);
    r.size = readInt(env, o, "size", 1, 8192);
    readTriple(env, o, "mean", r.mean, false);
    readTriple(env, o, "std", r.stdev, true);
    Napi::Value interp = o.Get("interpolation");
    std::string f = interp.IsString() ? interp.As<Napi::String>().Utf8Value() : "bicubic";
    if (f != "bicubic" && f != "bilinear") bad(env, "Expected one of 'bicubic', 'bilinear' for interpolation but received '" + f + "'");
    r.bicubic = f == "bicubic";
    Napi::Value dev = o.Get("device");
    r.device = parseDeviceOrThrow(env, dev.IsString() ? dev.As<Napi::String>().Utf8Value() : "cpu");
    Napi::Value kernel = o.Get("kernel");
    const std::string k = kernel.IsString() ? kernel.As<Napi::String>().Utf8Value() : "loops";
    if (k != "loops" && k != "avx2" && k != "baseline" && k != "ops")
      bad(env, "Expected one of 'loops', 'avx2', 'baseline', 'ops' for kernel but received '" + k + "'");
    r.useOps = k == "ops";
    r.level = k == "baseline" ? kBaseline : k == "avx2" ? kAvx2 : kAvx512;
  });
}

}  // namespace dfdet
