#!/usr/bin/env python3
"""Decodes a GPT-2 token shard (.bin) back into text: one file per document
(documents are separated by <|endoftext|>), OUT_DIR/doc000000.txt, doc000001.txt, ...

    scripts/shard_to_text.py SHARD OUT_DIR [--encoder data/gpt2/encoder.json] [--max-tokens N]

Tokenizing the files again in order with `speedrun tokenize OUT_DIR/*.txt` gives back
the same shard when it was made by a GPT-2 tokenizer with an <|endoftext|> before every
document (FineWeb, the Gutenberg shards in ../shared). Used to make benchmark text and
to check the tokenizer end to end.
"""
import argparse
import array
import json
import os
import pathlib
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # however it is run (runpy too)
from atomic_write import write_atomically  # noqa: E402

EOT = 50256
SHARD_MAGIC = 20240520


def byte_decoder():
    """GPT-2's byte-level alphabet, character -> byte: printable Latin-1 stands for
    itself, the other 68 bytes are U+0100, U+0101, ... in byte order."""
    printable = [b for b in range(256) if ord("!") <= b <= ord("~") or 0xA1 <= b <= 0xAC or b >= 0xAE]
    decoder = {chr(b): b for b in printable}
    others = [b for b in range(256) if b not in decoder.values()]
    decoder.update({chr(0x100 + i): b for i, b in enumerate(others)})
    return decoder


def read_shard(path, max_tokens=None):
    with open(path, "rb") as f:
        header = struct.unpack("<256i", f.read(1024))
        if header[0] != SHARD_MAGIC or header[1] != 1:
            sys.exit(f"error: {path} is not a version-1 .bin token shard")
        count = header[2] if max_tokens is None else min(header[2], max_tokens)
        ids = array.array("H")
        ids.frombytes(f.read(2 * count))
    if sys.byteorder != "little":
        ids.byteswap()
    return ids


def main():
    root = pathlib.Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shard")
    parser.add_argument("out_dir")
    parser.add_argument("--encoder", default=str(root / "data" / "gpt2" / "encoder.json"))
    parser.add_argument("--max-tokens", type=int, default=None, help="decode only the first N tokens")
    args = parser.parse_args()

    decoder = byte_decoder()
    with open(args.encoder, encoding="utf-8") as f:
        encoder = json.load(f)
    token_bytes = [b""] * len(encoder)
    for text, i in encoder.items():
        token_bytes[i] = bytes(decoder[c] for c in text)

    ids = read_shard(args.shard, args.max_tokens)
    os.makedirs(args.out_dir, exist_ok=True)
    documents, current, total_bytes = 0, [], 0

    def flush():
        nonlocal documents, current, total_bytes
        data = b"".join(current)
        write_atomically(os.path.join(args.out_dir, f"doc{documents:06d}.txt"), data)
        documents += 1
        total_bytes += len(data)
        current = []

    started = False  # text before the first <|endoftext|> is a document too
    for i in ids:
        if i == EOT:
            if started or current:
                flush()
            started = True
        else:
            current.append(token_bytes[i])
    if started or current:
        flush()
    print(f"{len(ids)} tokens -> {documents} documents, {total_bytes} bytes in {args.out_dir}")


if __name__ == "__main__":
    main()
