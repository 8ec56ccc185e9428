// The inputs of `speedrun tokenize`: what the command line names, expanded into a list of
// sources, and the documents read from them in order.
//
// An argument is
//   - a text file: one document;
//   - with a JSON Lines field (--jsonl-field F), a .jsonl file: one document per line,
//     the string value of key F of the line's object (blank lines are skipped);
//   - a directory: every file below it (recursively, hidden entries skipped, directory
//     links not followed) whose path relative to it matches a glob, in sorted order;
//   - "@LIST": the paths in the file LIST, one per line (blank lines skipped; relative to
//     the current directory, as `find ... > LIST` writes them), each of them a file or a
//     directory as above;
//   - "-": standard input (once), one document, or JSON Lines with a field.
// Every file is checked before anything is read (it exists, is a regular file, can be
// opened, is not given twice) so that no input is left out after shards exist.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace speedrun::data {

struct CorpusInput {
  std::filesystem::path path;  // empty for standard input
  std::string name;            // for messages: the path as found, or "standard input"
  int64_t bytes = -1;          // the file's size; -1 for standard input (unknown)
  bool is_stdin() const { return path.empty(); }
};

struct CorpusOptions {
  std::string jsonl_field;  // empty: every input is plain text, one document
  std::string glob;         // for directories; empty: "*.jsonl" with a field, else "*.txt"
};

// The glob used for directories under `options`.
std::string directory_glob(const CorpusOptions& options);

// Expands the arguments in order. Throws UserError naming the argument (a missing file or
// list, a directory without a matching file, a special file, a file given twice, "-"
// twice, a .jsonl file without --jsonl-field).
std::vector<CorpusInput> expand_corpus_inputs(const std::vector<std::string>& args, const CorpusOptions& options);

// Reads the documents of the inputs in order, a batch at a time.
class DocumentReader {
 public:
  DocumentReader(std::vector<CorpusInput> inputs, std::string jsonl_field);
  ~DocumentReader();
  DocumentReader(const DocumentReader&) = delete;
  DocumentReader& operator=(const DocumentReader&) = delete;

  // Appends whole documents to `out` until at least `batch_bytes` bytes of input were
  // read or the inputs end (a single larger document is read whole). Returns false when
  // nothing was left. Throws UserError naming the file (and line, for JSON Lines) that
  // cannot be read or parsed or lacks the field.
  bool next_batch(std::vector<std::string>& out, size_t batch_bytes);

  int64_t bytes_read() const { return bytes_read_; }  // input bytes consumed so far
  int64_t documents() const { return documents_; }
  const std::vector<CorpusInput>& inputs() const { return inputs_; }

 private:
  bool open_next();                       // the next input; false at the end
  bool read_jsonl_document(std::string& out);  // false at the end of the current input

  std::vector<CorpusInput> inputs_;
  std::string field_;
  size_t next_ = 0;
  std::FILE* file_ = nullptr;  // the current JSON Lines input
  const CorpusInput* current_ = nullptr;
  int64_t line_ = 0;
  char* line_buffer_ = nullptr;
  size_t line_capacity_ = 0;
  int64_t bytes_read_ = 0;
  int64_t documents_ = 0;
};

}  // namespace speedrun::data
