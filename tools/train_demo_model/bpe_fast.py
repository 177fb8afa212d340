"""Incremental byte-level BPE training, the same merges as tests/reference/bpe_tokenizer.train_bpe.

train_bpe recounts every pair of every word after each merge, which takes minutes on a 4 MB
corpus. This keeps pair counts and, for each pair, the words holding it, and after a merge
recounts only those words. Same rule: the most frequent pair first, ties broken by the pair's
strings (smallest first); stop when the best pair occurs fewer than twice.
`check_equal()` compares the two on a sample text (run by tests/demo_model_test.py).
"""
import collections
import os
import sys
import unicodedata

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../tests/reference"))
import bpe_tokenizer  # noqa: E402


def word_counts(texts):
    words = collections.Counter()
    for t in texts:
        for piece in bpe_tokenizer.qwen2_pretokenize(unicodedata.normalize("NFC", t)):
            words[bpe_tokenizer.byte_level(piece)] += 1
    return words


def _merge(syms, a, b):
    j, out = 0, []
    while j < len(syms):
        if j + 1 < len(syms) and syms[j] == a and syms[j + 1] == b:
            out.append(a + b)
            j += 2
        else:
            out.append(syms[j])
            j += 1
    return out


def train_bpe(texts, num_merges):
    counts = word_counts(texts)
    words = [list(w) for w in sorted(counts)]
    freq = [counts[w] for w in sorted(counts)]
    pairs = collections.Counter()
    where = collections.defaultdict(set)
    for i, syms in enumerate(words):
        for p in zip(syms, syms[1:]):
            pairs[p] += freq[i]
            where[p].add(i)
    merges = []
    while len(merges) < num_merges and pairs:
        best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if best[1] < 2:
            break
        a, b = best[0]
        merges.append((a, b))
        for i in sorted(where.pop((a, b), ())):
            old = words[i]
            for p in zip(old, old[1:]):
                pairs[p] -= freq[i]
                if pairs[p] <= 0:
                    del pairs[p]
            for p in set(zip(old, old[1:])):
                if p != (a, b):
                    where[p].discard(i)
            new = _merge(old, a, b)
            words[i] = new
            for p in zip(new, new[1:]):
                pairs[p] += freq[i]
                where[p].add(i)
    return merges


def check_equal(texts, num_merges):
    fast, slow = train_bpe(texts, num_merges), bpe_tokenizer.train_bpe(texts, num_merges)
    if fast != slow:
        k = next(i for i, (x, y) in enumerate(zip(fast, slow)) if x != y) if any(
            x != y for x, y in zip(fast, slow)) else min(len(fast), len(slow))
        raise AssertionError(f"merge {k} differs: fast {fast[k:k+1]} vs reference {slow[k:k+1]}")
    return len(fast)
