"""Checkpoints for the tests, written with numpy alone by the contract of
src/model/model_file.h, so that the sample/eval/interop tests do not depend on the
trainer writing checkpoints:

    <run_dir>/checkpoints/step_<step, 6 digits>.safetensors
    every parameter F32 under its name; metadata speedrun.format = "speedrun-checkpoint/1",
    speedrun.config = the resolved config (the run directory's config.json), speedrun.step

write_checkpoint_from_params() makes one from what `speedrun train --save-params` leaves
(config.json, params/<name>.npy, summary.json's step count); run as a script it does
that for the run directories it is given."""
import json
import os
import pathlib
import sys

import numpy as np

SCRIPTS = pathlib.Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))
import atomic_write  # noqa: E402
import safetensors_numpy  # noqa: E402


def parameter_names(model):
    """Our parameter names in layout order (src/model/param_layout.cpp)."""
    names = ["embed.weight"]
    for i in range(model["n_layer"]):
        b = f"blocks.{i}."
        for layer in ("attn.q", "attn.k", "attn.v", "attn.proj", "mlp.fc", "mlp.proj"):
            names += [f"{b}{layer}.weight", f"{b}{layer}.bias"]
        names += [f"{b}norm1.gains", f"{b}norm2.gains"]
    return names + ["proj.weight", "proj.bias", "norm1.gains", "norm2.gains"]


def write_checkpoint(path, config, params, step, extra_tensors=None, extra_metadata=None):
    """Writes a checkpoint of `params` ({name: array}, written as F32 in parameter order),
    `config` (the resolved config, a dict) and `step`; extra tensors (e.g. optimizer state)
    and metadata go in too. Atomic (scripts/atomic_write.py). Returns the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: np.asarray(params[name], dtype=np.float32) for name in parameter_names(config["model"])}
    tensors.update(extra_tensors or {})
    metadata = {"speedrun.format": safetensors_numpy.CHECKPOINT_FORMAT,
                "speedrun.config": json.dumps(config, separators=(",", ":"), sort_keys=True),
                "speedrun.step": str(step)}
    metadata.update(extra_metadata or {})
    atomic_write.write_atomically(path, safetensors_numpy.safetensors_bytes(tensors, metadata))
    return path


def checkpoint_path(run_dir, step):
    return pathlib.Path(run_dir) / "checkpoints" / f"step_{step:06d}.safetensors"


def write_checkpoint_from_params(run_dir):
    """The checkpoint of a finished `speedrun train --save-params` run: its final
    parameters at its final step, at <run_dir>/checkpoints/step_<steps>.safetensors."""
    run_dir = pathlib.Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    step = json.loads((run_dir / "summary.json").read_text())["steps"]
    params = {name: np.load(run_dir / "params" / f"{name}.npy") for name in parameter_names(config["model"])}
    return write_checkpoint(checkpoint_path(run_dir, step), config, params, step)


def random_params(model, rng, head_scale=3.0):
    """Fresh random values for every parameter (none zero, unlike the spec's init whose
    *proj* weights are zero): weights N(0, 1/fan_in), the embedding N(0, 1), the head
    N(0, head_scale^2/d) so that the logits spread over the cap, biases N(0, 0.01), gains
    1 + N(0, 0.04)."""
    d, hd, f, v = model["d_model"], model["n_head"] * model["head_dim"], model["mlp_ratio"] * model["d_model"], \
        model["padded_vocab_size"]
    shapes = {"embed.weight": (v, d), "proj.weight": (v, d), "proj.bias": (v,), "norm1.gains": (d,),
              "norm2.gains": (d,)}
    for i in range(model["n_layer"]):
        b = f"blocks.{i}."
        for layer, (out, inp) in {"attn.q": (hd, d), "attn.k": (hd, d), "attn.v": (hd, d), "attn.proj": (d, hd),
                                  "mlp.fc": (f, d), "mlp.proj": (d, f)}.items():
            shapes[f"{b}{layer}.weight"], shapes[f"{b}{layer}.bias"] = (out, inp), (out,)
        shapes[f"{b}norm1.gains"] = shapes[f"{b}norm2.gains"] = (d,)
    params = {}
    for name, shape in shapes.items():
        if name == "embed.weight":
            x = rng.standard_normal(shape)
        elif name == "proj.weight":
            x = rng.standard_normal(shape) * head_scale / np.sqrt(d)
        elif name.endswith(".weight"):
            x = rng.standard_normal(shape) / np.sqrt(shape[1])
        elif name.endswith(".gains"):
            x = 1 + 0.2 * rng.standard_normal(shape)
        else:
            x = 0.1 * rng.standard_normal(shape)
        params[name] = x.astype(np.float32)
    return params


def test_seed():
    """Fresh on every run; SPEEDRUN_TEST_SEED replays one (printed by the caller)."""
    return int(os.environ.get("SPEEDRUN_TEST_SEED") or int.from_bytes(os.urandom(4), "little"))


if __name__ == "__main__":
    # python3 tests/python/checkpoint_files.py RUN_DIR...: the checkpoint of each finished
    # `speedrun train --save-params` run (until `train` writes checkpoints itself).
    if len(sys.argv) < 2:
        sys.exit("usage: checkpoint_files.py RUN_DIR... (runs trained with --save-params)")
    for run in sys.argv[1:]:
        try:
            print(write_checkpoint_from_params(run))
        except (OSError, KeyError, ValueError) as e:
            sys.exit(f"error: {run}: {e}")
