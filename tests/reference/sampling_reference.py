#!/usr/bin/python3
"""Float64 reference for the token sampler (engine/sampler.h), and the generator of
engine/sampler_test_cases.json, which engine/sampler_test.cc replays (the file lives in engine/
so that the test can depend on it without another package exporting it).

Written from the definitions, not from the C++:

  penalties (vLLM / HF / OpenAI), on the model's logits l:
      for v in prompt ∪ output:   l_v = l_v / r if l_v > 0 else l_v * r     (repetition_penalty r)
      for v in output, c = count:  l_v -= frequency_penalty * c + presence_penalty
  temperature <= 0:  token = argmax (first index on ties); no random draw.
  temperature T > 0: p = softmax(l / T); then, each on the renormalised result of the previous:
      top_k k:  keep l_v >= the k-th largest (ties kept)
      top_p:    sort kept by l desc, id asc; keep a token iff the probability of those
                before it is < top_p (so the first is always kept)
      min_p:    keep p_v >= min_p * max p
      token = the first v (id order) with u < cumsum(q)_v, q = the kept p renormalised,
      u = (mt19937_64(seed)'s n-th output >> 11) * 2^-53 for the n-th sampled step.
  logprobs: "raw" = log_softmax(model logits); "processed" = log q for a sampled step
      (-inf where removed), log_softmax(penalised logits) for a greedy one.

Usage:
  /usr/bin/python3 tests/reference/sampling_reference.py           # rewrite the cases
  /usr/bin/python3 tests/reference/sampling_reference.py --check   # self-checks only
The output is deterministic (numpy PCG64 seeds per case, sorted keys).
"""
import argparse
import json
import os
import sys

import numpy as np

MASK64 = (1 << 64) - 1


class MT19937_64:
    """std::mt19937_64 (C++11 [rand.predef]: the 10000th output from the default seed 5489 is
    9981545732273789042)."""

    N, M = 312, 156

    def __init__(self, seed):
        self.mt = [seed & MASK64]
        for i in range(1, self.N):
            prev = self.mt[-1]
            self.mt.append((6364136223846793005 * (prev ^ (prev >> 62)) + i) & MASK64)
        self.index = self.N

    def _twist(self):
        mt = self.mt
        for i in range(self.N):
            x = (mt[i] & 0xFFFFFFFF80000000) | (mt[(i + 1) % self.N] & 0x7FFFFFFF)
            xa = x >> 1
            if x & 1:
                xa ^= 0xB5026F5AA96619E9
            mt[i] = mt[(i + self.M) % self.N] ^ xa
        self.index = 0

    def next(self):
        if self.index >= self.N:
            self._twist()
        y = self.mt[self.index]
        self.index += 1
        y ^= (y >> 29) & 0x5555555555555555
        y ^= (y << 17) & 0x71D67FFFEDA60000
        y ^= (y << 37) & 0xFFF7EEE000000000
        y ^= y >> 43
        return y & MASK64

    def uniform(self):
        return (self.next() >> 11) * 2.0**-53


DEFAULTS = dict(temperature=0.0, seed=0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0,
                presence_penalty=0.0, frequency_penalty=0.0, logprobs=0, logprobs_mode="raw")


def log_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    m = z.max()
    return z - (m + np.log(np.exp(z - m).sum()))


def penalise(logits, prompt, output, p):
    """The logits after repetition, frequency and presence penalties (float64)."""
    x = np.array(logits, dtype=np.float64)
    vocab = len(x)
    seen = sorted({t for t in list(prompt) + list(output) if 0 <= t < vocab})
    r = p["repetition_penalty"]
    for v in seen:
        x[v] = x[v] / r if x[v] > 0 else x[v] * r
    counts = np.bincount([t for t in output if 0 <= t < vocab], minlength=vocab).astype(np.float64)
    x -= p["frequency_penalty"] * counts
    x -= p["presence_penalty"] * (counts > 0)
    return x


def truncate(x, p, order="hf"):
    """The kept mask and the renormalised kept distribution q of softmax(x / T).
    order "hf": top_k, top_p, min_p (ours); "vllm_v1": min_p, top_k, top_p."""
    vocab = len(x)
    z = x / p["temperature"]
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    keep = np.ones(vocab, dtype=bool)

    def renorm():
        q = np.where(keep, probs, 0.0)
        return q / q.sum()

    def top_k():
        k = p["top_k"]
        if 0 < k < vocab:
            kth = np.sort(x)[::-1][k - 1]
            keep[:] &= x >= kth

    def top_p():
        if p["top_p"] < 1.0:
            q = renorm()
            ids = sorted(np.flatnonzero(keep), key=lambda v: (-x[v], v))
            before = 0.0
            for j, v in enumerate(ids):
                if j > 0 and before >= p["top_p"]:
                    keep[v] = False
                before += q[v]

    def min_p():
        if p["min_p"] > 0.0:
            q = renorm()
            keep[:] &= q >= p["min_p"] * q.max()

    for stage in ((top_k, top_p, min_p) if order == "hf" else (min_p, top_k, top_p)):
        stage()
    return keep, renorm()


def sample(logits, prompt, output, params, u):
    """One step. Returns (token, logprobs of every token, margin): margin is how far (in
    probability, or logit for greedy) the closest decision was from going the other way."""
    p = dict(DEFAULTS, **params)
    x = penalise(logits, prompt, output, p)
    margins = []
    if p["temperature"] <= 0.0:
        token = int(np.argmax(x))
        ranked = np.sort(x)[::-1]
        if len(x) > 1:
            margins.append(ranked[0] - ranked[1])
        processed = log_softmax(x)
    else:
        keep, q = truncate(x, p)
        cdf = np.cumsum(q)
        token = int(np.searchsorted(cdf, u, side="right"))
        margins += [u - (cdf[token - 1] if token > 0 else 0.0), cdf[token] - u]
        # Every truncation decision, away from its threshold.
        k = p["top_k"]
        if 0 < k < len(x):
            ranked = np.sort(x)[::-1]
            margins.append(ranked[k - 1] - ranked[k])
        if p["top_p"] < 1.0 or p["min_p"] > 0.0:
            p_k = dict(p, top_p=1.0, min_p=0.0)
            keep_k, q_k = truncate(x, p_k)
            if p["top_p"] < 1.0:
                ids = sorted(np.flatnonzero(keep_k), key=lambda v: (-x[v], v))
                before = np.concatenate([[0.0], np.cumsum(q_k[ids])[:-1]])
                margins.append(np.abs(before[1:] - p["top_p"]).min() if len(ids) > 1 else 1.0)
            if p["min_p"] > 0.0:
                keep_kp = truncate(x, dict(p, min_p=0.0))[0]
                ratio = np.exp((x - x.max()) / p["temperature"])[keep_kp]
                margins.append(np.abs(ratio - p["min_p"]).min())
        with np.errstate(divide="ignore"):
            processed = np.log(q)
    raw = log_softmax(logits)
    logprobs = raw if p["logprobs_mode"] == "raw" else processed
    return token, logprobs, min(margins) if margins else np.inf


def top_logprobs(logprobs, n):
    ids = sorted(range(len(logprobs)), key=lambda v: (-logprobs[v], v))[:n]
    return [(v, logprobs[v]) for v in ids]


def run_case(spec, rng):
    """Draws the case's logits and runs it; returns (case dict, smallest margin, steps)."""
    p = {k: (f32(v) if isinstance(v, float) else v)
         for k, v in dict(DEFAULTS, **spec["params"]).items()}
    vocab, steps = spec["vocab"], spec["steps"]
    draw = lambda: [float(v) for v in rng.normal(spec.get("shift", 0.0), spec.get("scale", 2.0),
                                                 vocab).astype(np.float32)]
    rows = [draw()] * steps if spec.get("same_logits") else [draw() for _ in range(steps)]
    prompt = [int(t) for t in rng.integers(0, vocab, spec.get("prompt", 0))]
    gen = MT19937_64(p["seed"])
    output, expected, margin, alt_differs = [], [], np.inf, False
    for row in rows:
        u = gen.uniform() if p["temperature"] > 0 else 0.0
        token, lp, m = sample(row, prompt, output, p, u)
        margin = min(margin, m)
        n = p["logprobs"]
        top = top_logprobs(lp, n)
        # The reported order must not hinge on rounding either.
        ranked = sorted(lp[np.isfinite(lp)])[::-1][: n + 1]
        if len(ranked) > 1:
            margin = min(margin, np.abs(np.diff(ranked)).min())
        if p["temperature"] > 0 and p["top_p"] < 1.0 and p["min_p"] > 0.0:
            x = penalise(row, prompt, output, p)
            alt_differs |= bool((truncate(x, p)[0] != truncate(x, p, "vllm_v1")[0]).any())
        fin = lambda v: float(v) if np.isfinite(v) else None  # JSON has no -inf: null
        expected.append({"token": token, "logprob": fin(lp[token]),
                         "top": [[int(v), fin(l)] for v, l in top]})
        output.append(token)
    case = {"name": spec["name"], "vocab": vocab, "params": p, "prompt": prompt,
            "logits": rows if not spec.get("same_logits") else [rows[0]],
            "steps": expected}
    return case, margin, alt_differs


def f32(v):
    return float(np.float32(v))


# Each case: params with float32-exact values (the C++ fields are float).
SPECS = [
    dict(name="greedy_repetition_penalty", vocab=16, steps=8, prompt=6,
         params=dict(repetition_penalty=1.5, logprobs=3)),
    dict(name="greedy_presence_frequency", vocab=10, steps=14, same_logits=True, scale=1.0,
         params=dict(presence_penalty=0.75, frequency_penalty=0.375, logprobs=4,
                     logprobs_mode="processed")),
    dict(name="greedy_all_penalties_negative_logits", vocab=12, steps=10, prompt=5,
         same_logits=True, shift=-3.0, scale=1.0,
         params=dict(repetition_penalty=1.25, presence_penalty=-0.5, frequency_penalty=0.625,
                     logprobs=12, logprobs_mode="processed")),
    dict(name="greedy_ignores_truncation", vocab=20, steps=6, prompt=4,
         params=dict(top_k=2, top_p=f32(0.3), min_p=0.5, repetition_penalty=2.0,
                     frequency_penalty=0.5, logprobs=2)),
    dict(name="temperature_only", vocab=50, steps=10,
         params=dict(temperature=f32(0.9), seed=7, logprobs=5)),
    dict(name="top_k", vocab=40, steps=12,
         params=dict(temperature=f32(1.2), seed=11, top_k=5, logprobs=7,
                     logprobs_mode="processed")),
    dict(name="top_p", vocab=40, steps=12,
         params=dict(temperature=f32(0.8), seed=12, top_p=f32(0.7), logprobs=3,
                     logprobs_mode="processed")),
    dict(name="min_p", vocab=40, steps=12,
         params=dict(temperature=1.0, seed=13, min_p=f32(0.15), logprobs=4,
                     logprobs_mode="processed")),
    dict(name="top_k_then_top_p", vocab=40, steps=12, scale=1.0,
         params=dict(temperature=1.0, seed=14, top_k=8, top_p=f32(0.6), logprobs=8,
                     logprobs_mode="processed")),
    # Pins min_p after top_p: at least one step keeps a different set in vLLM v1's order.
    dict(name="top_p_then_min_p", vocab=30, steps=12, scale=1.0, require_order_matters=True,
         params=dict(temperature=1.0, seed=15, top_p=f32(0.8), min_p=f32(0.2), logprobs=6,
                     logprobs_mode="processed")),
    dict(name="everything", vocab=64, steps=16, prompt=10,
         params=dict(temperature=f32(0.7), seed=16, top_k=20, top_p=f32(0.9), min_p=f32(0.02),
                     repetition_penalty=f32(1.2), presence_penalty=f32(0.3),
                     frequency_penalty=f32(0.2), logprobs=5, logprobs_mode="processed")),
    dict(name="everything_raw_logprobs", vocab=64, steps=16, prompt=10, same_logits=True,
         params=dict(temperature=f32(1.3), seed=17, top_k=30, top_p=f32(0.95), min_p=f32(0.01),
                     repetition_penalty=f32(1.1), presence_penalty=f32(-0.4),
                     frequency_penalty=f32(0.9), logprobs=20)),
    # Hundreds of tokens inside top_p: the C++ sorts 64, 128, 256, ... of them.
    dict(name="large_vocab_top_k_top_p", vocab=1000, steps=3, scale=1.0,
         params=dict(temperature=1.0, seed=18, top_k=700, top_p=f32(0.9), logprobs=2)),
    dict(name="repeated_draws_64bit_seed", vocab=8, steps=40, same_logits=True, scale=0.5,
         params=dict(temperature=f32(1.5), seed=(1 << 63) + 12345, logprobs=8)),
]

MIN_MARGIN = 1e-4


def build_cases():
    cases = []
    for i, spec in enumerate(SPECS):
        rng = np.random.default_rng(1000 + i)
        for attempt in range(1000):
            case, margin, order_matters = run_case(spec, rng)
            if margin > MIN_MARGIN and (order_matters or not spec.get("require_order_matters")):
                break
        else:
            raise RuntimeError(f"{spec['name']}: no draw with margin > {MIN_MARGIN}")
        case["min_margin"] = float(margin)
        cases.append(case)
    return cases


def self_check():
    g = MT19937_64(5489)
    for _ in range(9999):
        g.next()
    assert g.next() == 9981545732273789042, "mt19937_64 does not match the C++ standard"
    # Hand-checkable steps.
    assert sample([2.0, 1.9], [0], [], dict(repetition_penalty=1.2), 0)[0] == 1
    assert sample([-1.0, -1.1], [], [0], dict(repetition_penalty=1.2), 0)[0] == 1
    assert sample([1.0, 0.9, 0.5], [], [0], dict(presence_penalty=0.2), 0)[0] == 1
    assert sample([1.0, 0.9], [], [0, 0], dict(frequency_penalty=0.04), 0)[0] == 0  # 0.92
    assert sample([1.0, 0.9], [], [0, 0], dict(frequency_penalty=0.06), 0)[0] == 1  # 0.88
    assert sample([1.0, 0.9], [], [0, 0], dict(frequency_penalty=0.04, presence_penalty=0.03),
                  0)[0] == 1  # 0.89
    assert sample([1.0, 0.97], [], [0], dict(frequency_penalty=0.02), 0)[0] == 0
    # top_p: probabilities 0.5, 0.3, 0.2 -> p = 0.5 keeps only the first, 0.50001 two.
    lg = list(np.log([0.5, 0.3, 0.2]))
    t = dict(temperature=1.0)
    assert truncate(np.array(lg), dict(DEFAULTS, **t, top_p=0.5))[0].tolist() == [True, False, False]
    assert truncate(np.array(lg), dict(DEFAULTS, **t, top_p=0.50001))[0].tolist() == [True, True, False]
    assert truncate(np.array(lg), dict(DEFAULTS, **t, min_p=0.5))[0].tolist() == [True, True, False]
    assert truncate(np.array(lg), dict(DEFAULTS, **t, top_k=1))[0].tolist() == [True, False, False]
    # Ties at the k-th value are kept.
    assert truncate(np.array([1.0, 1.0, 0.0]), dict(DEFAULTS, **t, top_k=1))[0].tolist() == [True, True, False]
    # Inverse CDF in id order.
    assert sample(lg, [], [], t, 0.49)[0] == 0 and sample(lg, [], [], t, 0.5)[0] == 1
    assert sample(lg, [], [], t, 0.81)[0] == 2


def case_json(case):
    """The case as one line of JSON, the logits in float32's shortest decimal form (the C++
    test reads them as double and rounds to float, which gives them back exactly)."""
    case = dict(case)
    rows = []
    for row in case.pop("logits"):
        text = [str(np.float32(v)) for v in row]
        assert all(float(np.float32(float(t))) == v for t, v in zip(text, row))
        rows.append("[" + ", ".join(text) + "]")
    return '{"logits": [' + ", ".join(rows) + "], " + json.dumps(case, sort_keys=True)[1:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="run the self-checks only")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "engine",
                                                  "sampler_test_cases.json"))
    args = ap.parse_args()
    self_check()
    if args.check:
        print("ok")
        return
    cases = build_cases()
    with open(args.out, "w") as f:
        f.write('{"generator": "tests/reference/sampling_reference.py", "cases": [\n')
        f.write(",\n".join(case_json(c) for c in cases))
        f.write("\n]}\n")
    for c in cases:
        print(f"{c['name']:40s} vocab {c['vocab']:5d} steps {len(c['steps']):3d} "
              f"tokens {[s['token'] for s in c['steps']][:12]} min_margin {c['min_margin']:.2e}")


if __name__ == "__main__":
    sys.exit(main())
