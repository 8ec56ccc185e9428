"""safetensors files with numpy alone (no `safetensors` package): what speedrun's
checkpoints are (src/core/safetensors.h, src/model/model_file.h). Used by
scripts/convert_to_pytorch.py and the tests; scripts import it as a sibling module.

Format (https://github.com/huggingface/safetensors, README "Format"): 8 bytes N
(unsigned 64-bit little-endian), N bytes of JSON header {"__metadata__": {str: str},
name: {"dtype", "shape", "data_offsets": [begin, end]}}, then the byte buffer, each
tensor's little-endian C-order bytes at [begin, end) from the buffer's start. speedrun
adds the metadata entry "speedrun.crc32", a JSON object {name: zlib CRC-32 of the
tensor's bytes}, checked here when present."""
import json
import pathlib
import re
import zlib

import numpy as np

# safetensors dtype -> numpy dtype (little-endian). BF16 has no numpy dtype: read as
# uint16 and widened to float32 by read_safetensors.
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
          "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
NUMPY_TO_SAFETENSORS = {np.dtype("<f8"): "F64", np.dtype("<f4"): "F32", np.dtype("<f2"): "F16",
                        np.dtype("<i8"): "I64", np.dtype("<i4"): "I32", np.dtype("<i2"): "I16", np.dtype("i1"): "I8",
                        np.dtype("<u8"): "U64", np.dtype("<u4"): "U32", np.dtype("<u2"): "U16", np.dtype("u1"): "U8",
                        np.dtype("?"): "BOOL"}
CRC_KEY = "speedrun.crc32"
CHECKPOINT_FORMAT = "speedrun-checkpoint/1"


class SafetensorsError(ValueError):
    """A file that is not a complete safetensors file; the message names it."""


def read_safetensors(path):
    """Returns (tensors, metadata): {name: numpy array} in file order and {key: str}.
    Raises SafetensorsError naming the file for a truncated or malformed file or a CRC
    mismatch."""
    path = pathlib.Path(path)
    data = path.read_bytes()

    def bad(why):
        return SafetensorsError(f"{path}: not a complete safetensors file: {why}")

    if len(data) < 8:
        raise bad(f"it is {len(data)} bytes, shorter than the 8-byte header length")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise bad(f"its header length field says {n} bytes, but the file has {len(data) - 8} after it")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"its header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise bad("its header is not a JSON object")
    metadata = header.pop("__metadata__", {}) or {}
    buffer = memoryview(data)[8 + n:]
    for name, info in header.items():
        if (not isinstance(info, dict) or not isinstance(info.get("dtype"), str) or not isinstance(info.get("shape"), list)
                or not isinstance(info.get("data_offsets"), list) or len(info["data_offsets"]) != 2):
            raise bad(f"tensor {name}: expected {{\"dtype\", \"shape\", \"data_offsets\": [begin, end]}}")
    entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    covered = 0
    tensors = {}
    for name, info in entries:
        dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPES:
            raise bad(f"tensor {name}: unknown dtype {dtype}")
        if begin != covered or end > len(buffer) or end < begin:
            raise bad(f"tensor {name}: bytes [{begin}, {end}) do not follow the previous tensor's end {covered} "
                      f"inside the {len(buffer)}-byte buffer")
        covered = end
        array = np.frombuffer(buffer[begin:end], dtype=DTYPES[dtype])
        if array.size != int(np.prod(shape, dtype=np.int64)):
            raise bad(f"tensor {name}: {dtype} {shape} does not fill its {end - begin} bytes")
        array = array.reshape(shape)
        if dtype == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = array
    if covered != len(buffer):
        raise bad(f"the data buffer is {len(buffer)} bytes, the tensors cover {covered}")
    if CRC_KEY in metadata:
        crcs = json.loads(metadata[CRC_KEY])
        for name, info in entries:
            b, e = info["data_offsets"]
            if zlib.crc32(buffer[b:e]) != crcs.get(name):
                raise SafetensorsError(f"{path}: tensor {name} is corrupted (its CRC-32 does not match)")
    return {name: tensors[name] for name, _ in entries}, metadata


def safetensors_bytes(tensors, metadata=None):
    """The file's bytes for {name: numpy array} (in that order) and {key: str} metadata,
    with speedrun's CRC-32 entry, the header padded with spaces to a multiple of 8 as
    speedrun writes it."""
    header, crcs, chunks, offset = {}, {}, [], 0
    for name, array in tensors.items():
        array = np.ascontiguousarray(array)
        dtype = NUMPY_TO_SAFETENSORS[array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype]
        raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        crcs[name] = zlib.crc32(raw)
        chunks.append(raw)
        offset += len(raw)
    meta = dict(metadata or {})
    meta[CRC_KEY] = json.dumps(crcs, separators=(",", ":"))
    text = json.dumps({"__metadata__": meta, **header}, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(chunks)


def find_checkpoint(path):
    """The checkpoint a path names, as speedrun finds it (model/model_file.h): a file is
    itself; a run directory or its checkpoints/ gives the newest step_<N>.safetensors.
    Raises FileNotFoundError saying what is missing."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        return path
    directory = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    steps = [(int(m.group(1)), p) for p in directory.iterdir()
             if (m := re.fullmatch(r"step_(\d+)\.safetensors", p.name))]
    if not steps:
        raise FileNotFoundError(f"{directory} holds no checkpoint (step_<N>.safetensors)")
    return max(steps)[1]
