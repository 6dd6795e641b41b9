// The CPU path of preprocess(): the JS reference's loops in C++, crops in parallel. Same
// arithmetic as lib/faces/align.ts warpAffine and lib/media/resample.ts resizeRgb (see
// preprocess.cc); crops are spread over as many threads as libtorch's intra-op count (plain
// std::threads: at::parallel_for is serial in code built without -fopenmp, as this addon is).
#include "preprocess.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <thread>

namespace dfdet {

namespace {

constexpr int kPrecisionBits = 22;
constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);

// floor() of a double well inside the int64 range, without a libm call (exact).
inline int64_t floorInt(double v) {
  const int64_t t = static_cast<int64_t>(v);
  return t > v ? t - 1 : t;
}

// Pillow's sums fit in int32 (weights sum to 2^22, values are below 256), as in Pillow itself.
inline uint8_t clip8(int32_t v) {
  if (v >= (256 << kPrecisionBits)) return 255;
  if (v <= 0) return 0;
  return static_cast<uint8_t>(v >> kPrecisionBits);
}

// cv2.warpAffine(INTER_LINEAR, BORDER_CONSTANT 0) of `src` by image->crop matrix `m`, as warpAffine.
void warp(const uint8_t* src, int64_t W, int64_t H, const double* m, int64_t S, uint8_t* out) {
  const double det = m[0] * m[4] - m[1] * m[3];
  const double ia = m[4] / det, ib = -m[1] / det, id = -m[3] / det, ie = m[0] / det;
  const double ic = -(ia * m[2] + ib * m[5]), iF = -(id * m[2] + ie * m[5]);
  const int64_t row = W * 3;
  const double Wd = static_cast<double>(W), Hd = static_cast<double>(H);
  for (int64_t y = 0; y < S; y++) {
    // The same products and sums, in the same order, as ia * x + ib * y + ic (bit for bit).
    const double by = ib * static_cast<double>(y), ey = ie * static_cast<double>(y);
    for (int64_t x = 0; x < S; x++) {
      uint8_t* o = out + (y * S + x) * 3;
      const double fx = ia * static_cast<double>(x) + by + ic;
      const double fy = id * static_cast<double>(x) + ey + iF;
      if (!(fx > -1 && fy > -1 && fx < Wd && fy < Hd)) {
        o[0] = o[1] = o[2] = 0;
        continue;
      }
      const int64_t x0 = floorInt(fx), y0 = floorInt(fy);
      const double tx = fx - static_cast<double>(x0), ty = fy - static_cast<double>(y0);
      const double w00 = (1 - tx) * (1 - ty), w01 = tx * (1 - ty), w10 = (1 - tx) * ty, w11 = tx * ty;
      const uint8_t* p = src + y0 * row + x0 * 3;
      if (x0 >= 0 && y0 >= 0 && x0 + 1 < W && y0 + 1 < H) {
        // All four neighbours inside (the common case): no per-channel tests.
        for (int c = 0; c < 3; c++)
          o[c] = static_cast<uint8_t>(w00 * p[c] + w01 * p[3 + c] + w10 * p[row + c] + w11 * p[row + 3 + c] + 0.5);
        continue;
      }
      const bool in00 = x0 >= 0 && y0 >= 0, in01 = x0 + 1 < W && y0 >= 0;
      const bool in10 = x0 >= 0 && y0 + 1 < H, in11 = x0 + 1 < W && y0 + 1 < H;
      for (int c = 0; c < 3; c++) {
        double v = 0;
        if (in00) v += w00 * p[c];
        if (in01) v += w01 * p[3 + c];
        if (in10) v += w10 * p[row + c];
        if (in11) v += w11 * p[row + 3 + c];
        o[c] = static_cast<uint8_t>(v + 0.5);  // v >= 0: truncation is floor, as Math.round
      }
    }
  }
}

// resizeRgb(src, rw, rh, filter, {left, top, S, S}) into `dst` (S * S * 3 bytes).
void resize(const uint8_t* src, int64_t W, int64_t H, int64_t rw, int64_t rh, int64_t left, int64_t top, int64_t S, bool bicubic,
            std::vector<uint8_t>& tmp, uint8_t* dst) {
  const bool needH = rw != W, needV = rh != H;
  int64_t rowFirst = top, rowEnd = top + S;
  Coeffs vert;
  if (needV) {
    vert = pillowCoeffs(H, rh, bicubic);
    rowFirst = vert.first[top];
    rowEnd = vert.first[top + S - 1] + vert.count[top + S - 1];
  }
  const int64_t rows = rowEnd - rowFirst, rowLen = S * 3;
  uint8_t* t = needV ? (tmp.resize(rows * rowLen), tmp.data()) : dst;
  if (needH) {
    Coeffs hz = pillowCoeffs(W, rw, bicubic);
    for (int64_t r = 0; r < rows; r++) {
      const uint8_t* line = src + (rowFirst + r) * W * 3;
      uint8_t* o = t + r * rowLen;
      for (int64_t xx = left; xx < left + S; xx++) {
        const int32_t* k = &hz.k[xx * hz.ksize];
        const uint8_t* p = line + hz.first[xx] * 3;
        int32_t s0 = kHalf, s1 = kHalf, s2 = kHalf;
        for (int64_t x = 0; x < hz.count[xx]; x++, p += 3) {
          s0 += p[0] * k[x];
          s1 += p[1] * k[x];
          s2 += p[2] * k[x];
        }
        *o++ = clip8(s0);
        *o++ = clip8(s1);
        *o++ = clip8(s2);
      }
    }
  } else {
    for (int64_t r = 0; r < rows; r++) std::copy_n(src + ((rowFirst + r) * W + left) * 3, rowLen, t + r * rowLen);
  }
  if (!needV) return;
  std::vector<int32_t> acc(rowLen);
  for (int64_t yy = top; yy < top + S; yy++) {
    const int32_t* k = &vert.k[yy * vert.ksize];
    const int64_t ymin = vert.first[yy] - rowFirst;
    std::fill(acc.begin(), acc.end(), kHalf);
    for (int64_t y = 0; y < vert.count[yy]; y++) {
      const uint8_t* line = t + (ymin + y) * rowLen;
      for (int64_t j = 0; j < rowLen; j++) acc[j] += line[j] * k[y];
    }
    uint8_t* o = dst + (yy - top) * rowLen;
    for (int64_t j = 0; j < rowLen; j++) o[j] = clip8(acc[j]);
  }
}

}  // namespace

at::Tensor preprocessLoops(const PreprocessRequest& r) {
  const int64_t N = static_cast<int64_t>(r.imageOf.size());
  const int64_t S = r.size, C = r.cropSize, plane = S * S;
  at::Tensor out = at::empty({N, 3, S, S}, torch::kFloat);
  float* dst = out.data_ptr<float>();
  const std::vector<float> lut = normLut(r);
  auto work = [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> crop(C * C * 3), tmp, res(plane * 3);
    for (int64_t n = begin; n < end; n++) {
      const at::Tensor& img = r.images[r.imageOf[n]].tensor;
      const uint8_t* src = img.data_ptr<uint8_t>();
      int64_t W = img.size(1), H = img.size(0);
      if (!std::isnan(r.matrices[n * 6])) {
        warp(src, W, H, &r.matrices[n * 6], C, crop.data());
        src = crop.data();
        W = H = C;
      }
      // transformers' get_resize_output_image_size(default_to_square=False), then the centre crop.
      const int64_t rw = W <= H ? S : (S * W) / H;
      const int64_t rh = W <= H ? (S * H) / W : S;
      resize(src, W, H, rw, rh, (rw - S) / 2, (rh - S) / 2, S, r.bicubic, tmp, res.data());
      float* o = dst + n * 3 * plane;
      for (int64_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) o[c * plane + i] = lut[c * 256 + res[i * 3 + c]];
    }
  };
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), N));
  const int64_t per = (N + threads - 1) / threads;
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(threads);
  for (int64_t t = 1; t < threads; t++)
    pool.emplace_back([&, t] {
      try {
        work(t * per, std::min(N, (t + 1) * per));
      } catch (...) {
        errors[t] = std::current_exception();
      }
    });
  try {
    work(0, std::min(N, per));
  } catch (...) {
    errors[0] = std::current_exception();
  }
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  return out;
}

}  // namespace dfdet
