#include "tensors.h"

#include <cstring>

namespace dfdet {

namespace {

struct DTypeInfo {
  const char* name;
  at::ScalarType scalar;
  napi_typedarray_type array;
};

const DTypeInfo kDTypes[] = {
    {"float32", at::kFloat, napi_float32_array},   {"float64", at::kDouble, napi_float64_array},
    {"float16", at::kHalf, napi_uint16_array},     {"bfloat16", at::kBFloat16, napi_uint16_array},
    {"int8", at::kChar, napi_int8_array},          {"uint8", at::kByte, napi_uint8_array},
    {"int16", at::kShort, napi_int16_array},       {"int32", at::kInt, napi_int32_array},
    {"int64", at::kLong, napi_bigint64_array},     {"bool", at::kBool, napi_uint8_array},
};

const DTypeInfo* findDType(const std::string& name) {
  for (const auto& d : kDTypes)
    if (name == d.name) return &d;
  return nullptr;
}

const DTypeInfo* findDType(at::ScalarType t) {
  for (const auto& d : kDTypes)
    if (d.scalar == t) return &d;
  return nullptr;
}

[[noreturn]] void bad(Napi::Env env, const std::string& msg) { throwTyped(env, ErrorCode::BAD_INPUT, msg); }

std::vector<int64_t> readDims(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsArray()) bad(env, "Expected an array of integers for " + what);
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int64_t> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsNumber()) bad(env, "Expected an array of integers for " + what);
    double d = e.As<Napi::Number>().DoubleValue();
    if (d != static_cast<double>(static_cast<int64_t>(d)) || d < 0 || d > 9.0e15)
      bad(env, "Expected non-negative integers for " + what + " but received " + std::to_string(d));
    out.push_back(static_cast<int64_t>(d));
  }
  return out;
}

struct OwnedTensor {
  at::Tensor tensor;
  int64_t bytes;
};

void finalizeTensor(napi_env env, void* /*data*/, void* hint) {
  auto* owned = static_cast<OwnedTensor*>(hint);
  int64_t bytes = owned->bytes;
  delete owned;
  gLiveExternalTensors--;
  gLiveExternalBytes -= bytes;
  int64_t ignored;
  napi_adjust_external_memory(env, -bytes, &ignored);
}

}  // namespace

std::string dtypeName(at::ScalarType t) {
  const DTypeInfo* d = findDType(t);
  return d ? d->name : std::string(c10::toString(t));
}

PinnedTensor wrapTensor(Napi::Env env, const Napi::Value& value, const std::string& what) {
  if (!value.IsObject()) bad(env, "Expected a tensor object {data, shape, dtype} for " + what);
  Napi::Object obj = value.As<Napi::Object>();
  Napi::Value dataV = obj.Get("data");
  if (!dataV.IsTypedArray()) bad(env, "Expected a typed array for " + what + ".data");
  Napi::TypedArray data = dataV.As<Napi::TypedArray>();

  Napi::Value dtypeV = obj.Get("dtype");
  if (!dtypeV.IsString()) bad(env, "Expected a dtype string for " + what + ".dtype");
  std::string dtypeStr = dtypeV.As<Napi::String>().Utf8Value();
  const DTypeInfo* dt = findDType(dtypeStr);
  if (!dt) bad(env, "Expected one of float32, float64, float16, bfloat16, int8, uint8, int16, int32, int64, bool for " + what + ".dtype but received " + dtypeStr);
  if (data.TypedArrayType() != dt->array)
    bad(env, "Expected the typed array of " + what + ".data to match dtype " + dtypeStr +
                 " (float16/bfloat16: Uint16Array, int64: BigInt64Array, bool: Uint8Array)");

  std::vector<int64_t> shape = readDims(env, obj.Get("shape"), what + ".shape");
  // Overflow-checked: a wrapped product would pass the length check and make libtorch throw on
  // this thread, where nothing may throw but Napi::Error.
  int64_t numel = 1;
  for (int64_t s : shape)
    if (__builtin_mul_overflow(numel, s, &numel)) bad(env, "Expected " + what + ".shape to have fewer than 2^63 elements");
  const int64_t length = static_cast<int64_t>(data.ElementLength());

  std::vector<int64_t> strides;
  Napi::Value stridesV = obj.Get("strides");
  if (!stridesV.IsUndefined() && !stridesV.IsNull()) {
    strides = readDims(env, stridesV, what + ".strides");
    if (strides.size() != shape.size()) bad(env, "Expected " + what + ".strides to have one entry per dimension");
    int64_t maxOffset = 0;
    for (size_t i = 0; i < shape.size(); i++) {
      if (shape[i] == 0) { maxOffset = -1; break; }
      int64_t span;
      if (__builtin_mul_overflow(shape[i] - 1, strides[i], &span) || __builtin_add_overflow(maxOffset, span, &maxOffset))
        bad(env, "Expected " + what + ".strides to address the data (offset overflows)");
    }
    if (maxOffset >= length)
      bad(env, "Expected " + what + ".data to hold the strided view (needs " + std::to_string(maxOffset + 1) +
                   " elements, has " + std::to_string(length) + ")");
  } else if (numel != length) {
    bad(env, "Expected " + what + ".data to have " + std::to_string(numel) + " elements for shape but it has " +
                 std::to_string(length));
  }

  auto* base = static_cast<uint8_t*>(data.ArrayBuffer().Data()) + data.ByteOffset();
  PinnedTensor out;
  auto options = at::TensorOptions().dtype(dt->scalar).device(at::kCPU);
  out.tensor = strides.empty() ? at::from_blob(base, shape, options) : at::from_blob(base, shape, strides, options);
  out.pin = Napi::Persistent(data.As<Napi::Object>());
  out.begin = base;
  out.end = base + data.ByteLength();
  return out;
}

at::Tensor prepareOutputTensor(const at::Tensor& t0, const std::vector<std::pair<const uint8_t*, const uint8_t*>>& inputs) {
  at::Tensor t = t0.detach();
  if (t.device().type() != at::kCPU) t = t.to(at::kCPU);
  if (t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16) t = t.to(at::kFloat);
  if (!findDType(t.scalar_type())) t = t.to(at::kDouble);  // e.g. complex or quantized: no JS array
  t = t.contiguous();
  if (t.numel() > 0 && t.storage().data()) {
    // A method may return (a view of) its input: that memory belongs to JS already, so copy it.
    auto* s = static_cast<const uint8_t*>(t.storage().data());
    auto* e = s + t.storage().nbytes();
    for (const auto& in : inputs) {
      if (s < in.second && in.first < e) {
        t = t.clone();
        break;
      }
    }
  }
  return t;
}

c10::IValue prepareOutput(const c10::IValue& v, const std::vector<std::pair<const uint8_t*, const uint8_t*>>& inputs) {
  if (v.isTensor()) return prepareOutputTensor(v.toTensor(), inputs);
  if (v.isTuple()) {
    std::vector<c10::IValue> items;
    for (const auto& e : v.toTupleRef().elements()) items.push_back(prepareOutput(e, inputs));
    return c10::ivalue::Tuple::create(std::move(items));
  }
  if (v.isList()) {
    c10::impl::GenericList out(c10::AnyType::get());
    for (const c10::IValue& e : v.toListRef()) out.push_back(prepareOutput(e, inputs));
    return out;
  }
  if (v.isGenericDict()) {
    c10::impl::GenericDict out(c10::AnyType::get(), c10::AnyType::get());
    for (const auto& kv : v.toGenericDict()) out.insert(kv.key(), prepareOutput(kv.value(), inputs));
    return out;
  }
  return v;
}

static Napi::Value tensorToJs(Napi::Env env, const at::Tensor& t) {
  const DTypeInfo* dt = findDType(t.scalar_type());
  const int64_t bytes = static_cast<int64_t>(t.numel() * t.element_size());
  Napi::Object out = Napi::Object::New(env);
  Napi::Array shape = Napi::Array::New(env, t.dim());
  for (int64_t i = 0; i < t.dim(); i++) shape.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(t.size(i))));

  napi_value arrayBuffer = nullptr;
  if (bytes > 0) {
    auto* owned = new OwnedTensor{t, bytes};
    napi_status st = napi_create_external_arraybuffer(env, t.data_ptr(), static_cast<size_t>(bytes), finalizeTensor, owned, &arrayBuffer);
    if (st == napi_ok) {
      gLiveExternalTensors++;
      gLiveExternalBytes += bytes;
      int64_t ignored;
      napi_adjust_external_memory(env, bytes, &ignored);
    } else {
      // External buffers are forbidden in some runtimes (V8 sandbox): fall back to one copy.
      delete owned;
      arrayBuffer = nullptr;
    }
  }
  Napi::ArrayBuffer ab;
  if (arrayBuffer) {
    ab = Napi::ArrayBuffer(env, arrayBuffer);
  } else {
    ab = Napi::ArrayBuffer::New(env, static_cast<size_t>(bytes));
    if (bytes > 0) std::memcpy(ab.Data(), t.data_ptr(), static_cast<size_t>(bytes));
  }
  const size_t n = static_cast<size_t>(t.numel());
  Napi::Value data;
  switch (dt->array) {
    case napi_float32_array: data = Napi::Float32Array::New(env, n, ab, 0); break;
    case napi_float64_array: data = Napi::Float64Array::New(env, n, ab, 0); break;
    case napi_int8_array: data = Napi::Int8Array::New(env, n, ab, 0); break;
    case napi_uint8_array: data = Napi::Uint8Array::New(env, n, ab, 0); break;
    case napi_int16_array: data = Napi::Int16Array::New(env, n, ab, 0); break;
    case napi_uint16_array: data = Napi::Uint16Array::New(env, n, ab, 0); break;
    case napi_int32_array: data = Napi::Int32Array::New(env, n, ab, 0); break;
    case napi_bigint64_array: data = Napi::BigInt64Array::New(env, n, ab, 0); break;
    default: throwTyped(env, ErrorCode::UNSUPPORTED, "unsupported output dtype");
  }
  out.Set("data", data);
  out.Set("shape", shape);
  out.Set("dtype", Napi::String::New(env, dt->name));
  return out;
}

Napi::Value toJs(Napi::Env env, const c10::IValue& v) {
  if (v.isTensor()) return tensorToJs(env, v.toTensor());
  if (v.isNone()) return env.Null();
  if (v.isBool()) return Napi::Boolean::New(env, v.toBool());
  if (v.isInt()) return Napi::Number::New(env, static_cast<double>(v.toInt()));
  if (v.isDouble()) return Napi::Number::New(env, v.toDouble());
  if (v.isString()) return Napi::String::New(env, v.toStringRef());
  if (v.isTuple()) {
    const auto& els = v.toTupleRef().elements();
    Napi::Array a = Napi::Array::New(env, els.size());
    for (size_t i = 0; i < els.size(); i++) a.Set(static_cast<uint32_t>(i), toJs(env, els[i]));
    return a;
  }
  if (v.isList()) {
    auto list = v.toListRef();
    Napi::Array a = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); i++) a.Set(static_cast<uint32_t>(i), toJs(env, list[i]));
    return a;
  }
  if (v.isGenericDict()) {
    Napi::Object o = Napi::Object::New(env);
    for (const auto& kv : v.toGenericDict()) {
      std::string key = kv.key().isString() ? kv.key().toStringRef()
                        : kv.key().isInt()  ? std::to_string(kv.key().toInt())
                                            : kv.key().tagKind();
      o.Set(key, toJs(env, kv.value()));
    }
    return o;
  }
  throwTyped(env, ErrorCode::UNSUPPORTED, "cannot convert a TorchScript value of kind " + v.tagKind() + " to JS");
}

}  // namespace dfdet
