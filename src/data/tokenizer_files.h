// Where the GPT-2 tokenizer files (encoder.json, vocab.bpe) are found by default.
#pragma once

#include <filesystem>

namespace speedrun::data {

struct TokenizerFiles {
  std::filesystem::path encoder_json;
  std::filesystem::path vocab_bpe;
};

// The first of these directories that holds both encoder.json and vocab.bpe:
//   1. $SPEEDRUN_DATA_DIR/gpt2                       (when the variable is set)
//   2. <directory of the running executable>/../data/gpt2   (build tree, install)
//   3. <source tree>/data/gpt2                       (the checkout this was built from)
// Throws UserError listing every place tried when none has both files.
TokenizerFiles find_default_tokenizer_files();

}  // namespace speedrun::data
