// Who writes the bf16 weight copies a CUDA model reads in place of its f32 masters
// (model/gpt.h: every matrix weight with bf16 activations, the embedding when it is bf16).
//
// SPEEDRUN_WEIGHT_COPIES (environment variable, read once, at the first model constructed):
//   convert (or unset): the model converts every copy in a separate pass at the first
//     forward after the parameters changed (ops::convert over each copy) — the old path,
//     the default until the other has passed on a GPU;
//   optimizer: the model lends each copy to the optimizers (Model::weight_copy) and the
//     device optimizers' update kernels (kernels/optim/*.cu) write it next to the f32
//     master; the separate conversion then runs only for the copies no kernel wrote
//     (initialization, checkpoint and model-file loads, the parameters AdamW all-gathers
//     over several ranks, the matrices other ranks own). Never run on a GPU yet.
// Any other value is refused (UserError naming the variable: exit status 1).
//
// SPEEDRUN_CHECK_COPIES=1 (debug; unset or 0: off): at every forward the model compares
// each copy an optimizer wrote with the conversion of its master, bitwise, and throws
// std::logic_error naming the first parameter that differs (a stale or wrong copy would
// otherwise train silently wrong). It synchronizes and copies to the host: slow.
#pragma once

#include <optional>
#include <string>

namespace speedrun::model {

enum class WeightCopyWriter { convert, optimizer };

// Parses a value of SPEEDRUN_WEIGHT_COPIES (nullopt: unset). Throws UserError naming the
// variable and the accepted values for anything else.
WeightCopyWriter parse_weight_copy_writer(const std::optional<std::string>& value);
// Parses a value of SPEEDRUN_CHECK_COPIES: 1 on, 0 or unset off; UserError otherwise.
bool parse_check_copies(const std::optional<std::string>& value);

// The environment's choices (each read once; later changes of the environment are ignored).
WeightCopyWriter weight_copy_writer();
bool check_weight_copies();
// Overrides the environment's choice (tests); returns the previous weight_copy_writer().
// Applies to models constructed afterwards.
WeightCopyWriter set_weight_copy_writer(WeightCopyWriter writer);
// Overrides SPEEDRUN_CHECK_COPIES (tests); returns the previous value.
bool set_check_weight_copies(bool on);

}  // namespace speedrun::model
