#pragma once

#include "common.h"

namespace dfdet {

Napi::Value BuildModule(const Napi::CallbackInfo& info);

}  // namespace dfdet
