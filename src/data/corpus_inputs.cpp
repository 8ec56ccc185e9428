#include "data/corpus_inputs.h"

#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/error.h"
#include "core/files.h"

namespace speedrun::data {

namespace fs = std::filesystem;

std::string directory_glob(const CorpusOptions& options) {
  if (!options.glob.empty()) return options.glob;
  return options.jsonl_field.empty() ? "*.txt" : "*.jsonl";
}

namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The files below `dir` matching `glob` (against the path relative to `dir` when the glob
// holds a '/', else against the file name), sorted. Hidden files and directories (".git")
// are skipped; links to directories are not followed (no cycles), links to files are.
std::vector<fs::path> files_below(const fs::path& dir, const std::string& glob, const std::string& shown) {
  std::vector<fs::path> found;
  const bool whole_path = glob.find('/') != std::string::npos;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec), end;
  if (ec) throw UserError("tokenize: cannot read directory " + shown + ": " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) break;
    const fs::path& p = it->path();
    const std::string name = p.filename().string();
    if (!name.empty() && name[0] == '.') {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    std::error_code type_ec;
    if (it->is_directory(type_ec)) continue;
    const std::string subject = whole_path ? p.lexically_relative(dir).string() : name;
    if (::fnmatch(glob.c_str(), subject.c_str(), whole_path ? FNM_PATHNAME : 0) == 0) found.push_back(p);
  }
  // A directory that cannot be read while walking is an error, not a smaller corpus.
  if (ec) throw UserError("tokenize: cannot read below directory " + shown + ": " + ec.message());
  std::sort(found.begin(), found.end());
  return found;
}

// The paths listed in `list` (one per line).
std::vector<std::string> read_list_file(const std::string& list) {
  std::error_code ec;
  if (!fs::exists(list, ec)) throw UserError("tokenize: file list " + list + " (from @" + list + ") does not exist");
  std::istringstream in(read_text_file(list));
  std::vector<std::string> paths;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    paths.push_back(line);
  }
  if (paths.empty()) throw UserError("tokenize: file list " + list + " names no file");
  return paths;
}

}  // namespace

std::vector<CorpusInput> expand_corpus_inputs(const std::vector<std::string>& args, const CorpusOptions& options) {
  const std::string glob = directory_glob(options);
  std::vector<CorpusInput> out;
  std::map<std::pair<dev_t, ino_t>, std::string> seen;  // file identity -> first name given
  bool have_stdin = false;

  auto add_file = [&](const fs::path& path, const std::string& shown) {
    const std::string s = path.string();
    if (options.jsonl_field.empty() && (ends_with(s, ".jsonl") || ends_with(s, ".ndjson")))
      throw UserError("tokenize: input " + shown + " looks like JSON Lines: pass --jsonl-field KEY (the key holding "
                      "each document's text), or rename it if it is plain text");
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    if (!fs::exists(status)) throw UserError("tokenize: input file " + shown + " does not exist");
    if (!fs::is_regular_file(status))
      throw UserError("tokenize: input " + shown + " is not a regular file (a pipe or a device); pass text files");
    const int fd = ::open(s.c_str(), O_RDONLY);
    if (fd < 0) throw UserError("tokenize: cannot read input " + shown + ": " + errno_string(errno));
    struct stat st {};
    const int rc = ::fstat(fd, &st);
    const int err = errno;
    ::close(fd);
    if (rc != 0) throw UserError("tokenize: cannot read input " + shown + ": " + errno_string(err));
    const auto [it, fresh] = seen.emplace(std::make_pair(st.st_dev, st.st_ino), shown);
    if (!fresh)
      throw UserError("tokenize: input " + shown + " is the same file as " + it->second +
                      ", given before; it would be tokenized twice (pass it once)");
    out.push_back({path, shown, static_cast<int64_t>(st.st_size)});
  };
  auto add_path = [&](const std::string& arg, const std::string& from) {
    const std::string shown = arg + from;
    std::error_code ec;
    if (fs::is_directory(arg, ec)) {
      const std::vector<fs::path> files = files_below(arg, glob, shown);
      if (files.empty())
        throw UserError("tokenize: directory " + shown + " holds no file matching " + glob +
                        " (recursively, hidden files skipped); choose another --glob");
      spdlog::info("tokenize: {}: {} file(s) matching {}", shown, files.size(), glob);
      for (const fs::path& f : files) add_file(f, f.string());
      return;
    }
    add_file(arg, shown);
  };

  for (const std::string& arg : args) {
    if (arg == "-") {
      if (have_stdin) throw UserError("tokenize: standard input (-) is given twice; it can be read once");
      have_stdin = true;
      out.push_back({fs::path(), "standard input", -1});
    } else if (arg.size() > 1 && arg[0] == '@') {
      const std::string list = arg.substr(1);
      for (const std::string& p : read_list_file(list)) add_path(p, " (listed in " + list + ")");
    } else {
      add_path(arg, "");
    }
  }
  return out;
}

DocumentReader::DocumentReader(std::vector<CorpusInput> inputs, std::string jsonl_field)
    : inputs_(std::move(inputs)), field_(std::move(jsonl_field)) {}

DocumentReader::~DocumentReader() {
  if (file_ != nullptr && file_ != stdin) std::fclose(file_);
  std::free(line_buffer_);
}

namespace {

std::string read_all(std::FILE* f, const std::string& name) {
  std::string text;
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, f)) > 0) text.append(buffer, n);
  if (std::ferror(f)) throw UserError("tokenize: cannot read " + name + ": " + errno_string(errno));
  return text;
}

}  // namespace

bool DocumentReader::open_next() {
  if (file_ != nullptr && file_ != stdin) std::fclose(file_);
  file_ = nullptr;
  current_ = nullptr;
  if (next_ >= inputs_.size()) return false;
  current_ = &inputs_[next_++];
  line_ = 0;
  if (field_.empty()) return true;  // plain text: read whole by next_batch
  file_ = current_->is_stdin() ? stdin : std::fopen(current_->path.c_str(), "rb");
  if (file_ == nullptr) throw UserError("tokenize: cannot read input " + current_->name + ": " + errno_string(errno));
  return true;
}

bool DocumentReader::read_jsonl_document(std::string& out) {
  while (true) {
    errno = 0;
    const ssize_t n = ::getline(&line_buffer_, &line_capacity_, file_);
    if (n < 0) {
      if (std::ferror(file_)) throw UserError("tokenize: cannot read " + current_->name + ": " + errno_string(errno));
      return false;
    }
    ++line_;
    bytes_read_ += n;
    const std::string_view line(line_buffer_, static_cast<size_t>(n));
    if (line.find_first_not_of(" \t\r\n") == std::string_view::npos) continue;  // a blank line
    const std::string where = current_->name + ":" + std::to_string(line_);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      std::string what = e.what();
      if (const size_t p = what.rfind(": "); p != std::string::npos) what = what.substr(p + 2);
      throw UserError("tokenize: " + where + ": malformed JSON Lines record: " + what);
    }
    if (!j.is_object()) throw UserError("tokenize: " + where + ": expected a JSON object on each line, got " + j.dump().substr(0, 40));
    const auto it = j.find(field_);
    if (it == j.end()) {
      std::string keys;
      for (const auto& item : j.items()) keys += (keys.empty() ? "" : ", ") + item.key();
      throw UserError("tokenize: " + where + ": no key \"" + field_ + "\" (--jsonl-field) in this record; its keys: " +
                      (keys.empty() ? "none" : keys));
    }
    if (!it->is_string())
      throw UserError("tokenize: " + where + ": key \"" + field_ + "\" holds " + std::string(it->type_name()) +
                      ", expected the document's text as a string");
    out = it->get<std::string>();
    return true;
  }
}

bool DocumentReader::next_batch(std::vector<std::string>& out, size_t batch_bytes) {
  int64_t batch = 0;
  bool any = false;
  while (batch < static_cast<int64_t>(batch_bytes)) {
    if (current_ == nullptr && !open_next()) break;
    if (field_.empty()) {
      const CorpusInput& in = *current_;
      std::string text = in.is_stdin() ? read_all(stdin, in.name) : read_text_file(in.path);
      if (text.empty()) spdlog::warn("tokenize: input {} is empty: its document is the <|endoftext|> token alone", in.name);
      batch += static_cast<int64_t>(text.size());
      bytes_read_ += static_cast<int64_t>(text.size());
      out.push_back(std::move(text));
      ++documents_;
      any = true;
      current_ = nullptr;  // one document per text input
      continue;
    }
    const int64_t before = bytes_read_;
    std::string doc;
    if (!read_jsonl_document(doc)) {
      open_next();  // this input is done
      if (current_ == nullptr) break;
      continue;
    }
    batch += bytes_read_ - before;
    out.push_back(std::move(doc));
    ++documents_;
    any = true;
  }
  return any;
}

}  // namespace speedrun::data
