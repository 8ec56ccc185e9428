"""Complete-or-absent file writes for the project's Python scripts, as the C++ writers do
(src/core/files.h, AtomicFile): every file a script writes (plots, bench and ratio JSON,
generated tables, exported text) goes through here, so a crash or a full disk never leaves a
half-written file under its final name. Scripts import it as a sibling module (Python puts
the script's own directory first on sys.path)."""
import errno
import json
import math
import os
import pathlib


def write_atomically(path, data):
    """Writes `data` to `path` so that it is complete or absent under that name, as the
    C++ writers do (src/core/files.h AtomicFile): a hidden temporary sibling, fsync,
    checked close, rename, fsync of the directory; on failure the temporary is removed
    and whatever `path` held is untouched. Honours the test-only fault injection
    SPEEDRUN_TEST_FAIL_WRITE(_AT) documented there (stages write, sync, close, rename)."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-0")
    fault = os.environ.get("SPEEDRUN_TEST_FAIL_WRITE")
    fault_at = (os.environ.get("SPEEDRUN_TEST_FAIL_WRITE_AT") or "write") if fault and fault in path.name else None

    def injected(stage):
        if fault_at == stage:
            code = errno.EIO if stage == "rename" else errno.ENOSPC
            raise OSError(code, os.strerror(code))

    stage = "while writing"
    try:
        with open(tmp, "xb") as f:
            if fault_at == "write":
                f.write(data[:len(data) // 2])
                f.flush()
            injected("write")
            f.write(data)
            f.flush()
            stage = "at fsync"
            injected("sync")
            os.fsync(f.fileno())
            stage = "at close"
        injected("close")
        stage = "renaming its temporary over it"
        injected("rename")
        os.replace(tmp, path)
        stage = "at fsync of its directory"
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise SystemExit(f"cannot write {path}: {e.strerror or e} ({stage})")


def _finite_or_none(value):
    """JSON cannot represent NaN or Infinity: they become null (as the C++ writers do)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def write_json_atomically(path, obj, indent=2):
    """`obj` as JSON (non-finite floats as null, never NaN/Infinity) through write_atomically."""
    text = json.dumps(_finite_or_none(obj), indent=indent, allow_nan=False) + "\n"
    write_atomically(path, text.encode("utf-8"))


def write_text_atomically(path, text, encoding="utf-8"):
    write_atomically(path, text.encode(encoding))
