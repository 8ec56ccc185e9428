"""scripts/atomic_write.py, through which every script writes its files: a file is complete or
absent under its name (an injected failure at each stage leaves the previous contents and no
temporary), and JSON never holds NaN or Infinity (null instead)."""
import json
import math
import os
import pathlib
import random
import subprocess
import sys
import tempfile
import unittest

import speedrun_testing

SCRIPTS = speedrun_testing.SOURCE_DIR / "scripts"
sys.path.insert(0, str(SCRIPTS))
import atomic_write  # noqa: E402


class AtomicWrite(unittest.TestCase):
    def test_json_non_finite_becomes_null_and_the_rest_is_kept(self):
        rng = random.Random()
        x = rng.uniform(1, 2)
        with tempfile.TemporaryDirectory() as d:
            path = pathlib.Path(d) / "out.json"
            atomic_write.write_json_atomically(path, {"a": x, "nan": math.nan, "inf": [math.inf, -math.inf, x],
                                                      "nested": {"b": math.nan, "c": "text"}})
            text = path.read_text()

            def refuse(constant):
                raise AssertionError(f"JSON holds {constant}")
            j = json.loads(text, parse_constant=refuse)
            self.assertEqual(j, {"a": x, "nan": None, "inf": [None, None, x], "nested": {"b": None, "c": "text"}})
            self.assertEqual(sorted(os.listdir(d)), ["out.json"])

    def test_injected_failure_keeps_the_old_file_at_every_stage(self):
        with tempfile.TemporaryDirectory() as d:
            path = pathlib.Path(d) / "ratio.json"
            path.write_text("the user's file\n")
            for stage in ("write", "sync", "close", "rename"):
                env = dict(os.environ, SPEEDRUN_TEST_FAIL_WRITE="ratio.json", SPEEDRUN_TEST_FAIL_WRITE_AT=stage)
                r = subprocess.run([sys.executable, "-c",
                                    "import sys; sys.path.insert(0, sys.argv[1]); import atomic_write; "
                                    "atomic_write.write_json_atomically(sys.argv[2], {'ratio': 0.5})",
                                    str(SCRIPTS), str(path)], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, timeout=60)
                self.assertNotEqual(r.returncode, 0, stage)
                self.assertIn(f"cannot write {path}", r.stderr, stage)
                self.assertEqual(path.read_text(), "the user's file\n", stage)
                self.assertEqual(sorted(os.listdir(d)), ["ratio.json"], stage)
            # Negative control: without the fault the same call replaces the file.
            atomic_write.write_json_atomically(path, {"ratio": 0.5})
            self.assertEqual(json.loads(path.read_text()), {"ratio": 0.5})


if __name__ == "__main__":
    unittest.main()
