"""Shared helpers for the Python tests: where the binaries and data are, running the
CLI, temporary directories, and writing token shards."""
import os
import pathlib
import re
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


# The name of a core/files.h AtomicFile temporary (".<name>.tmp-<pid>-<n>"): what a
# killed writer may leave; never a file under its final name.
TEMPORARY_NAME = re.compile(r"^\..+\.tmp-\d+-\d+$")


def fault_env(name, stage="write"):
    """The test-only fault injection of core/files.h: every file whose name contains
    `name` fails at `stage` (write, sync, close, rename)."""
    return {"SPEEDRUN_TEST_FAIL_WRITE": name, "SPEEDRUN_TEST_FAIL_WRITE_AT": stage}


def run_on_small_tmpfs(testcase, mount_point, size, copy_to, argv, timeout=600):
    """Runs argv (a list) with a tmpfs of `size` (e.g. "2m") mounted at mount_point in
    a private mount namespace (the real full disk of issue 12), copying the tmpfs's
    contents to copy_to before the namespace ends; returns the CompletedProcess.
    Skips the test, saying why, where no tmpfs can be mounted (no root, no user
    namespaces, no unshare)."""
    mount_point.mkdir(parents=True, exist_ok=True)
    copy_to.mkdir(parents=True, exist_ok=True)
    script = ('size=$1; mnt=$2; dst=$3; shift 3; mount -t tmpfs -o size="$size" tmpfs "$mnt" || exit 97; '
              '"$@"; rc=$?; cp -a "$mnt/." "$dst/"; exit $rc')
    why = "unshare not found"
    for unshare in (["unshare", "--mount", "--propagation", "private"],
                    ["unshare", "--user", "--map-root-user", "--mount"]):
        try:
            r = subprocess.run([*unshare, "sh", "-c", script, "sh", size, str(mount_point), str(copy_to),
                                *map(str, argv)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=timeout)
        except FileNotFoundError:
            break
        if r.returncode != 97 and "unshare failed" not in r.stderr and "unshare:" not in r.stderr:
            return r
        why = r.stderr.strip() or "mount failed"
    testcase.skipTest(f"skipped: cannot mount a small tmpfs here ({why}); needs root or user namespaces")


def require_shared(testcase, *relative):
    """Skips (visibly) when ../shared or one of its files is absent."""
    for rel in relative:
        if not (SHARED_DIR / rel).exists():
            testcase.skipTest(f"skipped: {SHARED_DIR / rel} is absent (../shared data not available)")


HAVE_MATPLOTLIB = subprocess.run(["/usr/bin/python3", "-c", "import matplotlib"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0

# matplotlib's default colour cycle (tab:blue, tab:orange, tab:green, ...): the colour of
# the i-th curve of every plot speedrun draws.
CURVE_COLOURS = [(0x1f, 0x77, 0xb4), (0xff, 0x7f, 0x0e), (0x2c, 0xa0, 0x2c), (0xd6, 0x27, 0x28)]


def png_size(path):
    """(width, height) from a PNG's IHDR, after checking the signature."""
    data = pathlib.Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def curve_pixels(path, colour, tolerance=40):
    """How much of a PNG a curve of `colour` (RGB 0-255) covers: (pixel count, the
    fraction of the image's rows holding any of it). A curve squashed into a stub covers
    few rows; one drawn across the plot, many. Lines, markers and the legend swatch count
    (the swatch: a few rows). Needs matplotlib (its PNG reader)."""
    import matplotlib.image
    img = matplotlib.image.imread(str(path))[:, :, :3] * 255.0
    dist = abs(img[:, :, 0] - colour[0]) + abs(img[:, :, 1] - colour[1]) + abs(img[:, :, 2] - colour[2])
    hit = dist < tolerance
    return int(hit.sum()), float(hit.any(axis=1).sum()) / img.shape[0]


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
