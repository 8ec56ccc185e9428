// speedrun train: one training run from a config, in one process or as one rank of
// an mpirun job.
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "dist/session.h"
#include "train/trainer.h"

namespace speedrun::cli {

namespace {

struct Options {
  ConfigOptions config;
  std::string device, run_name, out_dir;
  bool force = false, no_progress = false, save_params = false;
};

void run_train(const Options& o, const dist::Session& session) {
  config::RunConfig cfg = load_config(o.config);
  if (!o.out_dir.empty()) cfg.train.out_dir = o.out_dir;
  train::TrainOptions opts;
  opts.run_name = o.run_name;
  opts.force = o.force;
  if (!o.device.empty()) opts.device = o.device;
  opts.command_line = joined_command_line();
  opts.progress = !o.no_progress;
  opts.save_params = o.save_params;
  opts.session = &session;
  const train::TrainSummary s = train::run_training(cfg, opts);
  if (session.rank() != 0) return;  // rank 0 reports the run
  for (const std::string& line : s.status_lines(cfg.train.target_val_loss)) std::printf("%s\n", line.c_str());
}

}  // namespace

Command add_train_command(CLI::App& app) {
  auto o = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand("train", "train a model from a run config; writes out_dir/<run name>/");
  add_config_options(sub, o->config);
  sub->add_option("--device", o->device, "auto, cpu or cuda (overrides train.device)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  sub->add_option("--run-name", o->run_name, "name of the run directory (default: <config name>-<timestamp>)");
  sub->add_option("--out-dir", o->out_dir, "parent of the run directory (overrides train.out_dir)");
  sub->add_flag("--force", o->force, "replace an existing run directory of the same name");
  sub->add_flag("--no-progress", o->no_progress, "no per-step progress lines (validation lines still print)");
  sub->add_flag("--save-params", o->save_params, "write the final parameters to <run dir>/params/<name>.npy");
  return {sub, [o] {
            // Under mpirun every rank runs this; MPI starts here and stops when the
            // session goes out of scope. With several ranks any error ends the whole
            // job, naming the rank, instead of leaving the others waiting in a collective.
            dist::Session session;
            try {
              run_train(*o, session);
            } catch (const std::exception& e) {
              if (session.world() > 1) session.abort_job(failure_line(e));
              throw;
            }
          }};
}

}  // namespace speedrun::cli
