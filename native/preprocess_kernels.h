// The pixel kernels of preprocess() on the CPU (preprocess_kernels.cc): no libtorch, no N-API,
// so that they build and time on their own.
#pragma once

#include <cstdint>
#include <vector>

namespace dfdet {

// Pillow's PRECISION_BITS for 8-bit images: coefficients in 2^22 fixed point.
constexpr int kPrecisionBits = 22;

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for one axis: output i reads count[i]
// inputs from first[i] with 22-bit fixed-point weights k[i * ksize + j].
struct Coeffs {
  int64_t ksize = 0;
  std::vector<int64_t> first, count;
  std::vector<int32_t> k;
};
Coeffs pillowCoeffs(int64_t inSize, int64_t outSize, bool bicubic);  // pillow_coeffs.cc

// cv2.warpAffine(INTER_LINEAR, BORDER_CONSTANT 0) of the RGB image `src` (W x H) by the
// image->crop matrix `m` into an S x S crop, written TRANSPOSED: out[(x * S + y) * 3 + c] is
// crop pixel (x, y). `out` holds S * S * 3 + kWarpPad bytes (the vector path stores 16 bytes
// for 4 pixels: the last store passes the end).
// Same float64 arithmetic as lib/faces/align.ts warpAffine: the same bytes.
constexpr int64_t kWarpPad = 4;
void warpTransposed(const uint8_t* src, int64_t W, int64_t H, const double* m, int64_t S, uint8_t* out, int level);

// Rows [rowFirst, rowFirst + rows) of the RGB image `src` (W wide), transposed:
// out[(x * rows + y) * 3 + c] = src pixel (x, rowFirst + y).
void transposeRgb(const uint8_t* src, int64_t W, int64_t rowFirst, int64_t rows, uint8_t* out, int level);

// Scratch memory of resizeTransposed, reused from crop to crop.
struct ResizeScratch {
  std::vector<uint8_t> a, b;
  std::vector<int32_t> acc;
};

// Pillow's resize of an RGB image to (hz's outSize) x (vt's outSize), then the crop
// [left, left + S) x [top, top + S), as lib/media/resample.ts resizeRgb: exact integer arithmetic,
// the same bytes. The input comes transposed: source column x starts at t + x * stride and holds
// the source rows [rowFirst, rowFirst + rows) that vt's taps of the crop read. Output: S x S RGB.
void resizeTransposed(const uint8_t* t, int64_t stride, int64_t rowFirst, int64_t rows, const Coeffs& hz, const Coeffs& vt, int64_t left, int64_t top,
                      int64_t S, ResizeScratch& s, uint8_t* out, int level);

// The coefficient table of a pass that keeps the size (one tap of weight 1: exact).
Coeffs identityCoeffs(int64_t size);

// The widest clones of the kernels this CPU runs (read once): every kernel takes a `level`, at
// most this one (lower levels: for tests of every clone on one machine).
enum : int { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };
int cpuLevel();

}  // namespace dfdet
