"""`speedrun tokenize`: shard contents and layout (EOT placement, val split, shard
size limit, names), identical output for any thread count, and clear errors for bad
input (never a crash or an internal error)."""
import os
import shutil
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import speedrun_testing  # noqa: E402
from speedrun_testing import SpeedrunTestCase, read_shard, require_shared, run_speedrun  # noqa: E402

EOT = 50256
# Known GPT-2 ids (tiktoken), see ../shared/data/gpt2/reference_cases.json.
HELLO = ("Hello world", [15496, 995])
HELLO_LOWER = ("hello world", [31373, 995])
FOX = ("The quick brown fox jumps over the lazy dog.", [464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13])


class TokenizeCliTest(SpeedrunTestCase):
    def write_docs(self, *texts):
        paths = []
        for i, text in enumerate(texts):
            path = self.tmp / f"doc{i}.txt"
            path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
            paths.append(path)
        return paths

    def shard_names(self, out):
        return sorted(p.name for p in out.iterdir())

    def test_each_document_is_preceded_by_eot(self):
        docs = self.write_docs(HELLO[0], HELLO_LOWER[0], FOX[0], "")
        out = self.tmp / "out"
        result = run_speedrun("tokenize", *docs, "--out", out, "--prefix", "t", "--val-tokens", 0)
        self.assertSucceeds(result)
        self.assertEqual(self.shard_names(out), ["t_train_000001.bin"])
        expected = [EOT, *HELLO[1], EOT, *HELLO_LOWER[1], EOT, *FOX[1], EOT]
        self.assertEqual(read_shard(out / "t_train_000001.bin"), expected)
        self.assertIn("documents:  4", result.stdout)
        self.assertIn(f"tokens:     {len(expected)}", result.stdout)
        self.assertIn("t_train_000001.bin", result.stdout)
        self.assertIn("MB/s", result.stdout)

    def test_val_split_takes_whole_documents_and_train_shards_respect_the_limit(self):
        docs = self.write_docs(HELLO[0], HELLO_LOWER[0], FOX[0], HELLO[0])
        out = self.tmp / "out"
        # val: doc0 (3 tokens) is < 4, so doc1 joins: 6 tokens. train: 11 + 3 = 14 tokens in shards of 5.
        result = run_speedrun("tokenize", *docs, "--out", out, "--prefix", "p", "--val-tokens", 4,
                              "--shard-tokens", 5)
        self.assertSucceeds(result)
        self.assertEqual(self.shard_names(out), ["p_train_000001.bin", "p_train_000002.bin", "p_train_000003.bin",
                                                 "p_val_000000.bin"])
        self.assertEqual(read_shard(out / "p_val_000000.bin"), [EOT, *HELLO[1], EOT, *HELLO_LOWER[1]])
        train = [read_shard(out / f"p_train_00000{i}.bin") for i in (1, 2, 3)]
        self.assertEqual([len(t) for t in train], [5, 5, 4])
        self.assertEqual(sum(train, []), [EOT, *FOX[1], EOT, *HELLO[1]])

    def test_default_prefix_is_the_directory_name(self):
        docs = self.write_docs(HELLO[0])
        result = run_speedrun("tokenize", *docs, "--out", self.tmp / "mycorpus")
        self.assertSucceeds(result)
        self.assertEqual(self.shard_names(self.tmp / "mycorpus"), ["mycorpus_train_000001.bin"])

    def test_matches_reference_ids_and_any_thread_count_gives_identical_shards(self):
        require_shared(self, "data/tinyshakespeare/input.txt", "data/tinyshakespeare/input.gpt2.u16")
        text = (speedrun_testing.SHARED_DIR / "data/tinyshakespeare/input.txt").read_bytes()
        raw = (speedrun_testing.SHARED_DIR / "data/tinyshakespeare/input.gpt2.u16").read_bytes()
        reference = list(struct.unpack("<%dH" % (len(raw) // 2), raw))
        # The whole play as one (large, chunked) document, then its acts as small ones.
        parts = [text[i:i + 50_000] for i in range(0, 400_000, 50_000)]
        docs = self.write_docs(text, *parts)
        outputs = []
        for threads in (1, 4):
            out = self.tmp / f"out{threads}"
            result = run_speedrun("tokenize", *docs, "--out", out, "--prefix", "s", "--threads", threads,
                                  "--val-tokens", 1, "--shard-tokens", 30_000)
            self.assertSucceeds(result)
            outputs.append({name: (out / name).read_bytes() for name in self.shard_names(out)})
        self.assertEqual(outputs[0], outputs[1])
        self.assertGreater(len(outputs[0]), 3)
        self.assertEqual(read_shard(self.tmp / "out1" / "s_val_000000.bin"), [EOT, *reference])

    def test_gutenberg_val_shard_round_trips_exactly(self):
        """2M tokens that tiktoken made (an EOT before each book): decoding them to text and
        tokenizing the text again must give back the identical shard."""
        require_shared(self, "data/gutenberg/gutenberg_val_000000.bin.zst")
        if not shutil.which("zstd"):
            self.skipTest("skipped: zstd is not installed")
        shard = self.tmp / "gutenberg_val_000000.bin"
        compressed = speedrun_testing.SHARED_DIR / "data/gutenberg/gutenberg_val_000000.bin.zst"
        with open(shard, "wb") as f:
            subprocess.run(["zstd", "-dc", str(compressed)], stdout=f, check=True)
        docs = self.tmp / "docs"
        subprocess.run([sys.executable, str(speedrun_testing.SOURCE_DIR / "scripts" / "shard_to_text.py"), str(shard),
                        str(docs)], check=True, stdout=subprocess.DEVNULL)
        out = self.tmp / "out"
        result = run_speedrun("tokenize", *sorted(docs.iterdir()), "--out", out, "--prefix", "g", "--threads", 2,
                              "--val-tokens", 0)
        self.assertSucceeds(result)
        self.assertEqual(self.shard_names(out), ["g_train_000001.bin"])
        self.assertTrue((out / "g_train_000001.bin").read_bytes() == shard.read_bytes(),
                        "re-tokenized Gutenberg val shard differs from tiktoken's")

    def test_refuses_to_overwrite_and_force_replaces(self):
        docs = self.write_docs(FOX[0], FOX[0])
        out = self.tmp / "out"
        self.assertSucceeds(run_speedrun("tokenize", *docs, "--out", out, "--prefix", "f", "--shard-tokens", 8,
                                         "--val-tokens", 0))
        self.assertEqual(len(self.shard_names(out)), 3)  # 22 tokens in shards of 8
        before = (out / "f_train_000001.bin").read_bytes()
        result = run_speedrun("tokenize", *docs, "--out", out, "--prefix", "f")
        self.assertFailsWith(result, "f_train_000001.bin", "--force")
        self.assertEqual((out / "f_train_000001.bin").read_bytes(), before)
        # Another prefix in the same directory is fine.
        self.assertSucceeds(run_speedrun("tokenize", *docs, "--out", out, "--prefix", "g", "--val-tokens", 0))
        # --force replaces f_*.bin: one shard now, the two stale ones are gone.
        self.assertSucceeds(run_speedrun("tokenize", *docs, "--out", out, "--prefix", "f", "--force", "--val-tokens", 0))
        self.assertEqual(self.shard_names(out), ["f_train_000001.bin", "g_train_000001.bin"])
        self.assertEqual(read_shard(out / "f_train_000001.bin"), [EOT, *FOX[1]] * 2)

    def test_write_failure_names_the_shard_and_leaves_no_partial_shard(self):
        docs = self.write_docs(FOX[0], FOX[0])
        out = self.tmp / "out"
        result = run_speedrun("tokenize", *docs, "--out", out, "--prefix", "f", "--shard-tokens", 8, "--val-tokens", 0,
                              env=speedrun_testing.fault_env("_train_000002"))
        self.assertFailsWith(result, str(out / "f_train_000002.bin"), "No space left on device")
        # The shard before it is complete; the failed one is absent, its temporary removed.
        self.assertEqual(sorted(os.listdir(out)), ["f_train_000001.bin"])
        self.assertEqual(read_shard(out / "f_train_000001.bin"), [EOT, *FOX[1], EOT, *FOX[1]][:8])

    def test_missing_input_file(self):
        docs = self.write_docs(HELLO[0])
        missing = self.tmp / "no-such-file.txt"
        result = run_speedrun("tokenize", docs[0], missing, "--out", self.tmp / "out")
        self.assertFailsWith(result, str(missing), "does not exist")
        self.assertFalse((self.tmp / "out").exists() and any((self.tmp / "out").iterdir()))

    def test_directory_without_a_matching_file(self):
        # A directory is read recursively (test_tokenize_inputs.py); one holding no file
        # the glob matches is an error naming it and the glob, not an empty corpus.
        (self.tmp / "empty").mkdir()
        (self.tmp / "empty" / "notes.md").write_text("not *.txt")
        result = run_speedrun("tokenize", self.tmp / "empty", "--out", self.tmp / "out")
        self.assertFailsWith(result, f"directory {self.tmp / 'empty'} holds no file matching *.txt", "--glob")

    def test_empty_input_list(self):
        result = run_speedrun("tokenize", "--out", self.tmp / "out")
        self.assertFailsWith(result, "inputs is required", "Usage:", code=2)

    def test_unwritable_output_directory(self):
        docs = self.write_docs(HELLO[0])
        blocker = self.tmp / "a-file"
        blocker.write_text("not a directory")
        result = run_speedrun("tokenize", *docs, "--out", blocker / "out")
        self.assertFailsWith(result, str(blocker / "out"))
        result = run_speedrun("tokenize", *docs, "--out", blocker)
        self.assertFailsWith(result, str(blocker), "a file of that name exists")

    def test_bad_tokenizer_files(self):
        docs = self.write_docs(HELLO[0])
        vocab = speedrun_testing.SOURCE_DIR / "data" / "gpt2" / "vocab.bpe"
        bad = self.tmp / "encoder.json"
        bad.write_text('{"a": 0,')
        result = run_speedrun("tokenize", *docs, "--out", self.tmp / "out", "--encoder", bad, "--vocab", vocab)
        self.assertFailsWith(result, str(bad), "not valid JSON")
        bad.write_text('{"a": 0}')
        result = run_speedrun("tokenize", *docs, "--out", self.tmp / "out", "--encoder", bad, "--vocab", vocab)
        self.assertFailsWith(result, str(bad))
        result = run_speedrun("tokenize", *docs, "--out", self.tmp / "out", "--encoder", bad)
        self.assertFailsWith(result, "--encoder requires --vocab", "Usage:", code=2)

    def test_val_split_that_leaves_nothing_for_training(self):
        docs = self.write_docs(HELLO[0], FOX[0])
        result = run_speedrun("tokenize", *docs, "--out", self.tmp / "out", "--val-tokens", 1000)
        self.assertFailsWith(result, "--val-tokens", "nothing would be left for training")
        self.assertEqual(list((self.tmp / "out").glob("*.bin")), [])

    def test_same_file_twice_is_refused_before_writing(self):
        docs = self.write_docs(HELLO[0], FOX[0])
        link = self.tmp / "link.txt"
        link.symlink_to(docs[0])
        for twice in ([docs[0], docs[1], docs[0]], [docs[0], docs[1], link]):
            result = run_speedrun("tokenize", *twice, "--out", self.tmp / "out")
            self.assertFailsWith(result, f"input {twice[2]} is the same file as {docs[0]}", "pass it once")
            self.assertEqual(list((self.tmp / "out").glob("*.bin")), [])
        # Two files with the same text are two documents (negative control).
        same = self.write_docs(FOX[0], FOX[0])
        self.assertSucceeds(run_speedrun("tokenize", *same, "--out", self.tmp / "out2", "--prefix", "s",
                                         "--val-tokens", 0))
        self.assertEqual(read_shard(self.tmp / "out2" / "s_train_000001.bin"), [EOT, *FOX[1]] * 2)

    def test_empty_input_is_one_eot_and_is_said(self):
        docs = self.write_docs(HELLO[0], "", FOX[0])
        result = run_speedrun("tokenize", *docs, "--out", self.tmp / "out", "--prefix", "e", "--val-tokens", 0)
        self.assertSucceeds(result)
        self.assertIn(f"input {docs[1]} is empty: its document is the <|endoftext|> token alone", result.stderr)
        self.assertEqual(read_shard(self.tmp / "out" / "e_train_000001.bin"), [EOT, *HELLO[1], EOT, EOT, *FOX[1]])

    def test_unreadable_or_special_input_is_refused_before_writing(self):
        docs = self.write_docs(HELLO[0])
        fifo = self.tmp / "pipe"
        os.mkfifo(fifo)
        result = run_speedrun("tokenize", docs[0], fifo, "--out", self.tmp / "out", timeout=60)
        self.assertFailsWith(result, f"input {fifo} is not a regular file")
        if os.geteuid() != 0:  # root reads any file
            locked = self.write_docs(FOX[0])[0]
            locked.chmod(0)
            result = run_speedrun("tokenize", docs[0], locked, "--out", self.tmp / "out")
            self.assertFailsWith(result, f"cannot read input {locked}", "Permission denied")
        self.assertEqual(list((self.tmp / "out").glob("*.bin")) if (self.tmp / "out").exists() else [], [])

    def test_bad_numbers(self):
        docs = self.write_docs(HELLO[0])
        for args, fragment in ((["--threads", 0], "--threads"), (["--shard-tokens", 0], "--shard-tokens"),
                               (["--val-tokens", -1], "--val-tokens")):
            result = run_speedrun("tokenize", *docs, "--out", self.tmp / "out", *args)
            self.assertFailsWith(result, fragment, "Usage:", code=2)


if __name__ == "__main__":
    speedrun_testing.main()
