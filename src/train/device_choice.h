// Turns train.device / --device ("auto", "cpu", "cuda") into a Device, with a clear
// error when CUDA is asked for and cannot be had.
#pragma once

#include <string>

#include "core/tensor.h"

namespace speedrun::train {

// Whether the model and optimizers can run on CUDA in this build (the CUDA backend
// of the model lands with the kernels; until then CUDA requests are refused clearly).
bool cuda_backend_available();

Device resolve_device(const std::string& requested);

// For the model's forward and backward alone (`speedrun bench`'s model path): "cuda" is
// granted whenever this binary has CUDA and a device is visible, even while the trainer's
// CUDA backend is incomplete (cuda_backend_available()). Other requests as resolve_device.
Device resolve_model_device(const std::string& requested);

}  // namespace speedrun::train
