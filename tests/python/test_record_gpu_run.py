"""scripts/record_gpu_run.py on a fabricated $OUT (no GPU needed): `manifest` turns
cuda_check.sh's step list and gtest logs into run.json; `record` copies a device tool's files
folder into docs/gpu-runs/<date>-<commit>/ with a README line of the command and machine,
never overwriting a recorded run, and refuses missing or malformed input by name."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import speedrun_testing  # noqa: E402

SCRIPT = speedrun_testing.SOURCE_DIR / "scripts" / "record_gpu_run.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=60)


class RecordGpuRun(speedrun_testing.SpeedrunTestCase):
    def fabricate_out(self, bench_ms=283.9, torch_ms=129.8):
        """What cuda_check.sh leaves in $OUT after a run: its logs, step list and results."""
        work, out = self.tmp / "work", self.tmp / "out"
        work.mkdir()
        out.mkdir()
        (work / "test-model.log").write_text(
            "[==========] Running 7 tests\n[  PASSED  ] 5 tests.\n[  SKIPPED ] 1 test, listed below:\n"
            "[  SKIPPED ] CudaModel.X\n[  FAILED  ] 1 test, listed below:\n[  FAILED  ] CudaModel.Y (3 ms)\n")
        (work / "test-optim.log").write_text("[  PASSED  ] 12 tests.\n")
        (work / "bench-kernels.log").write_text("no gtest here\n")
        (work / "steps.tsv").write_text(
            f"test-model\t1\t42\t{work / 'test-model.log'}\n"
            f"test-optim\t0\t17\t{work / 'test-optim.log'}\n"
            f"bench-kernels\t124\t300\t{work / 'bench-kernels.log'}\n")
        (work / "gpu-info.csv").write_text("NVIDIA H200, 570.86.15, 143771 MiB\n")
        r = run("manifest", "--steps", work / "steps.tsv", "--out", out / "run.json", "--status", 1,
                "--command", "scripts/cuda_check.sh --no-mpi", "--commit", "abc1234", "--gpu-info",
                work / "gpu-info.csv")
        self.assertSucceeds(r)
        (out / "bench_speedrun.json").write_text(json.dumps({"micro_batch_ms": bench_ms, "step_ms": 2400.0}))
        (out / "bench_torch_compiled.json").write_text(json.dumps({"micro_batch_ms": torch_ms}))
        (out / "bench_kernels.json").write_text(json.dumps({"kernels": [{"name": "attention_forward", "ms": 9.5}]}))
        (out / "summary.txt").write_text("kernel table\nattention_forward 9.5 ms\n")
        (out / "cuda-check.tar.gz").write_bytes(b"\x1f\x8b not copied")
        return out

    def test_manifest_counts_steps_and_tests(self):
        out = self.fabricate_out()
        run_json = json.loads((out / "run.json").read_text())
        self.assertEqual(run_json["commit"], "abc1234")
        self.assertEqual(run_json["status"], 1)
        self.assertEqual(run_json["command"], "scripts/cuda_check.sh --no-mpi")
        self.assertEqual(run_json["machine"]["gpus"],
                         [{"name": "NVIDIA H200", "driver": "570.86.15", "memory": "143771 MiB"}])
        self.assertRegex(run_json["date"], r"^\d{4}-\d{2}-\d{2}$")
        steps = {s["name"]: s for s in run_json["steps"]}
        self.assertEqual(steps["test-model"], {"name": "test-model", "rc": 1, "seconds": 42, "passed": 5,
                                               "skipped": 1, "failed": 1})
        self.assertEqual(steps["test-optim"]["passed"], 12)
        self.assertEqual(steps["bench-kernels"]["rc"], 124)
        self.assertNotIn("passed", steps["bench-kernels"])
        self.assertEqual(run_json["tests"], {"passed": 17, "failed": 1, "skipped": 1})

    def test_record_copies_results_with_a_readme(self):
        out = self.fabricate_out()
        docs = self.tmp / "docs" / "gpu-runs"
        r = run("record", out, "--docs", docs)
        self.assertSucceeds(r)
        date = json.loads((out / "run.json").read_text())["date"]
        dest = docs / f"{date}-abc1234"
        self.assertEqual(r.stdout.strip(), str(dest))
        self.assertEqual(sorted(p.name for p in dest.iterdir()),
                         ["README.md", "bench_kernels.json", "bench_speedrun.json", "bench_torch_compiled.json",
                          "run.json", "summary.txt"])
        for name in ("bench_speedrun.json", "bench_torch_compiled.json", "bench_kernels.json", "summary.txt"):
            self.assertEqual((dest / name).read_bytes(), (out / name).read_bytes(), name)
        readme = (dest / "README.md").read_text()
        self.assertIn("Command: `scripts/cuda_check.sh --no-mpi` (exit status 1), machine: NVIDIA H200 "
                      "(143771 MiB, driver 570.86.15).", readme)
        self.assertIn("Tests: 17 passed, 1 failed, 1 skipped", readme)
        self.assertIn("`bench_speedrun.json`: speedrun bench --device cuda", readme)
        self.assertIn("Absent from this run: `bench_kernels_flash_fast.json`, `ratio_bench_speedrun.json`.", readme)
        self.assertEqual([p.name for p in docs.iterdir()], [dest.name])  # no temporary left behind

        # A second record of the same run is refused and changes nothing.
        before = (dest / "README.md").read_text()
        (out / "bench_speedrun.json").write_text(json.dumps({"micro_batch_ms": 1.0}))
        self.assertFailsWith(run("record", out, "--docs", docs), str(dest), "exists already")
        self.assertEqual((dest / "README.md").read_text(), before)
        self.assertIn("283.9", (dest / "bench_speedrun.json").read_text())

    def test_bad_input_is_refused_by_name(self):
        out = self.fabricate_out()
        docs = self.tmp / "docs"
        # A bench JSON without its figure.
        (out / "bench_torch_compiled.json").write_text(json.dumps({"ms": "fast"}))
        self.assertFailsWith(run("record", out, "--docs", docs), "bench_torch_compiled.json", "micro_batch_ms")
        (out / "bench_torch_compiled.json").write_text("{not json")
        self.assertFailsWith(run("record", out, "--docs", docs), "bench_torch_compiled.json", "not readable JSON")
        self.assertFalse(docs.exists() and any(docs.iterdir()))  # nothing half-recorded
        # No run.json, or one without a commit.
        (out / "run.json").unlink()
        self.assertFailsWith(run("record", out, "--docs", docs), str(out / "run.json"), "no such file")
        (out / "run.json").write_text(json.dumps({"date": "2026-11-30", "command": "x"}))
        self.assertFailsWith(run("record", out, "--docs", docs), "'commit' is missing")
        (out / "run.json").write_text(json.dumps({"date": "30.11.2026", "command": "x", "commit": "a"}))
        self.assertFailsWith(run("record", out, "--docs", docs), "is not YYYY-MM-DD")
        self.assertFailsWith(run("record", self.tmp / "nowhere", "--docs", docs), "not a folder")
        # A malformed step list.
        (self.tmp / "bad.tsv").write_text("test-model 0 3\n")
        self.assertFailsWith(run("manifest", "--steps", self.tmp / "bad.tsv", "--out", self.tmp / "r.json"),
                             "bad.tsv:1", "separated by tabs")
        self.assertFalse((self.tmp / "r.json").exists())
        # Usage.
        self.assertEqual(run().returncode, 2)
        self.assertEqual(run("record").returncode, 2)


if __name__ == "__main__":
    speedrun_testing.main()
