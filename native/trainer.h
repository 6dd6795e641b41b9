// The training engine behind NativeTrainer (no N-API here): LN-tuning of a dfdet TorchScript
// detector with libtorch autograd. Errors of the caller's input are TrainError with a code.
#pragma once

#include <torch/optim/adamw.h>
#include <torch/script.h>

#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "errors.h"

namespace dfdet {

// An error with one of the addon's codes (native/errors.h).
struct TrainError : std::runtime_error {
  TrainError(ErrorCode c, const std::string& message) : std::runtime_error(message), code(c) {}
  ErrorCode code;
};

struct TrainerConfig {
  std::string path;
  std::string device = "cpu";
  bool bf16 = false;
  std::string trainable, decay;  // ECMAScript regular expressions over parameter names
  double weightDecay = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double labelSmoothing = 0, alignment = 0, uniformity = 0, gradClip = 0;
};

struct TrainerState {
  torch::jit::Module module;
  std::mutex mutex;  // one step, evaluation or save at a time
  c10::Device device{at::kCPU};
  bool bf16 = false;  // autocast matmuls to bfloat16; weights, LayerNorms and losses stay float32
  std::vector<std::string> names;  // trainable parameters, in optimiser order
  std::vector<at::Tensor> params;
  std::vector<std::string> allNames;
  std::unique_ptr<torch::optim::AdamW> optimizer;
  double labelSmoothing = 0, alignment = 0, uniformity = 0, gradClip = 0;
  int64_t steps = 0;
};

struct StepResult {
  double loss = 0, ce = 0, alignment = 0, uniformity = 0, gradNorm = 0;
  int64_t step = 0;
  at::Tensor logits;  // [B, 2] float32 on CPU
};

// Loads the model, freezes all but the trainable parameters, builds AdamW (decay / no-decay groups).
std::shared_ptr<TrainerState> createTrainer(const TrainerConfig& config);

// One optimisation step. `partner` (int, -1 = none) and `weight` are the slerp pairs; undefined: no slerp.
StepResult trainStep(TrainerState& st, const at::Tensor& images, const at::Tensor& labels, const at::Tensor& partner,
                     const at::Tensor& weight, double lr);

// Logits [B, 2] (float32, CPU) in inference mode without gradients.
at::Tensor evaluateLogits(TrainerState& st, const at::Tensor& images);

// The current weights as a TorchScript detector (eval mode, no grad flags) with extra files.
void saveTrainedModel(TrainerState& st, const std::string& path, const torch::jit::ExtraFilesMap& extra);

// Trained tensors, optimiser state and the caller's metadata; loading checks names and shapes.
void saveTrainerCheckpoint(TrainerState& st, const std::string& path, const std::string& meta);
std::string loadTrainerCheckpoint(TrainerState& st, const std::string& path);

}  // namespace dfdet
