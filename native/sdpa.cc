// A compatible aten::scaled_dot_product_attention for libtorch 1.13 (torch 2.x traces call it).
// Same schema as torch 2.5+ (a superset of 2.0-2.4's: enable_gqa has a default), implemented as
// the reference math path: softmax(q k^T * scale + mask) v.
#include "sdpa.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>
#include <torch/script.h>

#include <cmath>
#include <limits>
#include <mutex>

namespace dfdet {

namespace {

at::Tensor sdpa(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                const c10::optional<at::Tensor>& attnMask, double dropoutP, bool isCausal,
                c10::optional<double> scale, bool enableGqa) {
  const int64_t L = query.size(-2), S = key.size(-2);
  const double s = scale.has_value() ? *scale : 1.0 / std::sqrt(static_cast<double>(query.size(-1)));
  at::Tensor k = key, v = value;
  if (enableGqa && query.dim() >= 3 && key.size(-3) != query.size(-3)) {
    const int64_t rep = query.size(-3) / key.size(-3);
    k = k.repeat_interleave(rep, -3);
    v = v.repeat_interleave(rep, -3);
  }
  at::Tensor attn = at::matmul(query, k.transpose(-2, -1)) * s;
  const double negInf = -std::numeric_limits<double>::infinity();
  if (isCausal) {
    at::Tensor keep = at::ones({L, S}, query.options().dtype(at::kBool)).tril();
    attn = attn.masked_fill(keep.logical_not(), negInf);
  }
  if (attnMask.has_value() && attnMask->defined()) {
    if (attnMask->scalar_type() == at::kBool) attn = attn.masked_fill(attnMask->logical_not(), negInf);
    else attn = attn + *attnMask;
  }
  attn = at::softmax(attn, -1);
  if (dropoutP > 0.0) attn = at::dropout(attn, dropoutP, /*train=*/true);
  return at::matmul(attn, v);
}

bool gActive = false;

}  // namespace

bool ensureSdpaOp() {
  static std::once_flag once;
  std::call_once(once, [] {
    auto existing = c10::Dispatcher::singleton().findSchema({"aten::scaled_dot_product_attention", ""});
    if (existing.has_value()) return;
    // Lives for the whole process: the op must stay registered while any model may call it.
    auto* lib = new torch::Library(torch::Library::FRAGMENT, "aten", c10::nullopt, __FILE__, __LINE__);
    lib->def(
        "scaled_dot_product_attention(Tensor query, Tensor key, Tensor value, Tensor? attn_mask=None, "
        "float dropout_p=0.0, bool is_causal=False, *, float? scale=None, bool enable_gqa=False) -> Tensor");
    lib->impl("scaled_dot_product_attention", torch::dispatch(c10::DispatchKey::CompositeImplicitAutograd, TORCH_FN(sdpa)));
    gActive = true;
  });
  return gActive;
}

}  // namespace dfdet
