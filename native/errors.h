// The error codes the addon rejects and throws with: the one C++ list.
//
// binding.d.ts declares the same set as `NativeErrorCode` (test/native-errors.test.ts parses both
// files and compares them), and the addon exports this list as `errorCodes`, from which
// lib/native.ts maps native errors to DfdetErrors: adding a code here is the whole change on
// the C++ side. Every code must also be an `ErrorCode` of lib/errors.ts (checked by tsc).
#pragma once

#define DFDET_NATIVE_ERROR_CODES(X)                                                              \
  X(BAD_INPUT)         /* a malformed argument, tensor, spec or option; NaN inputs; no such method */ \
  X(BAD_WEIGHTS)       /* a loaded model holds NaN or infinite weights */                         \
  X(DISPOSED)          /* the model was disposed, or the JS environment is shutting down */       \
  X(MODEL_LOAD_FAILED) /* torch::jit::load failed (not TorchScript, truncated, unknown ops) */     \
  X(OUT_OF_MEMORY)     /* an allocation failed (CPU or CUDA) */                                   \
  X(RUNTIME_ERROR)     /* libtorch raised while running a method */                              \
  X(UNSUPPORTED)       /* a device or value type this build cannot handle */

namespace dfdet {

// Typed codes: native code names a code only through this enum, never as a bare string.
enum class ErrorCode {
#define DFDET_ERROR_ENUM(name) name,
  DFDET_NATIVE_ERROR_CODES(DFDET_ERROR_ENUM)
#undef DFDET_ERROR_ENUM
};

// The string JS sees as `error.code`.
inline const char* codeName(ErrorCode code) {
  switch (code) {
#define DFDET_ERROR_NAME(name) \
  case ErrorCode::name:        \
    return #name;
    DFDET_NATIVE_ERROR_CODES(DFDET_ERROR_NAME)
#undef DFDET_ERROR_NAME
  }
  return "RUNTIME_ERROR";
}

// Every code, in declaration order (exported to JS as `errorCodes`).
inline constexpr ErrorCode kAllErrorCodes[] = {
#define DFDET_ERROR_ITEM(name) ErrorCode::name,
    DFDET_NATIVE_ERROR_CODES(DFDET_ERROR_ITEM)
#undef DFDET_ERROR_ITEM
};

}  // namespace dfdet
