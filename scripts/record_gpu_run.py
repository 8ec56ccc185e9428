#!/usr/bin/env python3
"""The machine-readable record of a GPU session (issue 14, deliverable 7): what
scripts/cuda_check.sh leaves in $OUT, and its copy into docs/gpu-runs/<date>-<commit>/.

    record_gpu_run.py manifest --steps STEPS.tsv --out RUN.json [--command CMD] [--status N]
                               [--gpu-info FILE] [--commit SHA] [--bundle-commit FILE]
        (run by cuda_check.sh on the GPU machine) writes run.json: the date (UTC), the
        commit, the command, the machine (nvidia-smi's name, driver and memory per GPU),
        the exit status, every step (name, rc, seconds, gtest's passed/failed/skipped
        counts) and the tests' totals.

    record_gpu_run.py record FILES_DIR [--docs DIR] [--machine TEXT]
        (run here, on the device tool's files folder, `files_at`) copies run.json,
        summary.txt (its text includes the kernel table), every *.json and *.md of FILES_DIR
        (the speedrun and PyTorch bench JSON with their `micro_batch_ms`, the kernel table's
        JSON, the ratio, the gpu-mini comparison) into DIR/<date>-<commit>/ (DIR:
        docs/gpu-runs) with a README.md saying the command, the machine and the files, then
        prints the folder. Never overwrites: an existing folder is refused (exit 1). The
        folder is complete or absent (built under a temporary name, then renamed). The
        packed logs (cuda-check.tar.gz) are not copied: they stay with the session.

Errors name the file or value (exit 1); bad usage exits 2.
"""
import argparse
import datetime
import json
import os
import pathlib
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # however it is run
from atomic_write import write_json_atomically  # noqa: E402

# The results a full run leaves; each is listed in the README, absent ones as absent.
EXPECTED = {
    "bench_speedrun.json": "speedrun bench --device cuda (micro_batch_ms, step_ms)",
    "bench_torch_compiled.json": "scripts/bench_torch_gpu.py --compile (micro_batch_ms, step_ms)",
    "bench_kernels.json": "speedrun bench --kernels: the kernel table (default kernels)",
    "bench_kernels_flash_fast.json": "the kernel table with SPEEDRUN_ATTENTION=flash SPEEDRUN_RMSNORM=fast",
    "ratio_bench_speedrun.json": "scripts/gpu_ratio.py: speedrun / torch.compile",
}
# Files that must carry a positive `micro_batch_ms` when present (the side-by-side's figure).
WITH_MS = ("bench_speedrun.json", "bench_torch_compiled.json")
COUNT = re.compile(r"^\[  (PASSED|FAILED|SKIPPED) ? *\] (\d+) tests?", re.M)


def fail(message):
    print(f"record_gpu_run.py: {message}", file=sys.stderr)
    sys.exit(1)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        fail(f"{path}: no such file")
    except (OSError, ValueError) as e:
        fail(f"{path}: not readable JSON ({e})")


# ---- manifest (on the GPU machine) ------------------------------------------------------------
def read_steps(path):
    """STEPS.tsv: one line per step, `name<TAB>rc<TAB>seconds<TAB>log path`."""
    steps = []
    try:
        lines = pathlib.Path(path).read_text().splitlines()
    except OSError as e:
        fail(f"{path}: {e.strerror or e}")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 4 or not re.fullmatch(r"-?\d+", parts[1]) or not re.fullmatch(r"\d+", parts[2]):
            fail(f"{path}:{n}: expected name, rc, seconds and log path separated by tabs, got {line!r}")
        step = {"name": parts[0], "rc": int(parts[1]), "seconds": int(parts[2])}
        try:
            log = pathlib.Path(parts[3]).read_text(errors="replace")
        except OSError:
            log = ""
        for kind, count in COUNT.findall(log):
            step[kind.lower()] = step.get(kind.lower(), 0) + int(count)
        steps.append(step)
    return steps


def read_gpu_info(path):
    """nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader lines."""
    gpus = []
    if not path:
        return gpus
    try:
        text = pathlib.Path(path).read_text()
    except OSError:
        return gpus
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 3 and fields[0]:
            gpus.append({"name": fields[0], "driver": fields[1], "memory": fields[2]})
    return gpus


def manifest(a):
    steps = read_steps(a.steps)
    commit = a.commit
    if (not commit or commit == "?") and a.bundle_commit:
        try:
            commit = pathlib.Path(a.bundle_commit).read_text().split()[0][:12]
        except (OSError, IndexError):
            commit = None
    run = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "time_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit or "unknown",
        "command": a.command,
        "status": a.status,
        "machine": {"gpus": read_gpu_info(a.gpu_info), "cpus": os.cpu_count()},
        "steps": steps,
        "tests": {k: sum(s.get(k, 0) for s in steps) for k in ("passed", "failed", "skipped")},
    }
    write_json_atomically(a.out, run)


# ---- record (here) ------------------------------------------------------------------------------
def machine_text(run):
    gpus = run.get("machine", {}).get("gpus") or []
    if not gpus:
        return "unknown (run.json names no GPU)"
    names = sorted({f"{g['name']} ({g['memory']}, driver {g['driver']})" for g in gpus})
    return f"{len(gpus)} x " + "; ".join(names) if len(gpus) > 1 else names[0]


def record(a):
    src = pathlib.Path(a.files_dir)
    if not src.is_dir():
        fail(f"{src}: not a folder (give the device tool's files folder, files_at)")
    run = read_json(src / "run.json")
    for key in ("date", "commit", "command"):
        if not isinstance(run.get(key), str) or not run[key]:
            fail(f"{src / 'run.json'}: '{key}' is missing or not a string")
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", run["date"]):
        fail(f"{src / 'run.json'}: date {run['date']!r} is not YYYY-MM-DD")
    if not re.fullmatch(r"[0-9A-Za-z._-]+", run["commit"]):
        fail(f"{src / 'run.json'}: commit {run['commit']!r} has characters a folder name cannot take")
    for name in WITH_MS:
        if (src / name).exists():
            j = read_json(src / name)
            ms = j.get("micro_batch_ms") if isinstance(j, dict) else None
            if not isinstance(ms, (int, float)) or isinstance(ms, bool) or ms <= 0:
                fail(f"{src / name}: 'micro_batch_ms' is missing or not a positive number")
    files = sorted(p for p in src.iterdir()
                   if p.is_file() and (p.suffix in (".json", ".md") or p.name == "summary.txt")
                   and not p.name.startswith("."))
    docs = pathlib.Path(a.docs)
    dest = docs / f"{run['date']}-{run['commit']}"
    if dest.exists():
        fail(f"{dest} exists already: this run is recorded (remove the folder first to record it again)")
    docs.mkdir(parents=True, exist_ok=True)
    tmp = docs / f".{dest.name}.tmp-{os.getpid()}"
    try:
        tmp.mkdir()
        for p in files:
            shutil.copyfile(p, tmp / p.name)
        tests = run.get("tests", {})
        lines = [
            f"# GPU run {run['date']}, commit {run['commit']}",
            "",
            f"Command: `{run['command']}` (exit status {run.get('status', '?')}), "
            f"machine: {a.machine or machine_text(run)}.",
            "",
            f"Tests: {tests.get('passed', 0)} passed, {tests.get('failed', 0)} failed, "
            f"{tests.get('skipped', 0)} skipped (per step in run.json; the logs were packed in "
            "cuda-check.tar.gz, not committed).",
            "",
            "Files:",
            "",
        ]
        for p in files:
            lines.append(f"- `{p.name}`" + (f": {EXPECTED[p.name]}" if p.name in EXPECTED else ""))
        absent = [n for n in EXPECTED if not (src / n).exists()]
        if absent:
            lines += ["", "Absent from this run: " + ", ".join(f"`{n}`" for n in absent) + "."]
        with open(tmp / "README.md", "w") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, dest)  # the folder appears complete or not at all
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        fail(f"cannot write {dest}: {e.strerror or e}")
    print(dest)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True)
    m = sub.add_parser("manifest", help="write run.json (cuda_check.sh, on the GPU machine)")
    m.add_argument("--steps", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--command", default="scripts/cuda_check.sh")
    m.add_argument("--status", type=int, default=0)
    m.add_argument("--gpu-info")
    m.add_argument("--commit")
    m.add_argument("--bundle-commit")
    r = sub.add_parser("record", help="copy a run's files into docs/gpu-runs/<date>-<commit>/")
    r.add_argument("files_dir")
    r.add_argument("--docs", default=str(pathlib.Path(__file__).resolve().parent.parent / "docs" / "gpu-runs"))
    r.add_argument("--machine", help="the machine in words, when run.json names none")
    a = ap.parse_args()
    manifest(a) if a.verb == "manifest" else record(a)


if __name__ == "__main__":
    main()
