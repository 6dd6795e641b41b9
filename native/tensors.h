// Conversion between JS typed arrays and torch tensors, without copies where memory allows.
#pragma once

#include "common.h"

#include <vector>

namespace dfdet {

// A JS tensor wrapped in place: `tensor` aliases the typed array's memory, `pin` keeps the typed
// array alive until the worker that uses it is destroyed (on the JS thread).
struct PinnedTensor {
  at::Tensor tensor;
  Napi::ObjectReference pin;
  const uint8_t* begin = nullptr;  // span of JS memory the tensor views
  const uint8_t* end = nullptr;
};

// Reads {data, shape, dtype, strides?}; throws a BAD_INPUT JS error when malformed.
PinnedTensor wrapTensor(Napi::Env env, const Napi::Value& value, const std::string& what);

// Makes a tensor safe to hand to JS: detached, on CPU, contiguous, float16/bfloat16 widened to
// float32, and never aliasing the given spans (JS inputs, model weights): cloned if it does.
// Runs on the worker thread.
at::Tensor prepareOutputTensor(const at::Tensor& t, const std::vector<std::pair<const uint8_t*, const uint8_t*>>& inputs);

// Recursively applies prepareOutputTensor to every tensor in an IValue (tuples, lists, dicts).
c10::IValue prepareOutput(const c10::IValue& v, const std::vector<std::pair<const uint8_t*, const uint8_t*>>& inputs);

// Converts a prepared IValue to JS; tensors become typed arrays over external ArrayBuffers that
// own the tensor (a copy only where external buffers are not allowed). JS thread only.
Napi::Value toJs(Napi::Env env, const c10::IValue& v);

std::string dtypeName(at::ScalarType t);

}  // namespace dfdet
