// Reads a JSON array of strings on stdin; writes a JSON array of their GPT-2 ids on stdout,
// computed by tiktoken (OpenAI's tokenizer, WASM build, npm package pinned in package.json;
// the gpt2 ranks are embedded in the package, so no network is needed).
//
// Special-token text is ordinary text here, as in speedrun's tokenizer (src/data/tokenizer.h:
// "<|endoftext|>" in a document is plain text; `speedrun tokenize` adds the EOT id between
// documents itself): encode(text, allowed_special=[], disallowed_special=[]) is tiktoken's
// encode_ordinary, and the test tool uses exactly that.
//
// Usage: node tiktoken_encode.cjs < docs.json > ids.json   (exit 1 with a message on bad input)
"use strict";
const path = require("path");
const { get_encoding } = require(path.join(__dirname, "node_modules", "tiktoken"));

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  let docs;
  try {
    docs = JSON.parse(input);
    if (!Array.isArray(docs) || !docs.every((d) => typeof d === "string")) throw new Error("expected an array of strings");
  } catch (e) {
    process.stderr.write(`tiktoken_encode: bad input on stdin: ${e.message}\n`);
    process.exit(1);
  }
  const enc = get_encoding("gpt2");
  const out = docs.map((d) => Array.from(enc.encode(d, [], [])));
  enc.free();
  process.stdout.write(JSON.stringify(out));
});
