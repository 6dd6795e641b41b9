#pragma once

namespace dfdet {

// Registers aten::scaled_dot_product_attention when the dispatcher lacks it (libtorch < 2), so
// TorchScript files traced with torch 2.x load and run. Returns whether the shim is active.
bool ensureSdpaOp();

}  // namespace dfdet
