"""Differential fuzz test: `speedrun tokenize` against the real tiktoken.

tiktoken is OpenAI's tokenizer; its npm package (the WASM build of the Rust library, with the
gpt2 ranks embedded: no network at run time) is pinned in tests/js/package.json and installed
by scripts/setup.sh (npm ci into tests/js/node_modules, git-ignored). tests/js/tiktoken_encode.cjs
encodes a JSON list of documents with it.

Random documents (a fresh seed each run, printed; SPEEDRUN_TOKENIZER_SEED reruns one) mix
scripts (Latin, CJK, Cyrillic, Arabic, Devanagari, Hangul), emoji sequences (ZWJ sequences,
skin tones, flags, keycaps), contractions ('s 't 're 've 'm 'll 'd, upper-case too, which
GPT-2's regex does not treat as contractions), digits and long digit runs, whitespace runs
(spaces, tabs, newlines, \\r\\n, Unicode spaces), punctuation, random code points (assigned
or not), letters and numbers assigned after this Python's Unicode version (15.0 and 16.0 on
Debian 12's Python 3.11: our tables and tiktoken 1.0.22 are Unicode 16.0), and special-token
text. The text "<|endoftext|>" inside a document is ordinary text on both sides:
speedrun's tokenizer never reads special tokens from text (src/data/tokenizer.h; `speedrun
tokenize` puts the EOT id 50256 between documents itself), and tiktoken is called as
encode(text, allowed_special=[], disallowed_special=[]), which is its encode_ordinary. So no
document's ids contain 50256, and the shard splits back into documents at each EOT.

Identical ids are required for every document; a mismatch prints the document (escaped) and
both id lists. A negative control shows the comparison fails on a perturbed id list. Exit 77
(skipped, with the reason) only when node or the tiktoken package is absent.
"""
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import unicodedata
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import speedrun_testing  # noqa: E402
from speedrun_testing import SpeedrunTestCase, read_shard, run_speedrun  # noqa: E402

JS_DIR = speedrun_testing.SOURCE_DIR / "tests" / "js"
ENCODE_JS = JS_DIR / "tiktoken_encode.cjs"
NODE = shutil.which("node")
EOT = 50256
DOCUMENTS = 3000


def skip_reason():
    if NODE is None:
        return "node is not installed (scripts/setup.sh installs nodejs)"
    if not (JS_DIR / "node_modules" / "tiktoken" / "package.json").exists():
        return f"the npm package tiktoken is not installed in {JS_DIR / 'node_modules'} (run scripts/setup.sh)"
    return None


def chars(lo, hi):
    return [chr(c) for c in range(lo, hi + 1)]


LATIN = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") + list("éèêëàâäçñßøåæœÉÀÇÑÅŁłŽžǅǈ")
CJK = chars(0x4E00, 0x9FA5) + chars(0x3041, 0x3096) + chars(0x30A1, 0x30FA) + chars(0xAC00, 0xD7A3)
CYRILLIC = chars(0x0410, 0x044F) + list("ёЁіїєґ")
ARABIC = chars(0x0621, 0x063A) + chars(0x0641, 0x064A)
ARABIC_MARKS = chars(0x064B, 0x0652)  # harakat: combining marks, neither letter nor number
DEVANAGARI = chars(0x0905, 0x0939)
DEVANAGARI_SIGNS = chars(0x093E, 0x094D)  # vowel signs and virama: marks
SCRIPT_DIGITS = chars(0x0660, 0x0669) + chars(0x0966, 0x096F) + chars(0xFF10, 0xFF19) + list("²³¹½¼①②ⅫⅣ")
EMOJI = ["😀", "😂", "🤖", "🎉", "🔥", "❤", "☕", "👍", "🙏", "🧑", "🌍", "🐍", "🚀", "✨", "👩", "👨"]
SKIN_TONES = chars(0x1F3FB, 0x1F3FF)
ZWJ_SEQUENCES = ["👨\u200d👩\u200d👧\u200d👦", "🏳\ufe0f\u200d🌈", "👩\u200d💻", "🧑\u200d🤝\u200d🧑",
                 "❤\ufe0f\u200d🔥", "🏴\u200d☠\ufe0f", "👁\ufe0f\u200d🗨\ufe0f"]
FLAGS = ["🇺🇸", "🇯🇵", "🇩🇪", "🇮🇳", "🇧🇷", "🇪🇺", "🏴\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F"]
KEYCAPS = [d + "\ufe0f\u20e3" for d in "0123456789#*"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D", "’s", "'"]
WHITESPACE = [" ", " ", " ", "\t", "\n", "\n", "\r\n", "\r", "\u00a0", "\u2009", "\u3000", "\u2028", "\u0085",
              "\u000b", "\u000c", "\u1680", "\u202f", "\u200b", "\ufeff"]
PUNCTUATION = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + list("“”‘’—–…«»¿¡©®™€£¥§¶†•∑∫√∞≠≤")
SPECIAL_TEXT = ["<|endoftext|>", "<|endoftext|>", "<|endoftext|", "<|", "|>", "<|endofprompt|>", "<|fim_prefix|>",
                "endoftext"]


def tables_unicode_version():
    """The Unicode version of speedrun's character classes (src/data/unicode_tables.cpp)."""
    text = (speedrun_testing.SOURCE_DIR / "src" / "data" / "unicode_tables.cpp").read_text()
    return text.split('kUnicodeVersion = "', 1)[1].split('"', 1)[0]


def tables_letters_and_numbers():
    """The code points our tables (src/data/unicode_tables.cpp) class as letter or number."""
    text = (speedrun_testing.SOURCE_DIR / "src" / "data" / "unicode_tables.cpp").read_text()
    out = set()
    for name in ("kLetterRanges", "kNumberRanges"):
        body = text.split(f"const CodePointRange {name}[] = {{", 1)[1].split("};", 1)[0]
        for first, last in re.findall(r"\{0x([0-9A-F]+), 0x([0-9A-F]+)\}", body):
            out.update(range(int(first, 16), int(last, 16) + 1))
    return out


def version_tuple(v):
    return tuple(int(x) for x in v.split("."))


# Letters and numbers assigned after this Python's unicodedata version, per our tables (Unicode
# 16.0, tiktoken 1.0.22's version): on Debian 12's Python (Unicode 14.0) the 9,392 letters and
# numbers new in Unicode 15.0 and 16.0, which tiktoken must class as we do. With a Python at
# least as new as the tables, those assigned after Unicode 3.2 (unicodedata.ucd_3_2_0) instead.
_old_ucd = (unicodedata if version_tuple(unicodedata.unidata_version) < version_tuple(tables_unicode_version())
            else unicodedata.ucd_3_2_0)
NEW_LETTERS_AND_NUMBERS = sorted(chr(cp) for cp in tables_letters_and_numbers()
                                 if _old_ucd.category(chr(cp)) == "Cn")


def random_code_point(rng):
    """Any scalar value of planes 0-3 and 14, assigned or not (unassigned ones are "other" to
    both sides, so code points new in Unicode 15.0/16.0 that are neither letters nor numbers
    are among them too)."""
    while True:
        cp = rng.choice((rng.randrange(0x20, 0x3000), rng.randrange(0x3000, 0x10000),
                         rng.randrange(0x10000, 0x40000), rng.randrange(0xE0000, 0xE0200)))
        if not 0xD800 <= cp <= 0xDFFF:  # surrogates are not scalar values
            return chr(cp)


def word(rng, letters, marks=None, n=None):
    out = []
    for _ in range(n or rng.randint(1, 9)):
        out.append(rng.choice(letters))
        if marks and rng.random() < 0.4:
            out.append(rng.choice(marks))
    return "".join(out)


def fragment(rng):
    """One random piece of a document, and the feature it exercises."""
    kind = rng.randrange(15)
    if kind == 0:
        w = word(rng, LATIN)
        return "latin", rng.choice([w, w.lower(), w.upper(), w.capitalize()])
    if kind == 1:
        return "cjk", word(rng, CJK, n=rng.randint(1, 12))
    if kind == 2:
        return "cyrillic", word(rng, CYRILLIC)
    if kind == 3:
        return "arabic", word(rng, ARABIC, ARABIC_MARKS)
    if kind == 4:
        return "devanagari", word(rng, DEVANAGARI, DEVANAGARI_SIGNS)
    if kind == 5:
        e = rng.choice(EMOJI)
        return "emoji", rng.choice([e, e + rng.choice(SKIN_TONES), e + "\ufe0f", rng.choice(ZWJ_SEQUENCES),
                                    rng.choice(FLAGS), rng.choice(KEYCAPS), "".join(rng.choices(EMOJI, k=3))])
    if kind == 6:
        return "contraction", rng.choice(["", word(rng, LATIN)]) + rng.choice(CONTRACTIONS) + rng.choice(
            ["", "", word(rng, LATIN), "s", " "])
    if kind == 7:
        n = rng.choice([1, 2, 3, 4, rng.randint(5, 80)])
        digits = "".join(rng.choices("0123456789", k=n))
        return "digits", rng.choice([digits, digits, digits + "." + str(rng.randint(0, 999)), f"{rng.randint(0, 10**9):,}",
                                     word(rng, SCRIPT_DIGITS), "x" + digits, digits + "th"])
    if kind == 8:
        return "whitespace", "".join(rng.choices(WHITESPACE, k=rng.choice([1, 2, 3, rng.randint(4, 20)])))
    if kind == 9:
        return "punctuation", "".join(rng.choices(PUNCTUATION, k=rng.randint(1, 6)))
    if kind == 10:
        return "special", rng.choice(SPECIAL_TEXT)
    if kind == 11:
        return "code_point", "".join(random_code_point(rng) for _ in range(rng.randint(1, 4)))
    if kind == 13:  # where the class decides the pieces: contractions, digit runs, mixed words
        w = word(rng, NEW_LETTERS_AND_NUMBERS, n=rng.randint(1, 4))
        return "new_code_point", rng.choice([w, " " + w, w + rng.choice(CONTRACTIONS), "a" + w + "'d",
                                             w + "123", word(rng, LATIN) + w + word(rng, LATIN)])
    if kind == 12:
        return "mixed_word", word(rng, LATIN + CYRILLIC + CJK[:50] + SCRIPT_DIGITS + ARABIC_MARKS + ["'", "_", "-"])
    return "latin", " " + word(rng, LATIN)


def random_document(rng):
    parts, features = [], set()
    for _ in range(rng.randint(1, 40)):
        feature, text = fragment(rng)
        features.add(feature)
        parts.append(text)
        r = rng.random()
        if r < 0.5:
            parts.append(" ")
        elif r < 0.6:
            parts.append(rng.choice(WHITESPACE))
    doc = "".join(parts)
    if rng.random() < 0.2:  # leading/trailing whitespace, where "\s+(?!\S)" matters most
        doc = rng.choice(["", " ", "\n", "  "]) + doc + rng.choice(["", " ", "\n", "   ", "\r\n", "\t"])
    return doc, features


def mismatches(docs, ours, theirs):
    """Indices of the documents whose id lists differ (all of them: a comparison of two lists
    of lists that are not the same length is a mismatch of every document)."""
    if len(ours) != len(theirs):
        return list(range(len(docs)))
    return [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]


def describe(docs, ours, theirs, bad, limit=5):
    lines = [f"{len(bad)} of {len(docs)} documents differ; the first {min(limit, len(bad))}:"]
    for i in bad[:limit]:
        a, b = ours[i] if i < len(ours) else None, theirs[i] if i < len(theirs) else None
        first = next((k for k, (x, y) in enumerate(zip(a or [], b or [])) if x != y), None)
        lines.append(f"document {i}: {ascii(docs[i])}")
        lines.append(f"  speedrun: {a}")
        lines.append(f"  tiktoken: {b}")
        lines.append(f"  first difference at id index {first}")
    return "\n".join(lines)


def tiktoken_ids(docs):
    result = subprocess.run([NODE, str(ENCODE_JS)], input=json.dumps(docs), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, encoding="utf-8", timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"tiktoken_encode.cjs failed (exit {result.returncode}): {result.stderr}")
    return json.loads(result.stdout)


class TokenizerAgainstTiktoken(SpeedrunTestCase):
    def speedrun_ids(self, docs):
        """Each document as a file, one `speedrun tokenize` run; the shard split at each EOT."""
        paths = []
        for i, doc in enumerate(docs):
            path = self.tmp / "docs" / f"{i:05d}.txt"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(doc.encode("utf-8"))
            paths.append(path)
        out = self.tmp / "out"
        result = run_speedrun("tokenize", *paths, "--out", out, "--prefix", "f", "--threads", 2, "--val-tokens", 0)
        self.assertSucceeds(result)
        ids = read_shard(out / "f_train_000001.bin")
        self.assertEqual(ids[0], EOT)
        split, current = [], None
        for t in ids:
            if t == EOT:
                current = []
                split.append(current)
            else:
                current.append(t)
        self.assertEqual(len(split), len(docs), "one EOT per document")
        return split

    def test_random_documents_give_identical_ids(self):
        seed = int(os.environ.get("SPEEDRUN_TOKENIZER_SEED") or int.from_bytes(os.urandom(4), "little"))
        print(f"document seed {seed} (rerun with SPEEDRUN_TOKENIZER_SEED={seed})", flush=True)
        rng = random.Random(seed)
        docs, features = [], {}
        for _ in range(DOCUMENTS):
            doc, fs = random_document(rng)
            docs.append(doc)
            for f in fs:
                features[f] = features.get(f, 0) + 1
        # Every feature must be exercised (not a vacuous fuzz): each in at least 10% of documents.
        expected = {"latin", "cjk", "cyrillic", "arabic", "devanagari", "emoji", "contraction", "digits",
                    "whitespace", "punctuation", "special", "code_point", "new_code_point", "mixed_word"}
        self.assertEqual(set(features), expected)
        for f, count in features.items():
            self.assertGreater(count, DOCUMENTS // 10, f"feature {f}")
        start = time.time()
        ours = self.speedrun_ids(docs)
        middle = time.time()
        theirs = tiktoken_ids(docs)
        total = sum(len(t) for t in theirs)
        print(f"{len(docs)} documents, {sum(len(d) for d in docs)} characters, {total} tokens; "
              f"speedrun {middle - start:.1f} s, tiktoken {time.time() - middle:.1f} s", flush=True)
        self.assertNotIn(EOT, [t for ids in theirs for t in ids], "special-token text must be ordinary text")
        bad = mismatches(docs, ours, theirs)
        self.assertEqual(bad, [], describe(docs, ours, theirs, bad))

        # Negative control: the same comparison must report a single perturbed id (in the longest
        # document, its middle id moved to a neighbouring one), and only that document.
        k = max(range(len(ours)), key=lambda i: len(ours[i]))
        perturbed = [list(ids) for ids in ours]
        j = len(perturbed[k]) // 2
        perturbed[k][j] = perturbed[k][j] + 1 if perturbed[k][j] < EOT - 1 else perturbed[k][j] - 1
        self.assertEqual(mismatches(docs, perturbed, theirs), [k])
        self.assertIn(f"first difference at id index {j}", describe(docs, perturbed, theirs, [k]))
        # ... and a lost document (the lists shifted by one) fails every document.
        self.assertEqual(len(mismatches(docs, ours[1:], theirs)), len(docs))

    def test_known_ids(self):
        """The comparison's tiktoken side gives the documented ids (../shared/data/gpt2/
        reference_cases.json has "Hello world" -> [15496, 995]), special-token text is ordinary,
        and U+13EEC is a letter to it (Unicode 16.0; see the test below)."""
        self.assertEqual(tiktoken_ids(["Hello world", "<|endoftext|>", "don't", "\U00013eec're"]),
                         [[15496, 995], [27, 91, 437, 1659, 5239, 91, 29], [9099, 470], [172, 241, 119, 105, 821]])
        self.assertEqual(self.speedrun_ids(["Hello world", "<|endoftext|>", "don't"]),
                         [[15496, 995], [27, 91, 437, 1659, 5239, 91, 29], [9099, 470]])

    def test_letters_and_numbers_new_in_unicode_15_and_16(self):
        """Code points assigned after Unicode 14.0 (Debian 12's Python), where our tables were
        once generated from, are letters/numbers to tiktoken 1.0.22 (Unicode 16.0) and to our
        tables (Unicode 16.0, scripts/gen_unicode_tables.py). With Unicode 14.0 tables they were
        "other", and each of these documents pre-tokenized differently (the ids in brackets,
        from speedrun built with those tables): U+13EEC Egyptian hieroglyph (Lo, 16.0)
        "\U00013eec're" [172, 241, 119, 105, 6, 260]; U+31350 CJK Extension H (Lo, 15.0) "'s"
        [..., 6, 82]; U+11F04 Kawi letter (Lo, 15.0) "'ll" [..., 6, 297]; U+1E4F1 Nag Mundari
        digit one (Nd, 15.0) and U+11BF1 Sunuwar digit one (Nd, 16.0) as "a<digit>'d" [..., 6, 67]."""
        docs = ["\U00013eec're", "\U00031350's", "\U00011f04'll", "a\U0001e4f1'd", "a\U00011bf1'd"]
        expected = [[172, 241, 119, 105, 821], [172, 109, 235, 238, 338], [172, 239, 120, 226, 1183],
                    [64, 172, 252, 241, 109, 1549], [64, 172, 239, 107, 109, 1549]]
        self.assertEqual(tiktoken_ids(docs), expected)
        self.assertEqual(self.speedrun_ids(docs), expected)
        self.assertEqual(tables_unicode_version(), "16.0.0")
        for c in "\U00013eec\U00031350\U00011f04\U0001e4f1\U00011bf1":
            self.assertIn(c, NEW_LETTERS_AND_NUMBERS)

if __name__ == "__main__":
    reason = skip_reason()
    if reason:
        print(f"skipped: {reason}", file=sys.stderr)
        sys.exit(77)
    speedrun_testing.main()
