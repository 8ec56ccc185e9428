"""Shared helpers for the Python tests: where the binaries and data are, running the
CLI, temporary directories, and writing token shards."""
import os
import pathlib
import struct
import subprocess
import sys
import tempfile
import unittest

SOURCE_DIR = pathlib.Path(os.environ.get("SPEEDRUN_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
BUILD_DIR = pathlib.Path(os.environ.get("SPEEDRUN_BUILD_DIR", SOURCE_DIR / "build"))
SPEEDRUN_BIN = pathlib.Path(os.environ.get("SPEEDRUN_BIN", BUILD_DIR / "speedrun"))
SHARED_DIR = pathlib.Path(os.environ.get("SPEEDRUN_SHARED_DIR", SOURCE_DIR.parent / "shared"))

SHARD_MAGIC = 20240520


def run_speedrun(*args, cwd=None, timeout=600, env=None):
    """Runs the speedrun binary; returns the CompletedProcess (text mode)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run([str(SPEEDRUN_BIN), *map(str, args)], cwd=cwd, timeout=timeout, env=full_env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def write_shard(path, tokens, magic=SHARD_MAGIC, version=1, count=None):
    """Writes a .bin shard; magic/version/count can be corrupted on purpose."""
    header = [0] * 256
    header[0], header[1] = magic, version
    header[2] = len(tokens) if count is None else count
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", *header))
        f.write(struct.pack("<%dH" % len(tokens), *tokens))


def read_shard(path):
    data = pathlib.Path(path).read_bytes()
    header = struct.unpack("<256i", data[:1024])
    assert header[0] == SHARD_MAGIC and header[1] == 1
    n = header[2]
    return list(struct.unpack("<%dH" % n, data[1024:1024 + 2 * n]))


def require_shared(testcase, *relative):
    """Skips (visibly) when ../shared or one of its files is absent."""
    for rel in relative:
        if not (SHARED_DIR / rel).exists():
            testcase.skipTest(f"skipped: {SHARED_DIR / rel} is absent (../shared data not available)")


class SpeedrunTestCase(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="speedrun-test-")
        self.tmp = pathlib.Path(self._tmp.name)

    def tearDown(self):
        self._tmp.cleanup()

    def assertFailsWith(self, result, *fragments, code=1):
        """The command failed with `code` and stderr names every fragment."""
        self.assertEqual(result.returncode, code, f"exit {result.returncode}\nstdout:\n{result.stdout}\n"
                                                  f"stderr:\n{result.stderr}")
        for fragment in fragments:
            self.assertIn(fragment, result.stderr)
        self.assertNotIn("internal error", result.stderr)

    def assertSucceeds(self, result):
        self.assertEqual(result.returncode, 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\n"
                                               f"stderr:\n{result.stderr}")


def main():
    if not SPEEDRUN_BIN.exists():
        print(f"speedrun binary not found at {SPEEDRUN_BIN}; build first", file=sys.stderr)
        sys.exit(1)
    unittest.main()
