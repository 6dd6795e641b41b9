// Pillow's resampling coefficients (libImaging/Resample.c precompute_coeffs and
// normalize_coeffs_8bpc), as lib/media/resample.ts computes them: the same float64 expressions,
// so the same 22-bit integers. Built like preprocess_kernels.cc: no precompiled header, no FMA
// contraction (CMakeLists.txt).
#include "preprocess_kernels.h"

#include <cmath>

namespace dfdet {

namespace {

double bicubicFilter(double x) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double bilinearFilter(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

}  // namespace

Coeffs pillowCoeffs(int64_t inSize, int64_t outSize, bool bicubic) {
  const double baseSupport = bicubic ? 2.0 : 1.0;
  const double scale = static_cast<double>(inSize) / static_cast<double>(outSize);
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = baseSupport * filterscale;
  const double ss = 1.0 / filterscale;
  Coeffs c;
  c.ksize = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  c.first.resize(outSize);
  c.count.resize(outSize);
  c.k.assign(outSize * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (int64_t xx = 0; xx < outSize; xx++) {
    const double center = (xx + 0.5) * scale;
    int64_t xmin = static_cast<int64_t>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int64_t xmax = static_cast<int64_t>(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    double ww = 0.0;
    for (int64_t x = 0; x < xmax; x++) {
      w[x] = bicubic ? bicubicFilter((x + xmin - center + 0.5) * ss) : bilinearFilter((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (int64_t x = 0; x < xmax; x++) {
      const double v = ww != 0.0 ? w[x] / ww : w[x];
      const double f = v * (1 << kPrecisionBits);
      c.k[xx * c.ksize + x] = static_cast<int32_t>(v < 0 ? std::trunc(-0.5 + f) : std::trunc(0.5 + f));
    }
    c.first[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

Coeffs identityCoeffs(int64_t size) {
  Coeffs c;
  c.ksize = 1;
  c.count.assign(size, 1);
  c.k.assign(size, 1 << kPrecisionBits);
  c.first.resize(size);
  for (int64_t i = 0; i < size; i++) c.first[i] = i;
  return c;
}

}  // namespace dfdet
