// Encodes and decodes a corpus with a reference tokenizer implementation and
// prints the results as JSON, for tokenizer/reference_agreement_test.cc.
//
//   node encode_reference.js --impl lenml --runtime .../@lenml/tokenizers/dist/main.js \
//       --tokenizer tokenizer.json --config tokenizer_config.json --corpus corpus.json
//   node encode_reference.js --impl hf --runtime .../tokenizers/index.js \
//       --tokenizer tokenizer.json --corpus corpus.json
//
// --impl lenml: @lenml/tokenizers (transformers.js-derived, pure JS), loaded
//   with TokenizerLoader.fromPreTrained({tokenizerJSON, tokenizerConfig}).
// --impl hf: Hugging Face's own `tokenizers` package (the Rust library behind
//   Node bindings), the ground truth the C++ tokenizer follows.
//
// Corpus entries are {"name", "text"} or {"name", "hex"}; hex bytes are
// decoded with TextDecoder (invalid UTF-8 becomes U+FFFD, as the C++
// tokenizer documents), since JS strings cannot hold invalid bytes.
// Output: [{"name", "text", "ids", "ids_no_special", "decoded",
//           "decoded_skip_special"}, ...] where "text" is what was encoded.
'use strict';

const fs = require('fs');

function parseArgs(argv) {
  const args = {};
  for (let i = 2; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || i + 1 >= argv.length) {
      throw new Error(`bad argument ${argv[i]}`);
    }
    args[argv[i].slice(2)] = argv[i + 1];
  }
  for (const required of ['impl', 'runtime', 'tokenizer', 'corpus']) {
    if (!args[required]) throw new Error(`missing --${required}`);
  }
  return args;
}

function corpusTexts(path) {
  // Not fatal: invalid bytes become U+FFFD. ignoreBOM keeps a leading U+FEFF
  // in the text instead of swallowing it.
  const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
  return JSON.parse(fs.readFileSync(path, 'utf8')).map((entry) => ({
    name: entry.name,
    text: entry.hex !== undefined ? decoder.decode(Buffer.from(entry.hex, 'hex'))
                                  : entry.text,
  }));
}

function lenmlImpl(args) {
  const { TokenizerLoader } = require(args.runtime);
  const tokenizer = TokenizerLoader.fromPreTrained({
    tokenizerJSON: JSON.parse(fs.readFileSync(args.tokenizer, 'utf8')),
    tokenizerConfig: args.config ? JSON.parse(fs.readFileSync(args.config, 'utf8')) : {},
  });
  const decode = (ids, skip) => ids.length === 0 ? '' :
      tokenizer.decode(ids, { skip_special_tokens: skip,
                              clean_up_tokenization_spaces: false });
  return {
    encode: async (text, special) => tokenizer.encode(text, { add_special_tokens: special }),
    decode: async (ids, skip) => decode(ids, skip),
  };
}

function hfImpl(args) {
  const { Tokenizer } = require(args.runtime);
  const tokenizer = Tokenizer.fromFile(args.tokenizer);
  return {
    encode: async (text, special) =>
      (await tokenizer.encode(text, null, { addSpecialTokens: special })).getIds(),
    decode: (ids, skip) => tokenizer.decode(ids, skip),
  };
}

async function main() {
  const args = parseArgs(process.argv);
  const impl = args.impl === 'hf' ? hfImpl(args)
             : args.impl === 'lenml' ? lenmlImpl(args)
             : null;
  if (impl === null) throw new Error(`unknown --impl ${args.impl}`);
  const results = [];
  for (const { name, text } of corpusTexts(args.corpus)) {
    const ids = Array.from(await impl.encode(text, true));
    results.push({
      name,
      text,
      ids,
      ids_no_special: Array.from(await impl.encode(text, false)),
      decoded: await impl.decode(ids, false),
      decoded_skip_special: await impl.decode(ids, true),
    });
  }
  process.stdout.write(JSON.stringify(results));
}

main().catch((e) => {
  process.stderr.write(`encode_reference.js: ${e.stack || e}\n`);
  process.exit(1);
});
