// Encode JSON-array-of-strings on stdin with a HF tokenizer directory (tokenizer.json +
// tokenizer_config.json) using @lenml/tokenizers (a port of transformers.js); print the id lists
// as JSON. Used by check_tokenizer.py as an independent encoder. NODE_PATH must point at a
// node_modules directory containing @lenml/tokenizers.
const { TokenizerLoader } = require("@lenml/tokenizers");
const fs = require("fs");
const dir = process.argv[2];
const tok = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(fs.readFileSync(dir + "/tokenizer.json", "utf8")),
  tokenizerConfig: JSON.parse(fs.readFileSync(dir + "/tokenizer_config.json", "utf8")),
});
const texts = JSON.parse(fs.readFileSync(0, "utf8"));
console.log(JSON.stringify(texts.map((t) => Array.from(tok.encode(t, { add_special_tokens: false })))));
