// The pixel kernels of preprocess() on the CPU: the warp, Pillow's two resampling passes and the
// transposes between them. The arithmetic is the JS reference's (lib/faces/align.ts warpAffine,
// lib/media/resample.ts resizeRgb), so the bytes are the same; only the memory layout and the
// instructions differ:
// - the warp writes its crop transposed (column after column), so that Pillow's horizontal pass
//   reads whole rows, as its vertical pass does: both passes are then one loop over contiguous
//   bytes (acc[j] += row[j] * k) that the compiler vectorises, in exact int32 arithmetic;
// - on x86-64 CPUs with AVX2 a clone of each kernel built for AVX2 runs (chosen at run time, so
//   the binary still runs on any x86-64); the warp's AVX2 clone blends four pixels at a time in
//   vectors of doubles, its AVX-512 clone eight, with the reference's products and sums in the
//   same order (no FMA: the targets do not add it, and the file is built with -ffp-contract=off).
#include "preprocess_kernels.h"

#include <algorithm>
#include <cmath>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(_MSC_VER)
#define DFDET_X86_CLONES 1
#include <immintrin.h>
#endif

namespace dfdet {

namespace {

constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);

// floor() of a double well inside the int64 range, without a libm call (exact).
inline int64_t floorInt(double v) {
  const int64_t t = static_cast<int64_t>(v);
  return t > v ? t - 1 : t;
}

// Pillow's clip8: sums fit in int32 (weights sum to 2^22, values are below 256), as in Pillow.
// min(max(v >> 22, 0), 255) is the same function, in a form that vectorises.
inline uint8_t clip8(int32_t v) {
  const int32_t s = v >> kPrecisionBits;
  return static_cast<uint8_t>(s < 0 ? 0 : s > 255 ? 255 : s);
}

// The inverse of the image->crop matrix, as lib/faces/align.ts invertAffine.
struct Inverse {
  double ia, ib, ic, id, ie, iF;
  explicit Inverse(const double* m) {
    const double det = m[0] * m[4] - m[1] * m[3];
    ia = m[4] / det, ib = -m[1] / det, id = -m[3] / det, ie = m[0] / det;
    ic = -(ia * m[2] + ib * m[5]), iF = -(id * m[2] + ie * m[5]);
  }
};

// One output pixel of the warp at source position (fx, fy), as warpAffine.
inline void warpPixel(const uint8_t* src, int64_t W, int64_t H, double fx, double fy, uint8_t* o) {
  if (!(fx > -1 && fy > -1 && fx < static_cast<double>(W) && fy < static_cast<double>(H))) {
    o[0] = o[1] = o[2] = 0;
    return;
  }
  const int64_t row = W * 3;
  const int64_t x0 = floorInt(fx), y0 = floorInt(fy);
  const double tx = fx - static_cast<double>(x0), ty = fy - static_cast<double>(y0);
  const double w00 = (1 - tx) * (1 - ty), w01 = tx * (1 - ty), w10 = (1 - tx) * ty, w11 = tx * ty;
  const uint8_t* p = src + y0 * row + x0 * 3;
  if (x0 >= 0 && y0 >= 0 && x0 + 1 < W && y0 + 1 < H) {
    for (int c = 0; c < 3; c++)
      o[c] = static_cast<uint8_t>(w00 * p[c] + w01 * p[3 + c] + w10 * p[row + c] + w11 * p[row + 3 + c] + 0.5);
    return;
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

// Source position of crop pixel (x, y): ia * x + ib * y + ic with the reference's products and
// sums (a + b == b + a in IEEE arithmetic, so the loop order is free).
void warpScalar(const uint8_t* src, int64_t W, int64_t H, const Inverse& v, int64_t S, uint8_t* out) {
  for (int64_t x = 0; x < S; x++) {
    const double ax = v.ia * static_cast<double>(x), dx = v.id * static_cast<double>(x);
    uint8_t* o = out + x * S * 3;
    for (int64_t y = 0; y < S; y++, o += 3)
      warpPixel(src, W, H, ax + v.ib * static_cast<double>(y) + v.ic, dx + v.ie * static_cast<double>(y) + v.iF, o);
  }
}

// One Pillow pass over rows: output row i (position from + i) = clip8 of the 2^22-weighted sum of
// input rows first - base .. + count (rows `stride` bytes apart, `len` bytes used).
#if defined(__GNUC__) || defined(__clang__)
__attribute__((always_inline))
#endif
inline void passBody(const uint8_t* in, int64_t stride, int64_t len, const Coeffs& c, int64_t from, int64_t n, int64_t base, int32_t* acc,
                     uint8_t* out) {
  for (int64_t i = 0; i < n; i++) {
    const int64_t o = from + i;
    const int32_t* k = &c.k[o * c.ksize];
    const uint8_t* r = in + (c.first[o] - base) * stride;
    for (int64_t j = 0; j < len; j++) acc[j] = kHalf;
    for (int64_t t = 0; t < c.count[o]; t++, r += stride) {
      const int32_t w = k[t];
      for (int64_t j = 0; j < len; j++) acc[j] += r[j] * w;
    }
    uint8_t* d = out + i * len;
    for (int64_t j = 0; j < len; j++) d[j] = clip8(acc[j]);
  }
}

void passBase(const uint8_t* in, int64_t stride, int64_t len, const Coeffs& c, int64_t from, int64_t n, int64_t base, int32_t* acc, uint8_t* out) {
  passBody(in, stride, len, c, from, n, base, acc, out);
}

// out[(col * rows + row) * 3 + ch] = in[(row * cols + col) * 3 + ch], in tiles that stay in cache.
#if defined(__GNUC__) || defined(__clang__)
__attribute__((always_inline))
#endif
inline void transposeBody(const uint8_t* in, int64_t rows, int64_t cols, uint8_t* out) {
  constexpr int64_t kTile = 32;
  for (int64_t r0 = 0; r0 < rows; r0 += kTile)
    for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
      const int64_t r1 = std::min(rows, r0 + kTile), c1 = std::min(cols, c0 + kTile);
      for (int64_t c = c0; c < c1; c++)
        for (int64_t r = r0; r < r1; r++) {
          const uint8_t* s = in + (r * cols + c) * 3;
          uint8_t* d = out + (c * rows + r) * 3;
          d[0] = s[0], d[1] = s[1], d[2] = s[2];
        }
    }
}

void transposeBase(const uint8_t* in, int64_t rows, int64_t cols, uint8_t* out) { transposeBody(in, rows, cols, out); }

#ifdef DFDET_X86_CLONES

// GCC vectorises the tiles' 3-byte moves with AVX2 (~2.5x faster than the SSE2 build).
__attribute__((target("avx2"))) void transposeAvx2(const uint8_t* in, int64_t rows, int64_t cols, uint8_t* out) {
  transposeBody(in, rows, cols, out);
}

__attribute__((target("avx2"))) void passAvx2(const uint8_t* in, int64_t stride, int64_t len, const Coeffs& c, int64_t from, int64_t n, int64_t base,
                                              int32_t* acc, uint8_t* out) {
  passBody(in, stride, len, c, from, n, base, acc, out);
}

// Bytes `shift` / 8 of four 64-bit lanes as four doubles (exact: 2^52 + v - 2^52).
__attribute__((target("avx2"))) inline __m256d byteAt(__m256i g, int shift) {
  const __m256i magic = _mm256_set1_epi64x(0x4330000000000000LL);
  const __m256i v = _mm256_and_si256(_mm256_srli_epi64(g, shift), _mm256_set1_epi64x(0xff));
  return _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(v, magic)), _mm256_castsi256_pd(magic));
}

// The warp, four pixels of a crop column at a time where all four lie inside (x0 + 2 < W: the
// 8-byte loads stay inside the image), each lane the reference's expressions in its order.
// Other pixels take warpPixel.
__attribute__((target("avx2"))) void warpAvx2(const uint8_t* src, int64_t W, int64_t H, const Inverse& v, int64_t S, uint8_t* out) {
  const int64_t row = W * 3;
  const bool small = W * H * 3 < (int64_t(1) << 31) - 64;  // byte offsets fit int32
  const __m256d one = _mm256_set1_pd(1.0), half = _mm256_set1_pd(0.5), zero = _mm256_setzero_pd();
  const __m256d wLim = _mm256_set1_pd(static_cast<double>(W - 2)), hLim = _mm256_set1_pd(static_cast<double>(H - 1));
  const __m256d ib = _mm256_set1_pd(v.ib), ie = _mm256_set1_pd(v.ie), ic = _mm256_set1_pd(v.ic), iF = _mm256_set1_pd(v.iF);
  const __m256d step = _mm256_set_pd(3, 2, 1, 0);
  const __m128i rowV = _mm_set1_epi32(static_cast<int32_t>(row)), three = _mm_set1_epi32(3);
  // R0 G0 B0 R1 G1 B1 ... from R0 R1 R2 R3 G0 G1 G2 G3 B0 B1 B2 B3
  const __m128i interleave = _mm_setr_epi8(0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11, -1, -1, -1, -1);
  for (int64_t x = 0; x < S; x++) {
    const double ax = v.ia * static_cast<double>(x), dx = v.id * static_cast<double>(x);
    const __m256d axv = _mm256_set1_pd(ax), dxv = _mm256_set1_pd(dx);
    uint8_t* o = out + x * S * 3;
    int64_t y = 0;
    for (; small && y + 4 <= S; y += 4) {
      const __m256d yv = _mm256_add_pd(_mm256_set1_pd(static_cast<double>(y)), step);
      const __m256d fx = _mm256_add_pd(_mm256_add_pd(axv, _mm256_mul_pd(ib, yv)), ic);
      const __m256d fy = _mm256_add_pd(_mm256_add_pd(dxv, _mm256_mul_pd(ie, yv)), iF);
      const __m256d in = _mm256_and_pd(_mm256_and_pd(_mm256_cmp_pd(fx, zero, _CMP_GE_OQ), _mm256_cmp_pd(fx, wLim, _CMP_LT_OQ)),
                                       _mm256_and_pd(_mm256_cmp_pd(fy, zero, _CMP_GE_OQ), _mm256_cmp_pd(fy, hLim, _CMP_LT_OQ)));
      if (_mm256_movemask_pd(in) != 0xF) {
        alignas(32) double fxs[4], fys[4];
        _mm256_store_pd(fxs, fx);
        _mm256_store_pd(fys, fy);
        for (int i = 0; i < 4; i++) warpPixel(src, W, H, fxs[i], fys[i], o + (y + i) * 3);
        continue;
      }
      const __m128i xi = _mm256_cvttpd_epi32(fx), yi = _mm256_cvttpd_epi32(fy);  // >= 0: truncation is floor
      const __m256d tx = _mm256_sub_pd(fx, _mm256_cvtepi32_pd(xi)), ty = _mm256_sub_pd(fy, _mm256_cvtepi32_pd(yi));
      const __m256d ux = _mm256_sub_pd(one, tx), uy = _mm256_sub_pd(one, ty);
      const __m256d w00 = _mm256_mul_pd(ux, uy), w01 = _mm256_mul_pd(tx, uy), w10 = _mm256_mul_pd(ux, ty), w11 = _mm256_mul_pd(tx, ty);
      const __m128i off = _mm_add_epi32(_mm_mullo_epi32(yi, rowV), _mm_mullo_epi32(xi, three));
      // Four scalar 8-byte loads per row beat a gather here (Zen 4).
      alignas(16) int32_t offs[4];
      _mm_store_si128(reinterpret_cast<__m128i*>(offs), off);
      int64_t q[8];
      for (int i = 0; i < 4; i++) {
        __builtin_memcpy(&q[i], src + offs[i], 8);
        __builtin_memcpy(&q[4 + i], src + row + offs[i], 8);
      }
      const __m256i g0 = _mm256_set_epi64x(q[3], q[2], q[1], q[0]);
      const __m256i g1 = _mm256_set_epi64x(q[7], q[6], q[5], q[4]);
      __m128i ch[3];
      for (int c = 0; c < 3; c++) {
        __m256d s = _mm256_mul_pd(w00, byteAt(g0, 8 * c));
        s = _mm256_add_pd(s, _mm256_mul_pd(w01, byteAt(g0, 24 + 8 * c)));
        s = _mm256_add_pd(s, _mm256_mul_pd(w10, byteAt(g1, 8 * c)));
        s = _mm256_add_pd(s, _mm256_mul_pd(w11, byteAt(g1, 24 + 8 * c)));
        ch[c] = _mm256_cvttpd_epi32(_mm256_add_pd(s, half));  // >= 0: truncation is floor
      }
      const __m128i planar = _mm_packus_epi16(_mm_packus_epi32(ch[0], ch[1]), _mm_packus_epi32(ch[2], ch[2]));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o + y * 3), _mm_shuffle_epi8(planar, interleave));  // 12 bytes + 4 rewritten later
    }
    for (; y < S; y++) {
      warpPixel(src, W, H, ax + v.ib * static_cast<double>(y) + v.ic, dx + v.ie * static_cast<double>(y) + v.iF, o + y * 3);
    }
  }
}

// AVX-512 with the byte permutes of VBMI (Ice Lake, Zen 4 and later). GCC 12's AVX-512 headers
// warn about their own _mm512_undefined_* values under -Wall: a known false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define DFDET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi")))

// The 8 bytes at base + o[i] for i = 0..7, as the eight 64-bit lanes of a vector.
DFDET_AVX512 inline __m512i rows8(const uint8_t* base, const int32_t* o) {
  const auto pair = [base](int32_t a, int32_t b) {
    const __m128i lo = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(base + a));
    return _mm_castpd_si128(_mm_loadh_pd(_mm_castsi128_pd(lo), reinterpret_cast<const double*>(base + b)));
  };
  const __m256i a = _mm256_inserti128_si256(_mm256_castsi128_si256(pair(o[0], o[1])), pair(o[2], o[3]), 1);
  const __m256i b = _mm256_inserti128_si256(_mm256_castsi128_si256(pair(o[4], o[5])), pair(o[6], o[7]), 1);
  return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}

// Bytes `shift` / 8 of eight 64-bit lanes as eight doubles.
DFDET_AVX512 inline __m512d byte8(__m512i g, int shift) {
  return _mm512_cvtepi64_pd(_mm512_and_si512(_mm512_srli_epi64(g, shift), _mm512_set1_epi64(0xff)));
}

// warpAvx2 with eight pixels at a time; the three channels' bytes go back to RGB order with one
// VBMI permute and a masked 24-byte store.
DFDET_AVX512 void warpAvx512(const uint8_t* src, int64_t W, int64_t H, const Inverse& v, int64_t S, uint8_t* out) {
  const int64_t row = W * 3;
  const bool small = W * H * 3 < (int64_t(1) << 31) - 64;
  const __m512d one = _mm512_set1_pd(1.0), half = _mm512_set1_pd(0.5), zero = _mm512_setzero_pd();
  const __m512d wLim = _mm512_set1_pd(static_cast<double>(W - 2)), hLim = _mm512_set1_pd(static_cast<double>(H - 1));
  const __m512d ib = _mm512_set1_pd(v.ib), ie = _mm512_set1_pd(v.ie), ic = _mm512_set1_pd(v.ic), iF = _mm512_set1_pd(v.iF);
  const __m512d step = _mm512_set_pd(7, 6, 5, 4, 3, 2, 1, 0);
  const __m256i rowV = _mm256_set1_epi32(static_cast<int32_t>(row)), three = _mm256_set1_epi32(3);
  alignas(32) uint8_t idx[32];
  for (int i = 0; i < 8; i++) idx[3 * i] = i, idx[3 * i + 1] = 8 + i, idx[3 * i + 2] = 16 + i;
  for (int i = 24; i < 32; i++) idx[i] = 0;
  const __m256i interleave = _mm256_load_si256(reinterpret_cast<const __m256i*>(idx));
  for (int64_t x = 0; x < S; x++) {
    const double ax = v.ia * static_cast<double>(x), dx = v.id * static_cast<double>(x);
    const __m512d axv = _mm512_set1_pd(ax), dxv = _mm512_set1_pd(dx);
    uint8_t* o = out + x * S * 3;
    int64_t y = 0;
    for (; small && y + 8 <= S; y += 8) {
      const __m512d yv = _mm512_add_pd(_mm512_set1_pd(static_cast<double>(y)), step);
      const __m512d fx = _mm512_add_pd(_mm512_add_pd(axv, _mm512_mul_pd(ib, yv)), ic);
      const __m512d fy = _mm512_add_pd(_mm512_add_pd(dxv, _mm512_mul_pd(ie, yv)), iF);
      const __mmask8 in = _mm512_cmp_pd_mask(fx, zero, _CMP_GE_OQ) & _mm512_cmp_pd_mask(fx, wLim, _CMP_LT_OQ) &
                          _mm512_cmp_pd_mask(fy, zero, _CMP_GE_OQ) & _mm512_cmp_pd_mask(fy, hLim, _CMP_LT_OQ);
      if (in != 0xFF) {
        alignas(64) double fxs[8], fys[8];
        _mm512_store_pd(fxs, fx);
        _mm512_store_pd(fys, fy);
        for (int i = 0; i < 8; i++) warpPixel(src, W, H, fxs[i], fys[i], o + (y + i) * 3);
        continue;
      }
      const __m256i xi = _mm512_cvttpd_epi32(fx), yi = _mm512_cvttpd_epi32(fy);
      const __m512d tx = _mm512_sub_pd(fx, _mm512_cvtepi32_pd(xi)), ty = _mm512_sub_pd(fy, _mm512_cvtepi32_pd(yi));
      const __m512d ux = _mm512_sub_pd(one, tx), uy = _mm512_sub_pd(one, ty);
      const __m512d w00 = _mm512_mul_pd(ux, uy), w01 = _mm512_mul_pd(tx, uy), w10 = _mm512_mul_pd(ux, ty), w11 = _mm512_mul_pd(tx, ty);
      const __m256i off = _mm256_add_epi32(_mm256_mullo_epi32(yi, rowV), _mm256_mullo_epi32(xi, three));
      alignas(32) int32_t offs[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(offs), off);
      const __m512i g0 = rows8(src, offs), g1 = rows8(src + row, offs);
      __m128i ch[3];
      for (int c = 0; c < 3; c++) {
        __m512d s = _mm512_mul_pd(w00, byte8(g0, 8 * c));
        s = _mm512_add_pd(s, _mm512_mul_pd(w01, byte8(g0, 24 + 8 * c)));
        s = _mm512_add_pd(s, _mm512_mul_pd(w10, byte8(g1, 8 * c)));
        s = _mm512_add_pd(s, _mm512_mul_pd(w11, byte8(g1, 24 + 8 * c)));
        ch[c] = _mm256_cvtepi32_epi8(_mm512_cvttpd_epi32(_mm512_add_pd(s, half)));  // 8 bytes
      }
      const __m256i planar = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi64(ch[0], ch[1])), ch[2], 1);
      _mm256_mask_storeu_epi8(o + y * 3, 0xFFFFFF, _mm256_permutexvar_epi8(interleave, planar));
    }
    for (; y < S; y++) warpPixel(src, W, H, ax + v.ib * static_cast<double>(y) + v.ic, dx + v.ie * static_cast<double>(y) + v.iF, o + y * 3);
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif

int detectLevel() {
#ifdef DFDET_X86_CLONES
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2")) return kBaseline;
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vbmi");
  return avx512 ? kAvx512 : kAvx2;
#else
  return kBaseline;
#endif
}

void pass(const uint8_t* in, int64_t stride, int64_t len, const Coeffs& c, int64_t from, int64_t n, int64_t base, int32_t* acc, uint8_t* out,
          int level) {
#ifdef DFDET_X86_CLONES
  if (level >= kAvx2) return passAvx2(in, stride, len, c, from, n, base, acc, out);
#endif
  passBase(in, stride, len, c, from, n, base, acc, out);
}

void transpose3(const uint8_t* in, int64_t rows, int64_t cols, uint8_t* out, int level) {
#ifdef DFDET_X86_CLONES
  if (level >= kAvx2) return transposeAvx2(in, rows, cols, out);
#endif
  transposeBase(in, rows, cols, out);
}

}  // namespace

int cpuLevel() {
  static const int level = detectLevel();
  return level;
}

void warpTransposed(const uint8_t* src, int64_t W, int64_t H, const double* m, int64_t S, uint8_t* out, int level) {
  const Inverse v(m);
#ifdef DFDET_X86_CLONES
  if (level >= kAvx512) return warpAvx512(src, W, H, v, S, out);
  if (level >= kAvx2) return warpAvx2(src, W, H, v, S, out);
#endif
  warpScalar(src, W, H, v, S, out);
}

void transposeRgb(const uint8_t* src, int64_t W, int64_t rowFirst, int64_t rows, uint8_t* out, int level) {
  transpose3(src + rowFirst * W * 3, rows, W, out, level);
}

void resizeTransposed(const uint8_t* t, int64_t stride, int64_t rowFirst, int64_t rows, const Coeffs& hz, const Coeffs& vt, int64_t left,
                      int64_t top, int64_t S, ResizeScratch& s, uint8_t* out, int level) {
  const int64_t len = rows * 3;
  s.a.resize(S * len);
  s.b.resize(S * len);
  s.acc.resize(std::max(len, S * 3));
  // Pillow's horizontal pass: crop columns left.. of the resized width, as rows of `a`.
  pass(t, stride, len, hz, left, S, 0, s.acc.data(), s.a.data(), level);
  transpose3(s.a.data(), S, rows, s.b.data(), level);
  // Its vertical pass: rows top.. of the resized height.
  pass(s.b.data(), S * 3, S * 3, vt, top, S, rowFirst, s.acc.data(), out, level);
}

}  // namespace dfdet
