#pragma once

#include "common.h"

namespace dfdet {

// NativeTrainer: LayerNorm/head fine-tuning of a dfdet TorchScript detector (see binding.d.ts).
Napi::Function initTrainerClass(Napi::Env env);

}  // namespace dfdet
