// The CPU path of preprocess(): the JS reference's arithmetic (see preprocess.cc), crops in
// parallel, with the pixel kernels of preprocess_kernels.cc. Per batch: the warped crops' resize
// coefficients once; per worker thread: its scratch buffers once; per crop: the warp (written
// transposed), the two resize passes, and the normalisation straight into the batch tensor.
// Crops are spread over as many threads as libtorch's intra-op count (plain std::threads:
// at::parallel_for is serial in code built without -fopenmp, as this addon is).
#include "preprocess.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <thread>

namespace dfdet {

namespace {

// The coefficients of one axis resized from `in` to `out` (Pillow skips a pass that keeps the size).
Coeffs axisCoeffs(int64_t in, int64_t out, bool bicubic) { return in == out ? identityCoeffs(in) : pillowCoeffs(in, out, bicubic); }

// One resize to S x S: the coefficients, the crop offsets and the source rows it reads.
struct ResizePlan {
  Coeffs hz, vt;
  int64_t left = 0, top = 0, rowFirst = 0, rows = 0;
};

// transformers' get_resize_output_image_size(default_to_square=False), then the centre crop.
ResizePlan planResize(int64_t W, int64_t H, int64_t S, bool bicubic) {
  ResizePlan p;
  const int64_t rw = W <= H ? S : (S * W) / H;
  const int64_t rh = W <= H ? (S * H) / W : S;
  p.hz = axisCoeffs(W, rw, bicubic);
  p.vt = axisCoeffs(H, rh, bicubic);
  p.left = (rw - S) / 2;
  p.top = (rh - S) / 2;
  p.rowFirst = p.vt.first[p.top];
  p.rows = p.vt.first[p.top + S - 1] + p.vt.count[p.top + S - 1] - p.rowFirst;
  return p;
}

// HWC uint8 -> the three CHW float planes of crop n, through numpy's float32 lookup table.
void normalise(const uint8_t* rgb, int64_t plane, const float* lut, float* out) {
  float* r = out;
  float* g = out + plane;
  float* b = out + 2 * plane;
  for (int64_t i = 0; i < plane; i++, rgb += 3) {
    r[i] = lut[rgb[0]];
    g[i] = lut[256 + rgb[1]];
    b[i] = lut[512 + rgb[2]];
  }
}

}  // namespace

at::Tensor preprocessLoops(const PreprocessRequest& r) {
  const int64_t N = static_cast<int64_t>(r.imageOf.size());
  const int64_t S = r.size, C = r.cropSize, plane = S * S;
  at::Tensor out = at::empty({N, 3, S, S}, torch::kFloat);
  float* dst = out.data_ptr<float>();
  const std::vector<float> lut = normLut(r);
  const ResizePlan cropPlan = planResize(C, C, S, r.bicubic);  // every warped crop is C x C
  const int level = std::min(r.level, cpuLevel());
  // Crops go to whichever thread is free (an atomic counter): a core that other processes share
  // then takes fewer crops instead of holding up the batch.
  std::atomic<int64_t> next{0};
  auto work = [&]() {
    std::vector<uint8_t> crop(C * C * 3 + kWarpPad), whole, res(plane * 3);
    ResizeScratch scratch;
    for (int64_t n = next++; n < N; n = next++) {
      const at::Tensor& img = r.images[r.imageOf[n]].tensor;
      const uint8_t* src = img.data_ptr<uint8_t>();
      const int64_t W = img.size(1), H = img.size(0);
      if (!std::isnan(r.matrices[n * 6])) {
        const ResizePlan& p = cropPlan;
        warpTransposed(src, W, H, &r.matrices[n * 6], C, crop.data(), level);
        resizeTransposed(crop.data() + p.rowFirst * 3, C * 3, p.rowFirst, p.rows, p.hz, p.vt, p.left, p.top, S, scratch, res.data(), level);
      } else {
        const ResizePlan p = planResize(W, H, S, r.bicubic);
        whole.resize(W * p.rows * 3);
        transposeRgb(src, W, p.rowFirst, p.rows, whole.data(), level);
        resizeTransposed(whole.data(), p.rows * 3, p.rowFirst, p.rows, p.hz, p.vt, p.left, p.top, S, scratch, res.data(), level);
      }
      normalise(res.data(), plane, lut.data(), dst + n * 3 * plane);
    }
  };
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), N));
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(threads);
  auto guarded = [&](int64_t t) {
    try {
      work();
    } catch (...) {
      errors[t] = std::current_exception();
      next = N;  // the others stop at their next crop
    }
  };
  for (int64_t t = 1; t < threads; t++) {
    try {
      pool.emplace_back(guarded, t);
    } catch (...) {
      break;  // no thread to spare: the threads running share all crops
    }
  }
  guarded(0);
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  return out;
}

}  // namespace dfdet
