#!/usr/bin/env python3
"""Generates src/data/unicode_tables.cpp: the code-point classes that GPT-2's
pre-tokenization regex needs (\\p{L}, \\p{N} and \\s), as sorted, merged ranges.

  letter     = general category L*  (Lu Ll Lt Lm Lo)
  number     = general category N*  (Nd Nl No)
  whitespace = the Unicode White_Space property (what \\s means in the Rust regex
               crate that tiktoken uses, and in Python's `regex` module)

Usage: scripts/gen_unicode_tables.py [OUTPUT]   (default: src/data/unicode_tables.cpp)

The tables follow the Unicode version of the Python that runs this script
(unicodedata.unidata_version); it is recorded in the generated file.
"""
import os
import sys
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # however it is run (runpy too)
from atomic_write import write_text_atomically  # noqa: E402

# White_Space is not exposed by unicodedata; it is a small, stable list (PropList.txt).
# It has not changed since Unicode 6.3 (U+180E was removed then).
WHITE_SPACE = [
    (0x0009, 0x000D), (0x0020, 0x0020), (0x0085, 0x0085), (0x00A0, 0x00A0),
    (0x1680, 0x1680), (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F),
    (0x205F, 0x205F), (0x3000, 0x3000),
]


def ranges_where(predicate):
    out = []
    start = None
    for cp in range(0x110000 + 1):
        inside = cp <= 0x10FFFF and predicate(cp)
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            out.append((start, cp - 1))
            start = None
    return out


def emit(name, ranges):
    lines = [f"const CodePointRange {name}[] = {{"]
    row = []
    for first, last in ranges:
        row.append(f"{{0x{first:04X}, 0x{last:04X}}}")
        if len(row) == 4:
            lines.append("    " + ", ".join(row) + ",")
            row = []
    if row:
        lines.append("    " + ", ".join(row) + ",")
    lines.append("};")
    return "\n".join(lines)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    output = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "src", "data", "unicode_tables.cpp")
    version = unicodedata.unidata_version
    letters = ranges_where(lambda cp: unicodedata.category(chr(cp)).startswith("L"))
    numbers = ranges_where(lambda cp: unicodedata.category(chr(cp)).startswith("N"))
    ws_set = {cp for first, last in WHITE_SPACE for cp in range(first, last + 1)}
    assert not any(unicodedata.category(chr(cp))[0] in "LN" for cp in ws_set)
    text = f"""// GENERATED FILE - do not edit. Regenerate with:
//   python3 scripts/gen_unicode_tables.py
// Source: Python {sys.version.split()[0]} unicodedata, Unicode {version}.
//   letter     = general categories L* ({len(letters)} ranges)
//   number     = general categories N* ({len(numbers)} ranges)
//   whitespace = the White_Space property ({len(WHITE_SPACE)} ranges)
//
// Caveat: the reference token ids come from tiktoken, whose Rust regex crate may use a
// newer Unicode version. Code points first assigned as letters/numbers after Unicode
// {version} are "other" here, so text using them may pre-tokenize differently (as may
// the rare code points whose category changed in a later version).
#include "data/unicode_tables.h"

namespace speedrun::data::unicode {{

const char* const kUnicodeVersion = "{version}";

{emit("kLetterRanges", letters)}
const std::span<const CodePointRange> kLetters(kLetterRanges);

{emit("kNumberRanges", numbers)}
const std::span<const CodePointRange> kNumbers(kNumberRanges);

{emit("kWhitespaceRanges", WHITE_SPACE)}
const std::span<const CodePointRange> kWhitespace(kWhitespaceRanges);

}}  // namespace speedrun::data::unicode
"""
    write_text_atomically(output, text)
    print(f"wrote {output}: Unicode {version}, {len(letters)} letter, {len(numbers)} number, "
          f"{len(WHITE_SPACE)} whitespace ranges")


if __name__ == "__main__":
    main()
