#!/usr/bin/python3
"""Writes synthetic_tokenizers.json: small BPE tokenizers (trained here on a
few lines of text) whose configurations exercise every normalizer,
pre-tokenizer, decoder, post-processor, BPE option and added-token option the
C++ tokenizer supports, in combinations that real files rarely have (Metaspace
"first" after Strip/NFKC, Split behaviours with invert, lstrip/rstrip/
single_word/normalized added tokens, ##/</w> subword affixes, fused and
unfused unknowns, Ruby-syntax regexes with ^, $, \\w, \\h and (?m:)).

tokenizer/reference_agreement_test.cc encodes random text with each of them
through both our tokenizer and Hugging Face's `tokenizers` and requires the
same ids and decodes. Run from the repository root:
    /usr/bin/python3 tokenizer/testdata/make_synthetic_tokenizers.py
"""
import collections
import json
import os
import re

TEXT = """The quick brown fox jumps over the lazy dog. Hello world! hello there, general kenobi.
Tokenizers split text into pieces; a byte pair encoder merges frequent pairs. 12345 67890 3.14
def foo(bar): return bar + 1  # comment
我们正在测试分词器 日本語のテキスト 안녕하세요 café naïve ÅNGSTRÖM ΣΟΦΙΑ straße
"""

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~")+1))+list(range(0xA1, 0xAC+1))+list(range(0xAE, 0xFF+1))
    cs = bs[:]; n = 0
    for b in range(256):
        if b not in bs: bs.append(b); cs.append(256+n); n += 1
    return dict(zip(bs, [chr(c) for c in cs]))

def train(words, base_vocab, n_merges, prefix="", suffix=""):
    vocab = {t: i for i, t in enumerate(base_vocab)}
    seqs = []
    for w in words:
        chars = list(w)
        syms = [c if i == 0 else prefix + c for i, c in enumerate(chars)]
        if suffix and syms: syms[-1] = syms[-1] + suffix
        seqs.append(syms)
    for s in seqs:
        for t in s:
            if t not in vocab: vocab[t] = len(vocab)
    merges = []
    for _ in range(n_merges):
        cnt = collections.Counter()
        for s in seqs:
            for a, b in zip(s, s[1:]): cnt[(a, b)] += 1
        if not cnt: break
        (a, b), c = max(cnt.items(), key=lambda kv: (kv[1], kv[0]))
        if c < 2: break
        new = a + (b[len(prefix):] if prefix and b.startswith(prefix) else b)
        merges.append((a, b))
        if new not in vocab: vocab[new] = len(vocab)
        for s in seqs:
            i = 0
            while i < len(s) - 1:
                if s[i] == a and s[i+1] == b: s[i:i+2] = [new]
                else: i += 1
    return vocab, merges

def added(tokens, start):
    out = []
    for i, (content, opts) in enumerate(tokens):
        d = {"id": start + i, "content": content, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": False}
        d.update(opts); out.append(d)
    return out

MODELS = {}
TOKENIZERS = {}

def write(name, tok):
    # Store each distinct model once; variants refer to it by name.
    model = tok["model"]
    key = None
    for k, m in MODELS.items():
        if m == model: key = k
    if key is None:
        key = "model_%d" % len(MODELS)
        MODELS[key] = model
    variant = dict(tok)
    variant["model"] = key
    TOKENIZERS[name.replace("tok_", "").replace(".json", "")] = variant

# A: SentencePiece-like with byte fallback, unk, many normalizers/pre-tokenizers.
words = [("▁" + w) for w in TEXT.lower().replace("\n", " ").split(" ") if w]
base = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] + list("▁abcdefghijklmnopqrstuvwxyz0123456789.,!")
vocab, merges = train(words, base, 150)
A_added = [("<unk>", {"special": True}), ("<s>", {"special": True}), ("</s>", {"special": True})]
a_add = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True} for i, (c, _) in enumerate(A_added)]
n = len(vocab)
a_add += added([("[MASK]", {"lstrip": True, "rstrip": True, "special": True}),
                ("<sep>", {"single_word": True}),
                ("hello", {"normalized": True, "single_word": True}),
                ("ŊORM", {"normalized": True}),
                ("  ", {"normalized": False}),
                ("<R>", {"rstrip": True}), ("<L>", {"lstrip": True})], n)
def sp_tok(merges_as_pairs, prepend_scheme, split, extra_norm, extra_pre):
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": a_add,
     "normalizer": {"type": "Sequence", "normalizers": extra_norm},
     "pre_tokenizer": {"type": "Sequence", "pretokenizers": extra_pre + [{"type": "Metaspace", "replacement": "▁", "prepend_scheme": prepend_scheme, "split": split}]},
     "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                        "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}, "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}},
     "decoder": {"type": "Sequence", "decoders": [{"type": "Metaspace", "replacement": "▁", "prepend_scheme": prepend_scheme, "split": split}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
     "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
               "vocab": vocab, "merges": [list(m) for m in merges] if merges_as_pairs else [" ".join(m) for m in merges]}}
write("tok_a1.json", sp_tok(True, "first", True, [{"type": "NFKC"}, {"type": "Lowercase"}, {"type": "Strip", "strip_left": True, "strip_right": True}, {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}], [{"type": "Digits", "individual_digits": True}]))
write("tok_a2.json", sp_tok(False, "always", True, [{"type": "NFD"}, {"type": "Replace", "pattern": {"String": "x"}, "content": "yy"}], [{"type": "Split", "pattern": {"Regex": "[.,!?]"}, "behavior": "MergedWithPrevious", "invert": False}, {"type": "Digits", "individual_digits": False}]))
write("tok_a3.json", sp_tok(True, "never", False, [{"type": "NFKD"}, {"type": "Prepend", "prepend": "▁"}], [{"type": "Split", "pattern": {"String": "o"}, "behavior": "MergedWithNext", "invert": False}]))
a4 = sp_tok(True, "first", True, [{"type": "Lowercase"}], [{"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Contiguous", "invert": True}])
a4["model"]["byte_fallback"] = False; a4["model"]["fuse_unk"] = False
write("tok_a4.json", a4)
a5 = sp_tok(True, "always", True, [{"type": "NFC"}], [{"type": "Split", "pattern": {"Regex": "[aeiou]"}, "behavior": "Removed", "invert": False}])
a5["model"]["byte_fallback"] = False; a5["model"]["fuse_unk"] = True; a5["model"]["ignore_merges"] = True
write("tok_a5.json", a5)
a6 = sp_tok(True, "always", True, [{"type": "Strip", "strip_left": False, "strip_right": True}], [{"type": "Split", "pattern": {"Regex": "\\s"}, "behavior": "Isolated", "invert": True}])
write("tok_a6.json", a6)

# B: GPT-2 byte level with add_prefix_space and the built-in regex.
b2u = bytes_to_unicode()
bwords = []
for piece in re.findall(r"'s|'t|'re|'ve|'m|'ll|'d| ?\w+| ?\d+| ?[^\s\w\d]+|\s+", " " + TEXT):
    bwords.append("".join(b2u[b] for b in piece.encode()))
bbase = [b2u[b] for b in range(256)]
bvocab, bmerges = train(bwords, bbase, 300)
nb = len(bvocab)
b_add = added([("<|endoftext|>", {"special": True}), ("[MASK]", {"lstrip": True, "special": True}),
               ("<|sep|>", {"rstrip": True}), ("word", {"single_word": True, "normalized": True}), ("中文", {})], nb)
def bl_tok(prefix, use_regex, pre=None):
    return {"version": "1.0", "added_tokens": b_add, "normalizer": {"type": "NFC"},
      "pre_tokenizer": pre or {"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": True, "use_regex": use_regex},
      "post_processor": {"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": True, "use_regex": use_regex},
      "decoder": {"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": True, "use_regex": use_regex},
      "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "vocab": bvocab, "merges": [" ".join(m) for m in bmerges]}}
write("tok_b1.json", bl_tok(True, True))
write("tok_b2.json", bl_tok(False, True))
write("tok_b3.json", bl_tok(True, False, {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "(?i:'s|'t)|\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": False}, {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": False}]}))

# C: WordPiece-ish prefixes with unk and no byte fallback.
cwords = [w for w in TEXT.replace("\n", " ").split(" ") if w]
cbase = ["[UNK]", "[CLS]", "[SEP]"]
cvocab, cmerges = train(cwords, cbase, 200, prefix="##", suffix="</w>")
c_add = [{"id": 0, "content": "[UNK]", "special": True, "normalized": False, "lstrip": False, "rstrip": False, "single_word": False},
         {"id": 1, "content": "[CLS]", "special": True, "normalized": False, "lstrip": False, "rstrip": False, "single_word": False},
         {"id": 2, "content": "[SEP]", "special": True, "normalized": False, "lstrip": False, "rstrip": False, "single_word": False}]
ctok = {"version": "1.0", "added_tokens": c_add, "normalizer": {"type": "Lowercase"},
  "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed", "invert": False},
  "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 2], "cls": ["[CLS]", 1]},
  "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "</w>"}, "content": " "}, {"type": "Replace", "pattern": {"Regex": "##"}, "content": ""}, {"type": "Strip", "content": " ", "start": 0, "stop": 1}]},
  "model": {"type": "BPE", "dropout": None, "unk_token": "[UNK]", "continuing_subword_prefix": "##", "end_of_word_suffix": "</w>", "fuse_unk": False, "byte_fallback": False, "vocab": cvocab, "merges": [[a, b] for a, b in cmerges]}}
write("tok_c1.json", ctok)
ctok2 = json.loads(json.dumps(ctok)); ctok2["model"]["fuse_unk"] = True; ctok2["post_processor"] = {"type": "RobertaProcessing", "sep": ["[SEP]", 2], "cls": ["[CLS]", 1], "trim_offsets": True, "add_prefix_space": False}
ctok2["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "MergedWithPrevious", "invert": False}
write("tok_c2.json", ctok2)
a7 = sp_tok(True, "first", True, [{"type": "Replace", "pattern": {"String": " "}, "content": ""}, {"type": "Lowercase"}, {"type": "NFKC"}], [{"type": "Digits", "individual_digits": True}])
write("tok_a7.json", a7)
a8 = sp_tok(True, "first", False, [{"type": "NFD"}, {"type": "Prepend", "prepend": "▁"}, {"type": "Strip", "strip_left": True, "strip_right": False}, {"type": "Replace", "pattern": {"Regex": "^▁+"}, "content": "▁"}], [{"type": "Split", "pattern": {"Regex": "\\p{N}"}, "behavior": "Isolated", "invert": False}])
write("tok_a8.json", a8)
a9 = sp_tok(True, "first", True, [{"type": "NFKD"}, {"type": "Lowercase"}], [{"type": "Split", "pattern": {"String": "▁"}, "behavior": "MergedWithPrevious", "invert": False}, {"type": "Digits", "individual_digits": False}])
write("tok_a9.json", a9)
b4 = bl_tok(True, False, {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\w+|[^\\w\\s]+|\\s+$|^\\s+"}, "behavior": "Isolated", "invert": False}, {"type": "Split", "pattern": {"Regex": "\\h+"}, "behavior": "MergedWithNext", "invert": False}, {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]})
b4["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Replace", "pattern": {"Regex": "(?m:a.b)"}, "content": "AB"}, {"type": "Replace", "pattern": {"Regex": "x$"}, "content": "X"}]}
write("tok_b4.json", b4)

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "synthetic_tokenizers.json")
with open(out, "w", encoding="utf-8") as f:
    json.dump({"models": MODELS, "tokenizers": TOKENIZERS}, f, ensure_ascii=False, separators=(",", ":"))
    f.write("\n")
print("wrote %d tokenizers over %d models to %s" % (len(TOKENIZERS), len(MODELS), out))
