"""`speedrun tokenize`'s inputs (issue 19): JSON Lines, @file lists, directories, standard
input — each giving the same shards as the same documents as text files — with clear
errors naming the file (and line), progress with an ETA for inputs over a few MB, and a
val shard by default that a run config can name."""
import json
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import speedrun_testing  # noqa: E402
from speedrun_testing import SpeedrunTestCase, read_shard, run_speedrun  # noqa: E402

EOT = 50256
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "Hello", "world", "naïve", "café", "日本",
         "émoji 🙂", "don't", "1234", "\n", "  "]


def fresh_docs(rng, n):
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 40))) for _ in range(n)]


class TokenizeInputsTest(SpeedrunTestCase):
    def setUp(self):
        super().setUp()
        self.rng = random.Random(int.from_bytes(os.urandom(4), "little"))
        self.docs = fresh_docs(self.rng, 7)

    def tokenize(self, *args, out="out", cwd=None, input=None, env=None):
        full_env = dict(os.environ, **(env or {}))
        return subprocess.run([str(speedrun_testing.SPEEDRUN_BIN), "tokenize", *map(str, args), "--out",
                               str(self.tmp / out), "--prefix", "p", "--val-tokens", "0"],
                              cwd=cwd or self.tmp, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=full_env)

    def shard(self, out="out"):
        return read_shard(self.tmp / out / "p_train_000001.bin")

    def reference(self):
        """The documents as text files, one each: the shard every other input must give."""
        paths = []
        for i, d in enumerate(self.docs):
            p = self.tmp / "ref" / f"{i}.txt"
            p.parent.mkdir(exist_ok=True)
            p.write_text(d, encoding="utf-8")
            paths.append(p)
        r = self.tokenize(*paths, out="ref-out")
        self.assertEqual(r.returncode, 0, r.stderr)
        ids = read_shard(self.tmp / "ref-out" / "p_train_000001.bin")
        self.assertEqual(ids.count(EOT), len(self.docs))
        return ids

    def test_jsonl_gives_the_same_shard_as_text_files(self):
        expected = self.reference()
        lines = [json.dumps({"id": i, "text": d, "meta": {"text": "not this"}}, ensure_ascii=i % 2 == 0)
                 for i, d in enumerate(self.docs)]
        lines.insert(3, "")  # blank lines are skipped
        (self.tmp / "a.jsonl").write_text("\n".join(lines[:4]) + "\n", encoding="utf-8")
        (self.tmp / "b.jsonl").write_text("\r\n".join(lines[4:]), encoding="utf-8")  # CRLF, no final newline
        r = self.tokenize("a.jsonl", "b.jsonl", "--jsonl-field", "text")
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertEqual(self.shard(), expected)
        # Standard input, JSON Lines.
        r = self.tokenize("-", "--jsonl-field", "text", out="stdin",
                          input=((self.tmp / "a.jsonl").read_bytes() + (self.tmp / "b.jsonl").read_bytes()))
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        # b.jsonl's first line follows a.jsonl's last without a newline only if a.jsonl
        # lacked one: it has one, so the records are the same.
        self.assertEqual(self.shard("stdin"), expected)

    def test_jsonl_errors_name_the_file_line_and_field(self):
        f = self.tmp / "c.jsonl"
        cases = [
            ('{"text": "a"}\n{"text": "b"\n', "c.jsonl:2: malformed JSON Lines record"),
            ('{"text": "a"}\n\n{"body": "b", "id": 3}\n', 'c.jsonl:3: no key "text" (--jsonl-field) in this record; '
                                                          'its keys: body, id'),
            ('{"text": 5}\n', 'c.jsonl:1: key "text" holds number, expected the document\'s text as a string'),
            ('["text"]\n', "c.jsonl:1: expected a JSON object on each line"),
        ]
        for text, fragment in cases:
            with self.subTest(fragment=fragment):
                f.write_text(text)
                r = run_speedrun("tokenize", f, "--jsonl-field", "text", "--out", self.tmp / "o", "--force")
                self.assertFailsWith(r, fragment)
        # A .jsonl given as text would tokenize the JSON syntax: refused, naming the flag.
        f.write_text('{"text": "a"}\n')
        self.assertFailsWith(run_speedrun("tokenize", f, "--out", self.tmp / "o"), "looks like JSON Lines",
                             "--jsonl-field")
        f.write_text("\n\n")
        self.assertFailsWith(run_speedrun("tokenize", f, "--jsonl-field", "text", "--out", self.tmp / "o"),
                             "hold no document")

    def test_directories_recursively_with_a_glob_and_file_lists(self):
        expected = self.reference()
        # The same documents spread over a tree, in sorted path order; other files around them.
        tree = self.tmp / "corpus"
        names = ["a/0.txt", "a/1.txt", "a/b/2.txt", "a/b/3.txt", "c/4.txt", "c/5.txt", "d.txt"]
        for name, d in zip(names, self.docs):
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            (tree / name).write_text(d, encoding="utf-8")
        (tree / "a" / "notes.md").write_text("not a document")
        (tree / ".git").mkdir()
        (tree / ".git" / "x.txt").write_text("hidden: skipped")
        (tree / "c" / ".draft.txt").write_text("hidden: skipped")
        r = self.tokenize("corpus")
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertIn("corpus: 7 file(s) matching *.txt", r.stderr.decode())
        self.assertEqual(self.shard(), expected)
        # A glob with a '/' matches the path below the directory.
        r = self.tokenize("corpus", "--glob", "a/b/*.txt", out="sub")
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        ids = self.shard("sub")
        self.assertEqual(ids.count(EOT), 2)
        self.assertEqual(ids, expected[expected.index(EOT, expected.index(EOT, expected.index(EOT) + 1) + 1):][
                         :len(ids)])
        # @list: one path per line, relative to the current directory; a listed directory expands.
        (self.tmp / "list.txt").write_text("corpus/a\n\ncorpus/c/4.txt\r\ncorpus/c/5.txt\n" +
                                           str(tree / "d.txt") + "\n")
        r = self.tokenize("@list.txt", out="listed")
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertEqual(self.shard("listed"), expected)
        self.assertFailsWith(run_speedrun("tokenize", "@missing.txt", "--out", self.tmp / "o", cwd=self.tmp),
                             "file list missing.txt (from @missing.txt) does not exist")
        (self.tmp / "bad-list.txt").write_text("corpus/a\ncorpus/nope.txt\n")
        self.assertFailsWith(run_speedrun("tokenize", "@bad-list.txt", "--out", self.tmp / "o", cwd=self.tmp),
                             "corpus/nope.txt (listed in bad-list.txt) does not exist")
        # The same file twice, once through a directory and once by name: refused.
        self.assertFailsWith(run_speedrun("tokenize", "corpus", "corpus/d.txt", "--out", self.tmp / "o", cwd=self.tmp),
                             "is the same file as", "pass it once")
        self.assertFalse((self.tmp / "o").exists() and any((self.tmp / "o").glob("*.bin")))

    def test_standard_input_as_text_and_twice(self):
        r = self.tokenize("-", input=self.docs[0].encode("utf-8"), out="s")
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        ref = self.tmp / "one.txt"
        ref.write_text(self.docs[0], encoding="utf-8")
        self.assertEqual(r.returncode, 0)
        self.assertEqual(self.tokenize(ref, out="f").returncode, 0)
        self.assertEqual(self.shard("s"), self.shard("f"))
        self.assertFailsWith(run_speedrun("tokenize", "-", "-", "--out", self.tmp / "o"), "standard input (-) is given twice")

    def test_progress_and_eta_over_a_few_mb(self):
        big = self.tmp / "big.txt"
        text = " ".join(self.rng.choice(WORDS[:10]) for _ in range(1_000_000))  # ~5 MB
        big.write_text(text)
        self.assertGreater(big.stat().st_size, 4 << 20)
        small = self.tmp / "small.txt"
        small.write_text("a small document")
        r = run_speedrun("tokenize", small, big, "--out", self.tmp / "o")
        self.assertSucceeds(r)
        progress = [l for l in r.stderr.splitlines() if l.startswith("tokenize: ") and " MB (" in l]
        self.assertTrue(progress, r.stderr)
        self.assertRegex(progress[-1], r"^tokenize: \d+\.\d of \d+\.\d MB \(100%\), 2 documents, \d+\.\d MB/s, ETA ")
        r = run_speedrun("tokenize", small, big, "--out", self.tmp / "o-quiet", "-q")  # --quiet: none
        self.assertSucceeds(r)
        self.assertNotIn(" MB (", r.stderr)
        # Under the threshold: no progress lines (negative control).
        r = run_speedrun("tokenize", small, "--out", self.tmp / "o2")
        self.assertSucceeds(r)
        self.assertNotIn(" MB (", r.stderr)

    def test_default_val_shard_is_usable_by_train(self):
        docs = []
        for i, d in enumerate(fresh_docs(self.rng, 30)):
            p = self.tmp / f"d{i:02d}.txt"
            p.write_text(d * 20, encoding="utf-8")
            docs.append(p)
        out = self.tmp / "corpus"
        r = run_speedrun("tokenize", *docs, "--out", out)
        self.assertSucceeds(r)
        val = out / "corpus_val_000000.bin"
        self.assertTrue(val.exists(), r.stdout)
        val_ids = read_shard(val)
        train_ids = read_shard(out / "corpus_train_000001.bin")
        total = len(val_ids) + len(train_ids)
        # About a tenth of the input (bytes / 4 tokens estimated), whole documents.
        self.assertGreater(len(val_ids), 0)
        self.assertLess(len(val_ids), total / 2)
        self.assertEqual(val_ids[0], EOT)
        self.assertEqual(train_ids[0], EOT)
        self.assertIn(f'"val_glob": "{out}/corpus_val_*.bin", "val_tokens": N}} with N at most {len(val_ids) - 1}',
                      r.stdout)
        # And train takes it as printed.
        seq = 16
        cfg = {"model": {"n_layer": 1, "d_model": 32, "n_head": 2, "head_dim": 16, "seq_len": seq},
               "data": {"train_glob": f"{out}/corpus_train_*.bin", "val_glob": f"{out}/corpus_val_*.bin",
                        "val_tokens": (len(val_ids) - 1) // seq * seq},
               "train": {"batch_tokens": 32, "micro_batch_seqs": 2, "steps": 2, "val_every": 1, "threads": 1,
                         "out_dir": str(self.tmp / "runs")},
               "optimizers": [{"type": "adamw", "params": ["*"], "lr": 0.01}]}
        (self.tmp / "c.json").write_text(json.dumps(cfg))
        self.assertSucceeds(run_speedrun("train", self.tmp / "c.json", "--no-progress"))
        # One document: no val shard (the split takes whole documents), and the output says how to get one.
        r = run_speedrun("tokenize", docs[0], "--out", self.tmp / "one")
        self.assertSucceeds(r)
        self.assertEqual(sorted(p.name for p in (self.tmp / "one").iterdir()), ["one_train_000001.bin"])
        self.assertIn("no val shard", r.stdout)
        self.assertIn("--val-tokens N", r.stdout)


if __name__ == "__main__":
    speedrun_testing.main()
