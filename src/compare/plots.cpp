#include "compare/plots.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <system_error>

#include "core/files.h"

namespace speedrun::compare {

namespace fs = std::filesystem;

namespace {

// The script's exit status when matplotlib cannot be imported.
constexpr int kNoMatplotlib = 3;

std::vector<fs::path> script_candidates(const std::string& name) {
  std::vector<fs::path> out;
  // SPEEDRUN_PLOT_SCRIPT names plot_compare.py; its siblings (plot_runs.py) are beside it.
  if (const char* s = std::getenv("SPEEDRUN_PLOT_SCRIPT"); s && *s)
    out.push_back(name == "plot_compare.py" ? fs::path(s) : fs::path(s).parent_path() / name);
  for (fs::path& p : project_file_candidates(fs::path("scripts") / name)) out.push_back(std::move(p));
  return out;
}

// Debian's interpreter has python3-matplotlib; a `python3` first on PATH (a virtualenv,
// pyenv) often does not.
std::string python_interpreter() {
  if (const char* p = std::getenv("SPEEDRUN_PYTHON"); p && *p) return p;
  std::error_code ec;
  if (fs::exists("/usr/bin/python3", ec)) return "/usr/bin/python3";
  return "python3";
}

// Runs argv, returning its exit status (-1: could not start) and its output.
int run_capturing(const std::vector<std::string>& argv, std::string& output) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    close(fds[0]);
    close(fds[1]);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) output.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  if (s.size() > 2000) {
    std::string tail = s.substr(s.size() - 2000);
    s = "...";
    s += tail;
  }
  return s;
}

}  // namespace

PlotOutcome run_plot_script(const std::string& script_name, const std::vector<std::string>& args,
                            const std::vector<fs::path>& outputs) {
  PlotOutcome out;
  fs::path script;
  std::string looked;
  for (const fs::path& p : script_candidates(script_name)) {
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) {
      script = p;
      break;
    }
    looked += ' ';
    looked += p.string();
  }
  if (script.empty()) {
    out.message = "plots skipped: scripts/" + script_name + " not found (looked at" + looked +
                  "); set SPEEDRUN_PLOT_SCRIPT to the path of scripts/plot_compare.py";
    return out;
  }
  const std::string python = python_interpreter();
  std::vector<std::string> argv = {python, script.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string output;
  const int rc = run_capturing(argv, output);
  if (rc == 0) {
    out.drawn = true;
    out.files = outputs;
    out.message = "plots:";
    for (size_t i = 0; i < outputs.size(); ++i) out.message += (i ? ", " : " ") + outputs[i].string();
    // What the script says about the plot (a clipped y range) goes with it.
    for (size_t start = 0; start < output.size();) {
      size_t end = output.find('\n', start);
      if (end == std::string::npos) end = output.size();
      const std::string line = output.substr(start, end - start);
      if (line.rfind("note: ", 0) == 0) out.message += "\n" + line;
      start = end + 1;
    }
  } else if (rc == kNoMatplotlib) {
    out.message = "plots skipped: " + trimmed(output) + " (Debian: apt install python3-matplotlib; or set " +
                  "SPEEDRUN_PYTHON to a python3 that has matplotlib)";
  } else if (rc == 127 || rc == -1) {
    out.message = "plots skipped: cannot run " + python + " (set SPEEDRUN_PYTHON to a python3 with matplotlib)";
  } else {
    out.failed = true;
    out.message = "plots failed: " + python + " " + script.string() + " exited with status " + std::to_string(rc) +
                  ":\n" + trimmed(output);
  }
  return out;
}

PlotOutcome draw_plots(const fs::path& results_json, const fs::path& out_dir) {
  return run_plot_script("plot_compare.py", {results_json.string(), out_dir.string()},
                         {out_dir / "val_loss_vs_step.png", out_dir / "val_loss_vs_time.png"});
}

bool is_speedrun_plot(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string head(8192, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  return head.rfind("\x89PNG\r\n\x1a\n", 0) == 0 && head.find(kPlotSoftware) != std::string::npos;
}

}  // namespace speedrun::compare
