// speedrun train: one training run from a config, in one process or as one rank of
// an mpirun job.
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "dist/session.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace speedrun::cli {

namespace {

struct Options {
  ConfigOptions config;
  std::string device, run_name, out_dir, resume;
  bool force = false, no_progress = false, save_params = false;
};

// The config of a resume without a CONFIG: the checkpoint's, with the --set overrides.
config::RunConfig checkpoint_config(const std::filesystem::path& checkpoint, const ConfigOptions& o) {
  const train::Checkpoint c = train::Checkpoint::open(checkpoint);
  config::json raw = c.config();
  std::vector<config::Override> overrides;
  for (const std::string& s : o.sets) overrides.push_back(config::parse_override(s));
  config::apply_overrides(raw, overrides);
  return config::run_config_from_json(raw, checkpoint.string() + " (metadata speedrun.config)");
}

// Returns the signal that interrupted the run (0: it ended on its own).
int run_train(const Options& o, const dist::Session& session) {
  std::filesystem::path resume;
  if (!o.resume.empty()) resume = train::resolve_checkpoint(o.resume);
  config::RunConfig cfg = resume.empty() || !o.config.config.empty() ? load_config(o.config)
                                                                       : checkpoint_config(resume, o.config);
  if (!o.out_dir.empty()) cfg.train.out_dir = o.out_dir;
  train::TrainOptions opts;
  opts.resume_from = resume;
  opts.run_name = o.run_name;
  opts.force = o.force;
  if (!o.device.empty()) opts.device = o.device;
  opts.command_line = joined_command_line();
  opts.progress = !o.no_progress;
  opts.save_params = o.save_params;
  opts.session = &session;
  const train::TrainSummary s = train::run_training(cfg, opts);
  if (session.rank() != 0) return s.signal;  // rank 0 reports the run
  for (const std::string& line : s.status_lines(cfg.train.target_val_loss)) std::printf("%s\n", line.c_str());
  return s.signal;
}

}  // namespace

Command add_train_command(CLI::App& app) {
  auto o = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand("train", "train a model from a run config; writes out_dir/<run name>/");
  add_config_options(sub, o->config, /*config_required=*/false);
  sub->add_option("--device", o->device, "auto, cpu or cuda (overrides train.device)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  sub->add_option("--run-name", o->run_name, "name of the run directory (default: <config name>-<timestamp>)");
  sub->add_option("--out-dir", o->out_dir, "parent of the run directory (overrides train.out_dir)");
  sub->add_flag("--force", o->force, "replace an existing run directory of the same name");
  sub->add_flag("--no-progress", o->no_progress, "no per-step progress lines (validation lines still print)");
  sub->add_flag("--save-params", o->save_params, "write the final parameters to <run dir>/params/<name>.npy");
  auto* resume = sub->add_option("--resume", o->resume,
                                 "continue a run from a checkpoint file, or from the newest checkpoint of a run "
                                 "directory, in that run directory (CONFIG is then optional: the checkpoint's)")
                     ->type_name("RUN_DIR|CHECKPOINT");
  for (const char* name : {"--run-name", "--out-dir", "--force"}) resume->excludes(sub->get_option(name));
  // CONFIG is required unless --resume gives one.
  sub->callback([sub, o] {
    if (o->config.config.empty() && o->resume.empty())
      throw CLI::RequiredError("config is required (a run config, or --resume RUN_DIR|CHECKPOINT)",
                               CLI::ExitCodes::RequiredError);
  });
  return {sub, [o] {
            // Under mpirun every rank runs this; MPI starts here and stops when the
            // session goes out of scope. With several ranks any error ends the whole
            // job, naming the rank, instead of leaving the others waiting in a collective.
            int signal = 0;
            {
              dist::Session session;
              try {
                signal = run_train(*o, session);
              } catch (const std::exception& e) {
                if (session.world() > 1) session.abort_job(failure_line(e));
                throw;
              }
            }
            // An interrupted run (its checkpoint and summary written) exits as a process
            // ended by that signal conventionally does: 128 + its number.
            if (signal != 0) {
              std::fflush(nullptr);
              std::exit(128 + signal);
            }
          }};
}

}  // namespace speedrun::cli
