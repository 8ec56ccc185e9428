#include "train/trainer.h"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "build_info.h"
#include "core/error.h"
#include "core/files.h"
#include "core/npy.h"
#include "data/loader.h"
#include "dist/communicator.h"
#include "dist/fault_injection.h"
#include "core/file_lock.h"
#include "dist/session.h"
#include "core/device_memory.h"
#include "core/format_bytes.h"
#include "core/host_memory.h"
#include "model/device_support.h"
#include "model/registry.h"
#include "model/precision.h"
#include "optim/capture_fan_out.h"
#include "optim/optimizer.h"
#include "optim/reduction_overlap.h"
#include "optim/schedule.h"
#include "train/checkpoint.h"
#include "train/communication_plan.h"
#include "train/device_choice.h"
#include "train/evaluation.h"
#include "train/grad_scaling.h"
#include "train/memory_plan.h"
#include "train/metrics.h"
#include "train/progress.h"
#include "train/run_dir.h"
#include "train/stop_signal.h"
#include "train/train_state.h"
#include "train/run_log.h"
#include "train/val_line.h"

namespace speedrun::train {

nlohmann::json TrainSummary::to_json() const {
  nlohmann::json j;
  j["status"] = status;
  j["steps"] = steps_done;
  j["train_time_s"] = train_time_s;
  j["step_avg_ms"] = step_avg_ms;
  j["tokens_per_s"] = tokens_per_s;
  j["final_val_loss"] = val.empty() ? nlohmann::json(nullptr) : nlohmann::json(val.back().val_loss);
  j["val"] = nlohmann::json::array();
  for (const ValPoint& v : val) j["val"].push_back({{"step", v.step}, {"val_loss", v.val_loss}, {"train_time_s", v.train_time_s}});
  if (first_at_target)
    j["first_at_target"] = {{"step", first_at_target->step},
                            {"val_loss", first_at_target->val_loss},
                            {"train_time_s", first_at_target->train_time_s}};
  else
    j["first_at_target"] = nullptr;
  return j;
}

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double sum_over_ranks(dist::Communicator& comm, double x) {
  comm.all_reduce_sum(Tensor::of(&x, {1}));
  // An all-reduce may round differently on different ranks; decisions taken on the
  // result (stop at the target, divergence) must agree everywhere, so all take rank 0's.
  comm.broadcast(Tensor::of(&x, {1}), 0);
  return x;
}

// Every parameter as <dir>/<name>.npy (after the run, every rank holds the same values);
// on CUDA each is copied to the host first. Each file is written atomically (write_npy),
// so a kill leaves complete files only; the caller writes summary.json after them.
void save_parameters(model::Model& model, const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw UserError("cannot create " + dir.string() + ": " + ec.message());
  const auto& specs = model.layout().params();
  std::vector<float> host;
  for (size_t i = 0; i < specs.size(); ++i) {
    Tensor p = model.param(i);
    if (p.device != Device::cpu) {
      host.resize(static_cast<size_t>(p.numel()));
      device_copy(host.data(), p.ptr, p.bytes());
      p.ptr = host.data();  // same dtype and shape, now the host copy
      p.device = Device::cpu;
    }
    write_npy(dir / (specs[i].name + ".npy"), p);
  }
}

// Everything the loop uses, set up by train() (a fresh run and a resume alike).
struct Run {
  const config::RunConfig& cfg;
  const TrainOptions& opts;
  RunLog& run_log;
  dist::Communicator& comm;
  model::Model& model;
  std::vector<std::unique_ptr<optim::Optimizer>>& optimizers;
  data::TrainLoader& loader;
  const data::Batch& val;
  LineFile& metrics;
  const std::filesystem::path& run_dir;
  const nlohmann::json& resolved;
  bool writer;
  bool under_launcher;
  dist::GradBucketer* overlap;  // non-null: gradient collectives start in the last micro-batch's backward
};

// A checkpoint of `state` (collective), then the old ones beyond train.keep_checkpoints go.
void checkpoint(Run& r, const TrainState& state) {
  const auto path = checkpoint_path(r.run_dir, state.step);
  save_checkpoint(path, r.writer, r.resolved, r.comm.world(), r.model, r.optimizers, state);
  if (r.writer) {
    prune_checkpoints(checkpoint_dir(r.run_dir), r.cfg.train.keep_checkpoints);
    r.run_log.line(fmt::format("checkpoint {} (step {})", path.string(), state.step));
  }
}

// The loop, from `state` (step 0 of a fresh run, or a checkpoint's) to the end of the
// run, an interruption (SIGINT/SIGTERM) or a target stop; writes the end of the run
// (final checkpoint, parameters, status, summary.json). Defined after train().
TrainSummary run_loop(Run& r, TrainState& state);

// The run itself; run_training below adds the log's record of a failure.
TrainSummary train(const config::RunConfig& cfg, const TrainOptions& opts, RunLog& run_log) {
  const config::TrainConfig& t = cfg.train;
  const config::ModelConfig& m = cfg.model;
  const Device device = resolve_device(opts.device.value_or(t.device));
  // Precision settings the device cannot honour fail before anything is read or allocated.
  const DType activations = model::resolve_activation_dtype(t.activation_dtype, device);
  model::resolve_embedding_dtype(m, device);
  model::check_arch_supported(m, device);
  // The CUDA attention is compiled for a few head widths only; say so before anything
  // is read or allocated rather than at the first forward.
  model::check_model_runs_on(m, device);
  if (t.threads > 0) {
    omp_set_num_threads(static_cast<int>(t.threads));
  } else if (opts.session && opts.session->launch().local_size > 1 && std::getenv("OMP_NUM_THREADS") == nullptr) {
    // "All cores" means this rank's share of them when several ranks share a node.
    omp_set_num_threads(std::max(1, omp_get_num_procs() / opts.session->launch().local_size));
  }

  std::unique_ptr<dist::Communicator> comm =
      opts.session ? opts.session->make_communicator(device) : dist::make_local_communicator();
  const int rank = comm->rank(), world = comm->world();
  const bool writer = rank == 0;  // rank 0 alone writes the run directory and the console
  const bool under_launcher = opts.session && (opts.session->world() > 1 || opts.session->launch().under_mpi);
  if (under_launcher) {
    const std::string identity = dist::identity_line(
        opts.session->launch(), fmt::format("device {}, {} communicator", dist::device_label(device, opts.session->launch(), comm->name()), comm->name()));
    std::fprintf(stderr, "%s\n", identity.c_str());
    run_log.line(identity);
  }
  if (t.batch_tokens % (static_cast<int64_t>(world) * t.micro_batch_seqs * m.seq_len) != 0)
    throw UserError(fmt::format("train.batch_tokens ({}) must be a multiple of processes x train.micro_batch_seqs x "
                                "model.seq_len = {} x {} x {}, so that every rank runs whole micro-batches",
                                t.batch_tokens, world, t.micro_batch_seqs, m.seq_len));
  // Before anything else: every rank must train the same thing.
  nlohmann::json resolved = config::to_json(cfg);
  dist::check_same_on_all_ranks(*comm, resolved.dump() + "|device=" + device_name(device), "resolved config");
  // A run directory that exists is refused before anything else is printed (the memory plan).
  const std::string run_name = opts.run_name.empty() ? default_run_name(cfg.name) : opts.run_name;
  if (writer && opts.resume_from.empty()) check_run_dir_free(t.out_dir, run_name, opts.force);
  // A resume continues the checkpoint's run: its model, data and optimizer settings must
  // be the checkpoint's (train/checkpoint.h resume_safe_keys: what may change).
  std::optional<Checkpoint> resume;
  TrainState state;  // where the run starts: step 0, or the checkpoint's state
  if (!opts.resume_from.empty()) {
    resume.emplace(Checkpoint::open(opts.resume_from));
    state = resume->state();
    // Every rank must continue from the same checkpoint (each resolved RUN_DIR to its
    // newest file itself, e.g. on a shared file system with stale attribute caches).
    dist::check_same_on_all_ranks(*comm,
                                  std::filesystem::absolute(opts.resume_from).lexically_normal().string() + "|step=" +
                                      std::to_string(state.step),
                                  "checkpoint to resume from", "every rank must resume from the same checkpoint file");
    // train.target_val_loss may change at a resume: the first step at the target is the
    // resumed run's target's, found again in the validation history.
    state.first_at_target.reset();
    if (t.target_val_loss)
      for (const ValPoint& v : state.val)
        if (v.val_loss <= *t.target_val_loss) {
          state.first_at_target = v;
          break;
        }
    // A run's final checkpoint: nothing is left to train. When a kill came between it
    // and summary.json, the resume writes the run's end (parameters, status, summary);
    // otherwise there is nothing to do.
    if (!state.finished_status.empty() &&
        std::filesystem::exists(std::filesystem::absolute(opts.resume_from).parent_path().parent_path() /
                                "summary.json"))
      throw UserError(fmt::format("{}: the run ended at step {} ({}); there is nothing to resume",
                                  opts.resume_from.string(), state.step, state.finished_status));
    const std::vector<std::string> differ = config_differences(resume->config(), resolved);
    if (!differ.empty()) {
      std::string keys;
      for (const std::string& k : differ) keys += (keys.empty() ? "" : ", ") + k;
      throw UserError(fmt::format("{}: cannot resume with another model, data or optimizer setting; these keys differ "
                                  "from the checkpoint's config: {} (keys that may change: validation and "
                                  "checkpoint cadence, target, threads)",
                                  opts.resume_from.string(), keys));
    }
  }
  // Data first: bad paths or too little data fail before anything is allocated.
  auto train_shards = data::list_shards(cfg.data.train_glob, "data.train_glob");
  auto val_shards = data::list_shards(cfg.data.val_glob, "data.val_glob");
  for (const auto& v : val_shards)
    for (const auto& tr : train_shards) {
      std::error_code ec;
      if (writer && std::filesystem::equivalent(v.path, tr.path, ec))
        spdlog::warn("data.val_glob and data.train_glob both match {}: its tokens are validated on and trained on",
                     v.path.string());
    }
  if (device == Device::cpu) {
    // Everything the run will hold in host memory, data included, checked against what
    // this process may still allocate before the first big allocation: a run that
    // cannot fit fails now, naming the numbers, not with std::bad_alloc or the OOM killer.
    MemoryPlan plan = plan_memory(cfg, device, activations, /*with_optimizer_state=*/true);
    add_communication_items(plan, cfg, world, device);
    int64_t largest_shard = 0;
    for (const auto& s : train_shards) largest_shard = std::max(largest_shard, s.num_tokens);
    // A rank evaluates whole sequences, at most ceil(sequences / world) of them (loader.h).
    const int64_t val_seqs = cfg.data.val_tokens / m.seq_len;
    add_data_item(plan, largest_shard, t.batch_tokens / world, (val_seqs + world - 1) / world * m.seq_len);
    const HostMemory host = query_host_memory();
    // Every rank on this node holds its own copy of the plan at the same time.
    const int on_node = opts.session ? std::max(1, opts.session->launch().local_size) : 1;
    check_host_plan_fits(plan, host, on_node);  // a refusal shows the plan itself
    if (writer)
      spdlog::info("host memory plan ({} available: {}):\n{}", format_bytes(host.available), host.limits,
                   plan.to_string(/*final_newline=*/false));
  }
  data::TrainLoader loader(train_shards, {t.batch_tokens, rank, world, m.vocab_size, cfg.data.epochs, "data.train_glob",
                                          cfg.data.align_to_bos, m.seq_len});
  loader.check_enough_for(t.steps);
  const data::Batch val =
      data::load_validation_set(val_shards, cfg.data.val_tokens, m.seq_len, rank, world, m.vocab_size);
  int64_t train_tokens = 0;
  for (const auto& s : train_shards) train_tokens += s.num_tokens;

  if (device == Device::cuda) {
    // Everything the run will hold on the device, checked against free memory before the
    // first allocation: a run that cannot fit fails now, naming the numbers.
    MemoryPlan plan = plan_memory(cfg, device, activations, /*with_optimizer_state=*/true);
    add_communication_items(plan, cfg, world, device);
    size_t free_b = 0, total_b = 0;
    device_memory_info(&free_b, &total_b);
    check_plan_fits(plan, free_b, total_b);  // a refusal shows the plan itself
    if (writer)
      spdlog::info("device memory plan ({} free of {}):\n{}", format_bytes(free_b), format_bytes(total_b),
                   plan.to_string(/*final_newline=*/false));
  }
  const std::unique_ptr<model::Model> model_of_arch = model::make_model(m, device, t.micro_batch_seqs, activations);
  model::Model& model = *model_of_arch;
  model.init_parameters(static_cast<uint64_t>(t.seed));
  auto optimizers =
      optim::build_optimizers(cfg.optimizers, model, {comm.get(), optim::grad_bucket_bytes(t.grad_bucket_mb)});
  // Non-null: the gradient collectives start during the last micro-batch's backward.
  const auto overlap =
      optim::overlap_gradient_reduction(optimizers, model.layout().params().size(), world, t.grad_bucket_mb);
  model.weights_changed();  // in case an optimizer touched the parameters while setting up

  // Where the run's state comes from: a fresh start, or the checkpoint (parameters,
  // optimizers, loader, clock and validation history); the loop below is the same.
  if (resume) {
    if (state.finished_status.empty() && state.step >= t.steps)
      throw std::logic_error("an unfinished checkpoint at or past train.steps");
    resume->load_parameters(model);
    resume->load_optimizers(optimizers);
    if (loader.shard_path(std::min(state.loader.shard, train_shards.size() - 1)).filename().string() !=
        state.loader_shard_file)
      throw UserError(fmt::format("{}: the checkpoint's loader stands in shard {} ({}), which data.train_glob now "
                                  "names differently; the training shards changed since the checkpoint",
                                  opts.resume_from.string(), state.loader.shard, state.loader_shard_file));
    loader.seek(state.loader);
    if (resume->world_size() != world && writer)
      spdlog::warn("{} was written by {} process(es), this run has {}: the optimizer state is re-sharded and the "
                   "gradient sums are reduced in another order, so the run will not be bitwise the one that {} "
                   "process(es) would continue",
                   opts.resume_from.string(), resume->world_size(), world, resume->world_size());
  }
  // Everything is loaded: the checkpoint file's mapping goes now, not at the end of the run
  // (a long run would hold a file that keep_checkpoints may delete, and its pages).
  const bool resumed = resume.has_value();
  resume.reset();

  std::filesystem::path run_dir;
  LineFile metrics;  // closed (writes are no-ops) on ranks other than 0
  if (writer && resumed) {
    // The checkpoint's own run directory, continued: metrics after the checkpoint's step
    // are cut (no duplicates), the summary of an earlier end goes until this run ends.
    run_dir = std::filesystem::absolute(opts.resume_from).parent_path().parent_path();
    if (!std::filesystem::exists(run_dir / "config.json"))
      throw UserError(fmt::format("{}: not in a run directory (<run dir>/checkpoints/step_*.safetensors with "
                                  "<run dir>/config.json)",
                                  opts.resume_from.string()));
    // A process still training this run holds log.txt's lock: resuming under it would
    // cut its metrics and remove its files.
    if (held_by_a_writer(run_dir / "log.txt"))
      throw UserError(fmt::format("{} is still being trained by a running process (it holds {}); stop it before "
                                  "resuming",
                                  run_dir.string(), (run_dir / "log.txt").string()));
    truncate_metrics(run_dir / "metrics.jsonl", state.step, /*keep_validation_at_step=*/!state.finished_status.empty());
    // Checkpoints after the resumed one belong to the trajectory this resume replaces
    // (its metrics were just cut): moved aside, out of `--resume RUN_DIR`'s, sample's and
    // keep_checkpoints' sight, not deleted.
    if (const int n = set_aside_later_checkpoints(checkpoint_dir(run_dir), state.step); n > 0)
      spdlog::warn("moved {} checkpoint(s) after step {} to {}: this resume replaces the run after that step", n,
                   state.step, (checkpoint_dir(run_dir) / superseded_dir_name(state.step)).string());
    if (const int n = remove_checkpoint_temporaries(checkpoint_dir(run_dir)); n > 0)
      spdlog::info("removed {} partial checkpoint(s) that a killed process left in {}", n, checkpoint_dir(run_dir).string());
    std::error_code ec;
    std::filesystem::remove(run_dir / "summary.json", ec);
    if (ec) throw UserError("cannot remove " + (run_dir / "summary.json").string() + ": " + ec.message());
    metrics.open(run_dir / "metrics.jsonl");
    run_log.open(run_dir / "log.txt",
                 fmt::format("speedrun {} ({}) {}", SPEEDRUN_VERSION, SPEEDRUN_GIT_COMMIT, opts.command_line));
    run_log.line(fmt::format("resumed from {} at step {}{}", opts.resume_from.string(), state.step,
                             state.finished_status.empty() ? ""
                                                           : " (the run's final checkpoint: writing the run's end, which "
                                                             "a stopped process left unwritten)"));
  } else if (writer) {
    run_dir = create_run_dir(t.out_dir, run_name, opts.force);
    write_text_file_atomic(run_dir / "config.json", resolved.dump(2) + "\n");
    metrics.open(run_dir / "metrics.jsonl");
    run_log.open(run_dir / "log.txt",
                 fmt::format("speedrun {} ({}) {}", SPEEDRUN_VERSION, SPEEDRUN_GIT_COMMIT, opts.command_line));
  }

  const int64_t local_tokens = t.batch_tokens / world;
  const int64_t micro_tokens = t.micro_batch_seqs * m.seq_len;
  const int64_t micro_steps = local_tokens / micro_tokens;
  spdlog::info("run directory {}", run_dir.string());
  if (resumed) spdlog::info("resuming from {} at step {}", opts.resume_from.string(), state.step);
  spdlog::info("model: {} layers, d={}, {}x{} heads, vocab {} (padded {}), {:.1f}M parameters, {:.2f} GiB activations",
               m.n_layer, m.d_model, m.n_head, m.head_dim, m.vocab_size, m.padded_vocab_size,
               static_cast<double>(model.layout().total_numel()) / 1e6,
               static_cast<double>(model.activation_bytes()) / (1ull << 30));
  int64_t val_available = 0;
  for (const auto& s : val_shards) val_available += s.num_tokens;
  spdlog::info("data: {} train shard(s), {} tokens, {}{} batches per pass{}; validation: the first {} of {} tokens in {} "
               "shard(s), {} sequence(s) over {} process(es)",
               train_shards.size(), train_tokens, loader.batches_per_epoch_exact() ? "" : "at most ",
               loader.batches_per_epoch(), cfg.data.align_to_bos ? " (document-aligned)" : "", cfg.data.val_tokens,
               val_available,
               val_shards.size(), cfg.data.val_tokens / m.seq_len, world);
  // Upstream's loader leaves each shard's tail out (see data/loader.h); say how much.
  const char* min_tokens_rule = cfg.data.align_to_bos ? "2 x train.batch_tokens + 2" : "train.batch_tokens + 2";
  if (loader.tokens_unread_per_epoch() > 0 && loader.batches_per_epoch_exact())
    spdlog::info("data: {} of {} training tokens per pass are never an input: each shard's tail after its last batch{} "
                 "(upstream's rule: a batch is read only while {} tokens are left)",
                 loader.tokens_unread_per_epoch(), train_tokens,
                 cfg.data.align_to_bos ? " and the tokens between document-aligned sequences" : "", min_tokens_rule);
  if (writer)
    for (const auto& s : loader.skipped_shards())
      spdlog::warn("data.train_glob: {} holds {} tokens, fewer than {} = {}: no batch is read from it",
                   s.path.string(), s.num_tokens, min_tokens_rule, loader.min_shard_tokens());
  spdlog::info("training: {} steps of {} tokens ({} process(es) x {} micro-batch(es) of {} x {}), device {}, {} "
               "threads per process",
               t.steps, t.batch_tokens, world, micro_steps, t.micro_batch_seqs, m.seq_len, device_name(device),
               omp_get_max_threads());

  Run run{cfg,     opts,    run_log, *comm,    model,  optimizers,    loader,
          val,     metrics, run_dir, resolved, writer, under_launcher, overlap.get()};
  return run_loop(run, state);
}

// The loop, from `state` (step 0 of a fresh run, or a checkpoint's) to the end of the
// run, an interruption (SIGINT/SIGTERM) or a target stop; writes the end of the run
// (final checkpoint, parameters, status, summary.json).
TrainSummary run_loop(Run& r, TrainState& state) {
  const config::RunConfig& cfg = r.cfg;
  const config::TrainConfig& t = cfg.train;
  const config::ModelConfig& m = cfg.model;
  const TrainOptions& opts = r.opts;
  RunLog& run_log = r.run_log;
  dist::Communicator* comm = &r.comm;
  model::Model& model = r.model;
  auto& optimizers = r.optimizers;
  // The bf16 weight copies the optimizers' kernels write each step (model/weight_copies.h).
  const std::vector<size_t> copies_written = optim::weight_copies_written(optimizers);
  data::TrainLoader& loader = r.loader;
  const data::Batch& val = r.val;
  LineFile& metrics = r.metrics;
  const bool writer = r.writer;
  dist::GradBucketer* const overlap = r.overlap;
  const int rank = comm->rank(), world = comm->world();
  const int64_t local_tokens = t.batch_tokens / world;
  const int64_t micro_tokens = t.micro_batch_seqs * m.seq_len;
  const int64_t micro_steps = local_tokens / micro_tokens;
  // The architecture's gradient: record26 averages over the batch's sequences as upstream
  // averages over its ranks (model::gradient_scale); the scaler sits before the overlap.
  std::optional<GradientScaler> scaler;
  if (const double scale = model::gradient_scale(m, t.batch_tokens); scale != 1.0) scaler.emplace(model, scale, overlap);
  model::GradReadySink* const last_backward_sink = scaler ? static_cast<model::GradReadySink*>(&*scaler) : overlap;
  const StopSignals stop_signals;  // SIGINT/SIGTERM: stop after the step in progress
  int stop_signal = 0;

  // On rank 0 alone; redrawn in place only on the user's terminal (train/progress.h).
  Progress progress(opts.progress && writer, stdout_is_user_terminal(r.under_launcher),
                    [&run_log](const std::string& line) { run_log.line(line); });
  progress.set_context(opts.progress_label, opts.eta_after_s);
  const ValLineFormat val_line = val_line_format(m.arch);  // upstream's line for the architecture
  TrainSummary summary;
  summary.run_dir = r.run_dir;
  // train.stop_at_target turned on at a resume whose validation history already reached the
  // target: the run stops at once, at the checkpoint's step (the steps trained after the
  // target cannot be undone), with status stopped_at_target; no checkpoint is written (nothing
  // was trained), so a later resume without stop_at_target may still continue it.
  if (!opts.resume_from.empty() && state.finished_status.empty() && t.stop_at_target && state.first_at_target) {
    state.finished_status = "stopped_at_target";
    if (writer)
      spdlog::info("train.stop_at_target: the target {} was already reached at step {} (val_loss {:.5f}), before the "
                   "checkpoint's step {}: stopping at once",
                   *t.target_val_loss, state.first_at_target->step, state.first_at_target->val_loss, state.step);
  }
  summary.status = "completed";
  double& training_time = state.train_time_s;
  data::Batch batch;
  auto t0 = Clock::now();
  // A resume from a run's final checkpoint (its end unwritten) trains nothing.
  const bool already_finished = !state.finished_status.empty();
  const int64_t state_first_step = state.step;  // this process's first step (a resume's too)
  for (int64_t step = state.step; !already_finished && step <= t.steps; ++step) {
    // --- validation (clock stopped) ---
    const int64_t val_freq =
        static_cast<double>(step) / static_cast<double>(t.steps) < 1.0 - t.val_final_frac ? t.val_every : t.val_every_final;
    if (step == t.steps || step % val_freq == 0) {
      const double before = state.val.empty() ? 0.0 : state.val.back().train_time_s;
      training_time += seconds_since(t0);
      const double step_avg =
          step > 0 ? (training_time - before) / static_cast<double>(step - state.last_val_step) : std::nan("");
      state.last_val_step = step;
      const ValSum local = evaluate_loss(model, val, t.micro_batch_seqs, m.seq_len, {step, t.steps});
      // The divisor is the number of tokens evaluated over all ranks, which must be every
      // token data.val_tokens asked for (counts below 2^53 add exactly in double).
      const double evaluated = sum_over_ranks(*comm, static_cast<double>(local.tokens));
      if (evaluated != static_cast<double>(cfg.data.val_tokens))
        throw std::logic_error(fmt::format("validation evaluated {} tokens, data.val_tokens is {}", evaluated,
                                           cfg.data.val_tokens));
      const double val_loss = sum_over_ranks(*comm, local.loss_sum) / evaluated;
      // A non-finite loss is recorded too (JSON null: metrics.h) before the run stops.
      metrics.write_json({{"step", step}, {"val_loss", val_loss}, {"train_time_s", training_time}});
      if (!std::isfinite(val_loss))
        throw UserError(fmt::format("validation loss is {} at step {}; the run diverged", val_loss, step));
      if (writer) progress.line(val_line({step, t.steps, val_loss, training_time, 1000.0 * step_avg}));
      const ValPoint point{step, val_loss, training_time};
      state.val.push_back(point);
      if (t.target_val_loss && !state.first_at_target && val_loss <= *t.target_val_loss) {
        state.first_at_target = point;
        if (t.stop_at_target && step < t.steps) {
          state.finished_status = "stopped_at_target";
          break;
        }
      }
      t0 = Clock::now();
    }
    if (step == t.steps) {
      state.finished_status = "completed";
      break;
    }

    // --- one optimizer step over the global batch ---
    dist::maybe_fail_for_test(rank, step + 1);
    loader.next(batch);
    model.zero_grad();
    optim::CaptureFanOut capture(optimizers, step);
    // The loss stays on the device until every micro-batch has run (Model::begin_loss_sum):
    // one host synchronization per step, not per micro-batch.
    model.begin_loss_sum();
    for (int64_t k = 0; k < micro_steps; ++k)
      model.forward_backward_summed(batch.inputs.data() + k * micro_tokens, batch.targets.data() + k * micro_tokens,
                                    t.micro_batch_seqs, capture.sink(), {step, t.steps},
                                    k + 1 == micro_steps ? last_backward_sink : nullptr);
    const double loss_sum = model.end_loss_sum();
    if (scaler) scaler->finish();
    // The loss is a SUM over the global batch: the loss is summed over ranks here, the
    // gradients inside each optimizer's step, or from the backward on (see optim/optimizer.h),
    // record26's scaled to the mean over sequences above.
    const double train_loss = sum_over_ranks(*comm, loss_sum) / static_cast<double>(t.batch_tokens);
    if (!std::isfinite(train_loss)) {
      metrics.write_json(
          {{"step", step + 1}, {"train_loss", train_loss}, {"train_time_s", training_time + seconds_since(t0)}});
      throw UserError(fmt::format("training loss is {} at step {} (before its update); the run diverged — lower "
                                  "the learning rates or check the data",
                                  train_loss, step + 1));
    }
    const double factor = optim::lr_factor(cfg.schedule, step, t.steps);
    for (auto& opt : optimizers) opt->step(step, factor);
    // The bf16 weight copies (if any) are remade from the updated masters at the next
    // forward, validation included, except those the optimizers' kernels wrote themselves
    // (SPEEDRUN_WEIGHT_COPIES=optimizer: model/weight_copies.h).
    model.weights_updated(copies_written);

    const double elapsed = training_time + seconds_since(t0);
    const double tokens_per_s = static_cast<double>(t.batch_tokens) * static_cast<double>(step + 1) / elapsed;
    const double eta = elapsed / static_cast<double>(step + 1) * static_cast<double>(t.steps - step - 1);
    progress.update(step + 1, t.steps, train_loss, elapsed, tokens_per_s, eta);
    nlohmann::json record = {{"step", step + 1},
                             {"train_loss", train_loss},
                             {"lr_factor", factor},
                             {"train_time_s", elapsed},
                             {"tokens_per_s", tokens_per_s}};
    for (size_t e = 0; e < optimizers.size(); ++e)
      if (nlohmann::json extra = optimizers[e]->metrics(); !extra.is_null())
        record["optimizers[" + std::to_string(e) + "]"] = std::move(extra);
    if (overlap)
      record["grad_overlap"] = {{"collectives", overlap->collectives()},
                                {"started_in_backward", overlap->started_in_backward()},
                                {"completed_in_backward", overlap->completed_in_backward()}};
    metrics.write_json(record);
    if (world > 1 && writer && step == state_first_step) {
      // After the first step every collective buffer exists: what the memory plan said.
      size_t allocated = 0;
      for (const auto& opt : optimizers) allocated += opt->communication_bytes();
      spdlog::info("gradient reduction buffers: {} bytes allocated, {} bytes planned", allocated,
                   plan_reduction_buffer_bytes(cfg, world, model.device()));
    }
    state.step = step + 1;
    state.loader = loader.save_position();
    state.loader_shard_file = loader.shard_path(state.loader.shard).filename().string();

    // --- checkpoint (clock stopped): every train.checkpoint_every steps, and when a
    // signal asks the run to stop; all ranks stop at the same step (rank 0's decision).
    // A signal at the last step lets the run end as usual (final validation, checkpoint).
    const bool signalled =
        world > 1 ? sum_over_ranks(*comm, StopSignals::received()) > 0 : StopSignals::received() != 0;
    const bool stop = signalled && state.step < t.steps;
    if (stop || (t.checkpoint_every > 0 && state.step % t.checkpoint_every == 0 && state.step < t.steps)) {
      training_time += seconds_since(t0);
      checkpoint(r, state);
      t0 = Clock::now();
    }
    if (stop) {
      stop_signal = StopSignals::received() != 0 ? StopSignals::received() : SIGTERM;  // another rank's signal
      break;
    }
  }
  progress.finish();
  if (stop_signal == 0 && !already_finished) checkpoint(r, state);  // the end of the run: always
  summary.status = stop_signal ? "interrupted" : state.finished_status;
  summary.signal = stop_signal;
  summary.steps_done = state.step;
  summary.val = state.val;
  summary.first_at_target = state.first_at_target;
  summary.train_time_s = training_time;
  summary.step_avg_ms = summary.steps_done > 0 ? 1000.0 * training_time / static_cast<double>(summary.steps_done) : 0.0;
  summary.tokens_per_s =
      training_time > 0 ? static_cast<double>(t.batch_tokens) * static_cast<double>(summary.steps_done) / training_time : 0.0;
  if (writer) {
    // summary.json last, once every other output is complete on disk: a run directory
    // whose summary exists is a finished run (speedrun compare reuses it), so a kill or
    // a write error before this point must leave no summary behind.
    if (opts.save_params) save_parameters(model, r.run_dir / "params");
    metrics.sync();
  }
  // The final status goes into log.txt (and to disk) before summary.json too.
  for (const std::string& line : summary.status_lines(t.target_val_loss)) run_log.line(line);
  run_log.sync();
  if (writer) write_text_file_atomic(r.run_dir / "summary.json", summary.to_json().dump(2) + "\n");
  // An interrupted run exits non-zero on every rank, and mpirun kills the job when one
  // rank does: none leaves before rank 0 has written everything.
  if (world > 1) comm->barrier();
  return summary;
}

}  // namespace

std::vector<std::string> TrainSummary::status_lines(std::optional<double> target_val_loss) const {
  std::vector<std::string> lines;
  lines.push_back(fmt::format("{}: {} steps, final val_loss {:.5f}, train_time {:.1f}s ({:.2f} ms/step, {:.0f} "
                              "tokens/s)",
                              status, steps_done, val.empty() ? 0.0 : val.back().val_loss, train_time_s, step_avg_ms,
                              tokens_per_s));
  if (target_val_loss) {
    if (first_at_target)
      lines.push_back(fmt::format("target {:.4f} first reached at step {} (val_loss {:.5f}, train_time {:.1f}s)",
                                  *target_val_loss, first_at_target->step, first_at_target->val_loss,
                                  first_at_target->train_time_s));
    else
      lines.push_back(fmt::format("target {:.4f} not reached", *target_val_loss));
  }
  lines.push_back("run directory: " + run_dir.string());
  return lines;
}

TrainSummary run_training(const config::RunConfig& cfg, const TrainOptions& opts) {
  // Rank 0 keeps the log (the other ranks print only warnings and errors).
  RunLog run_log(!opts.session || opts.session->rank() == 0);
  try {
    return train(cfg, opts, run_log);
  } catch (const std::exception& e) {
    // The reason a run failed, on disk with the rest of its story (when its run
    // directory exists by then); the error itself goes on to main(), which prints it.
    try {
      run_log.line(failure_line(e));
    } catch (const std::exception&) {
      // log.txt itself cannot be written: the original error is the one to report.
    }
    throw;
  }
}

}  // namespace speedrun::train
