#pragma once

#include "common.h"

namespace dfdet {

Napi::Function initModelClass(Napi::Env env, AddonData* data);

}  // namespace dfdet
