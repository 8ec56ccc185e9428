// Turns train.device / --device ("auto", "cpu", "cuda") into a Device, with a clear
// error when CUDA is asked for and cannot be had.
#pragma once

#include <string>

#include "core/tensor.h"

namespace speedrun::train {

// "auto" is CUDA when this binary has the CUDA backend and a device is visible, else the
// CPU; "cuda" without either is a UserError saying which is missing.
Device resolve_device(const std::string& requested);

}  // namespace speedrun::train
