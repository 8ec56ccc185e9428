#include "data/tokenizer_files.h"

#include <cstdlib>
#include <string>
#include <system_error>
#include <vector>

#include "core/error.h"
#include "core/files.h"

namespace speedrun::data {

namespace fs = std::filesystem;

namespace {

std::vector<fs::path> candidate_directories() {
  std::vector<fs::path> dirs;
  if (const char* data_dir = std::getenv("SPEEDRUN_DATA_DIR"); data_dir && *data_dir)
    dirs.push_back(fs::path(data_dir) / "gpt2");
  for (fs::path& dir : project_file_candidates(fs::path("data") / "gpt2")) dirs.push_back(std::move(dir));
  return dirs;
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

}  // namespace

TokenizerFiles find_default_tokenizer_files() {
  std::string tried;
  for (const fs::path& dir : candidate_directories()) {
    TokenizerFiles files{dir / "encoder.json", dir / "vocab.bpe"};
    if (is_file(files.encoder_json) && is_file(files.vocab_bpe)) return files;
    tried += "\n  " + dir.string();
  }
  throw UserError("cannot find the GPT-2 tokenizer files (encoder.json and vocab.bpe); looked in:" + tried +
                  "\nset SPEEDRUN_DATA_DIR to a directory whose gpt2/ holds them, or pass --encoder and --vocab");
}

}  // namespace speedrun::data
