// The device-generic path of preprocess(): every step as batched libtorch ops (CUDA runs them on
// the GPU). Same arithmetic as the JS reference: see preprocess.cc.
#include "preprocess.h"

#include <cmath>
#include <map>
#include <vector>

namespace dfdet {

namespace {

// Outputs [from, from + n) of one axis as tensors: `index` [n, ksize] (clamped input positions)
// and `weight` [n, ksize] (int32, 0 past the window).
struct Axis {
  at::Tensor index;
  at::Tensor weight;
  int64_t ksize;
};

Axis axisCoeffs(int64_t inSize, int64_t outSize, int64_t from, int64_t n, bool bicubic, c10::Device device) {
  Coeffs c = pillowCoeffs(inSize, outSize, bicubic);
  std::vector<int64_t> index(n * c.ksize);
  std::vector<int32_t> weight(n * c.ksize);
  for (int64_t i = 0; i < n; i++)
    for (int64_t x = 0; x < c.ksize; x++) {
      index[i * c.ksize + x] = std::min(c.first[from + i] + x, inSize - 1);
      weight[i * c.ksize + x] = c.k[(from + i) * c.ksize + x];
    }
  auto idx = torch::tensor(index, torch::kLong).view({n, c.ksize}).to(device);
  auto wt = torch::tensor(weight, torch::kInt).view({n, c.ksize}).to(device);
  return {idx, wt, c.ksize};
}

// One Pillow pass along `dim` of an int32 tensor of uint8 values: outputs [from, from + n).
at::Tensor resamplePass(const at::Tensor& src, int64_t dim, int64_t outSize, int64_t from, int64_t n, bool bicubic) {
  const int64_t inSize = src.size(dim);
  Axis a = axisCoeffs(inSize, outSize, from, n, bicubic, src.device());
  std::vector<int64_t> wshape(src.dim(), 1);
  wshape[dim] = n;
  at::Tensor acc = at::full({1}, 1 << (kPrecisionBits - 1), src.options());
  for (int64_t t = 0; t < a.ksize; t++) {
    at::Tensor taps = src.index_select(dim, a.index.select(1, t).contiguous());
    acc = acc + taps * a.weight.select(1, t).contiguous().view(wshape);
  }
  // clip8: sums are integers below 2^31 (weights sum to 2^22, values to 255).
  return at::floor_divide(acc, 1 << kPrecisionBits).clamp(0, 255);
}

// Pillow's resize of [M, H, W, 3] uint8 values (int32) to outW x outH, keeping only the crop
// rectangle (left, top, size, size), as resizeRgb with a crop.
at::Tensor resizeCrop(const at::Tensor& src, int64_t outW, int64_t outH, int64_t left, int64_t top, int64_t size, bool bicubic) {
  at::Tensor x = src;
  x = outW != src.size(2) ? resamplePass(x, 2, outW, left, size, bicubic) : x.narrow(2, left, size);
  x = outH != src.size(1) ? resamplePass(x, 1, outH, top, size, bicubic) : x.narrow(1, top, size);
  return x;
}

// cv2.warpAffine (bilinear, black border) of every warped crop, [K, S, S, 3] int32.
at::Tensor warpCrops(const PreprocessRequest& r, const std::vector<int64_t>& crops) {
  const int64_t K = static_cast<int64_t>(crops.size());
  const int64_t S = r.cropSize;
  auto f64 = torch::TensorOptions().dtype(torch::kDouble);
  // Every image once, flattened into one buffer; per crop its offset, width and height.
  std::vector<at::Tensor> flat;
  std::vector<int64_t> offsets(r.images.size());
  int64_t offset = 0;
  for (size_t i = 0; i < r.images.size(); i++) {
    offsets[i] = offset;
    offset += r.images[i].tensor.numel();
    flat.push_back(r.images[i].tensor.reshape({-1}));
  }
  at::Tensor all = at::cat(flat).to(r.device);
  std::vector<double> inv(K * 6), dims(K * 2);
  std::vector<int64_t> base(K);
  for (int64_t k = 0; k < K; k++) {
    const double* m = &r.matrices[crops[k] * 6];
    const double det = m[0] * m[4] - m[1] * m[3];
    const double ia = m[4] / det, ib = -m[1] / det, id = -m[3] / det, ie = m[0] / det;
    const double v[6] = {ia, ib, -(ia * m[2] + ib * m[5]), id, ie, -(id * m[2] + ie * m[5])};
    std::copy(v, v + 6, &inv[k * 6]);
    const auto& img = r.images[r.imageOf[crops[k]]].tensor;
    dims[k * 2] = static_cast<double>(img.size(1));
    dims[k * 2 + 1] = static_cast<double>(img.size(0));
    base[k] = offsets[r.imageOf[crops[k]]];
  }
  at::Tensor M = torch::tensor(inv, f64).view({K, 6, 1, 1}).to(r.device);
  at::Tensor D = torch::tensor(dims, f64).view({K, 2, 1, 1}).to(r.device);
  at::Tensor B = torch::tensor(base, torch::kLong).view({K, 1, 1}).to(r.device);
  at::Tensor xs = at::arange(S, f64.device(r.device)).view({1, 1, S});
  at::Tensor ys = at::arange(S, f64.device(r.device)).view({1, S, 1});
  at::Tensor W = D.select(1, 0), H = D.select(1, 1);
  at::Tensor fx = M.select(1, 0) * xs + M.select(1, 1) * ys + M.select(1, 2);
  at::Tensor fy = M.select(1, 3) * xs + M.select(1, 4) * ys + M.select(1, 5);
  at::Tensor inside = (fx > -1) & (fy > -1) & (fx < W) & (fy < H);
  at::Tensor x0 = fx.floor(), y0 = fy.floor();
  at::Tensor tx = fx - x0, ty = fy - y0;
  at::Tensor Wl = W.to(torch::kLong);
  at::Tensor acc = at::zeros({K, S, S, 3}, f64.device(r.device));
  at::Tensor ch = at::arange(3, torch::TensorOptions().dtype(torch::kLong).device(r.device));
  // Neighbours in the JS sum order: (0,0), (0,1), (1,0), (1,1); outside ones weigh 0 (black).
  const int dxs[4] = {0, 1, 0, 1}, dys[4] = {0, 0, 1, 1};
  for (int q = 0; q < 4; q++) {
    at::Tensor nx = x0 + dxs[q], ny = y0 + dys[q];
    at::Tensor ok = inside & (nx >= 0) & (ny >= 0) & (nx < W) & (ny < H);
    at::Tensor w = (dxs[q] ? tx : 1 - tx) * (dys[q] ? ty : 1 - ty) * ok;
    at::Tensor pix = (ny.clamp_min(0).to(torch::kLong) * Wl + nx.clamp_min(0).to(torch::kLong)) * ok;
    at::Tensor idx = (B + pix * 3).unsqueeze(-1) + ch;
    acc = acc + w.unsqueeze(-1) * all.take(idx).to(torch::kDouble);
  }
  return (acc + 0.5).floor().clamp(0, 255).to(torch::kInt);
}

}  // namespace

at::Tensor preprocessOps(const PreprocessRequest& r) {
  const int64_t N = static_cast<int64_t>(r.imageOf.size());
  const int64_t S = r.size;
  at::Tensor out = at::empty({N, S, S, 3}, torch::TensorOptions().dtype(torch::kInt).device(r.device));
  std::vector<int64_t> warped;
  std::map<int32_t, std::vector<int64_t>> whole;  // image -> its whole-image crops
  for (int64_t i = 0; i < N; i++) {
    if (std::isnan(r.matrices[i * 6])) whole[r.imageOf[i]].push_back(i);
    else warped.push_back(i);
  }
  auto resized = [&](const at::Tensor& src) {
    const int64_t w = src.size(2), h = src.size(1);
    // transformers' get_resize_output_image_size(default_to_square=False), then the centre crop.
    const int64_t rw = w <= h ? S : (S * w) / h;
    const int64_t rh = w <= h ? (S * h) / w : S;
    return resizeCrop(src, rw, rh, (rw - S) / 2, (rh - S) / 2, S, r.bicubic);
  };
  // Chunks bound the temporaries (a [chunk, 256, 224, 3] float64 tensor per step).
  const int64_t chunk = 16;
  for (size_t from = 0; from < warped.size(); from += chunk) {
    std::vector<int64_t> part(warped.begin() + from, warped.begin() + std::min(warped.size(), from + chunk));
    at::Tensor crops = warpCrops(r, part);
    at::Tensor idx = torch::tensor(part, torch::kLong).to(r.device);
    out.index_copy_(0, idx, resized(crops));
  }
  for (const auto& [image, crops] : whole) {
    at::Tensor src = r.images[image].tensor.to(r.device).to(torch::kInt).unsqueeze(0);
    at::Tensor one = resized(src);
    at::Tensor idx = torch::tensor(crops, torch::kLong).to(r.device);
    out.index_copy_(0, idx, one.expand({static_cast<int64_t>(crops.size()), S, S, 3}));
  }
  at::Tensor ch = at::arange(3, torch::TensorOptions().dtype(torch::kInt).device(r.device)) * 256;
  at::Tensor values = torch::tensor(normLut(r), torch::kFloat).to(r.device).take((out + ch).to(torch::kLong));
  return values.permute({0, 3, 1, 2}).contiguous().to(at::kCPU);
}

}  // namespace dfdet
