#!/usr/bin/python3
"""The demo model (models/austen-moe) end to end.

- It loads, and a 2-worker `moeserve local` cluster describes it and streams a sampled
  completion of at least 50 tokens of English-looking text, token-identical to `moeserve run`
  with the same seed.
- The perplexity `moeserve run --score` computes on a held-out Austen paragraph matches the one
  the training script computed in float64 from the saved weights (eval.json) within 1%.
- The training pipeline still reproduces it: train.py run for two steps writes the committed
  tokenizer and config byte for byte (the BPE training is deterministic), and moeserve scores the
  fresh checkpoint as train.py did. This needs Debian's r-cran-janeaustenr .deb
  (MOESERVE_JANEAUSTENR_DEB, else `apt-get download`); it skips, saying so, without it.
"""
import glob
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_util  # noqa: E402
from cluster_util import inference_pb2  # noqa: E402

BIN = cluster_util.BIN
MODEL = os.environ.get("MOESERVE_DEMO_MODEL", "models/austen-moe")  # override: try a fresh one
PROMPT = "It is a truth universally acknowledged, that"


def run(*args, timeout=300):
    p = subprocess.run([BIN, *args], capture_output=True, timeout=timeout)
    p.stdout = p.stdout.decode("utf-8")
    p.stderr = p.stderr.decode("utf-8", "replace")
    return p


def score(model, text):
    p = run("run", "--model", model, "--score", "--prompt", text, "--format", "json")
    if p.returncode != 0:
        raise AssertionError(p.stderr)
    return json.loads(p.stdout)


DICT = "/usr/share/dict/british-english"  # Debian's wbritish: Austen spells British


def english_word_fraction(text):
    """(share of the words in `text` found in an English dictionary, number of words). A word is
    a whitespace-separated chunk stripped of surrounding punctuation; a chunk with letters joined
    to other letters by punctuation (",ersract") or holding digits counts as not English."""
    with open(DICT, encoding="utf-8") as f:
        words = {w.strip().lower() for w in f}
    chunks = [c.strip(".,;:!?\"'()-_[]") for c in text.split()]
    chunks = [c for c in chunks if c]
    if not chunks:
        return 0.0, 0
    return sum(c.lower() in words for c in chunks) / len(chunks), len(chunks)


class DemoModelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(MODEL, "eval.json"), encoding="utf-8") as f:
            cls.eval = json.load(f)

    def test_cluster_streams_sampled_english_like_run(self):
        sampling = dict(temperature=0.8, top_p=0.95, seed=7)
        with cluster_util.Cluster(MODEL, 2) as c:
            info = c.stub.GetModelInfo(inference_pb2.GetModelInfoRequest(), timeout=30)
            self.assertEqual(info.architecture, "Qwen3MoeForCausalLM")
            self.assertEqual((info.vocab_size, info.num_experts, info.experts_per_token,
                              info.world_size), (2048, 8, 2, 2))
            tokens, text, finish = c.generate(
                text=PROMPT, max_tokens=80, ignore_eos=True,
                sampling=inference_pb2.SamplingParams(**sampling))
        self.assertEqual(len(tokens), 80)
        self.assertEqual(finish.reason, inference_pb2.FINISH_REASON_LENGTH)
        self.assertEqual(finish.usage.completion_tokens, 80)
        print(f"cluster sample: {PROMPT}{text}")
        frac, n = english_word_fraction(text)
        print(f"{frac:.0%} of {n} words are in {DICT}")
        self.assertGreaterEqual(n, 30, text)
        self.assertGreaterEqual(frac, 0.85, f"only {frac:.0%} of {n} words are English: {text}")
        single = run("run", "--model", MODEL, "--prompt", PROMPT, "--max-tokens", "80",
                     "--ignore-eos", "--temperature", "0.8", "--top-p", "0.95", "--seed", "7",
                     "--format", "json")
        self.assertEqual(single.returncode, 0, single.stderr)
        self.assertEqual(json.loads(single.stdout)["token_ids"], tokens)

    def test_english_check_can_fail(self):
        # The check above on Austen herself, then on text made of her words' pieces.
        para = self.eval["scoring_paragraph"]
        self.assertGreaterEqual(english_word_fraction(para)[0], 0.97)
        with open(os.path.join(MODEL, "tokenizer.json"), encoding="utf-8") as f:
            vocab = json.load(f)["model"]["vocab"]
        rng = random.Random(3)
        ids = [rng.randrange(len(vocab)) for _ in range(80)]
        p = run("tokenize", "--model", MODEL, "--decode", ",".join(map(str, ids)))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertLess(english_word_fraction(p.stdout)[0], 0.5)

    def test_perplexity_matches_training(self):
        got = score(MODEL, self.eval["scoring_paragraph"])
        self.assertEqual(got["token_ids"], self.eval["scoring_paragraph_token_ids"])
        want = self.eval["scoring_paragraph_perplexity"]
        print(f"held-out paragraph perplexity: moeserve {got['perplexity']:.6f}, "
              f"train.py {want:.6f}")
        self.assertLess(abs(got["perplexity"] - want) / want, 0.01)
        # A trained model: far better than chance (2048) on Austen's own prose.
        self.assertLess(got["perplexity"], 100)

    def test_fast_bpe_training_equals_reference(self):
        sys.path.insert(0, "tools/train_demo_model")
        import bpe_fast
        para = self.eval["scoring_paragraph"]
        texts = [para, para.upper(), para[::-1], "Mr. Darcy's 1811 letter: \"no, no!\"\n\n"]
        self.assertEqual(bpe_fast.check_equal(texts, 200), 200)

    def test_training_pipeline_reproduces_tokenizer_and_scores(self):
        deb = os.environ.get("MOESERVE_JANEAUSTENR_DEB")
        tmp = tempfile.mkdtemp()
        try:
            if not deb:
                p = subprocess.run(["apt-get", "-o", "APT::Sandbox::User=root", "download",
                                    "r-cran-janeaustenr"], cwd=tmp,
                                   capture_output=True, timeout=120)
                debs = glob.glob(os.path.join(tmp, "r-cran-janeaustenr_*.deb"))
                if p.returncode != 0 or not debs:
                    self.skipTest("r-cran-janeaustenr .deb unavailable (apt-get download failed; "
                                  "set MOESERVE_JANEAUSTENR_DEB): " + p.stderr.decode()[-200:])
                deb = debs[0]
            out = os.path.join(tmp, "model")
            p = subprocess.run(["/usr/bin/python3", "tools/train_demo_model/train.py", "--deb",
                                deb, "--out", out, "--steps", "2", "--warmup", "1",
                                "--eval-batches", "1"], capture_output=True, timeout=600)
            self.assertEqual(p.returncode, 0, p.stderr.decode()[-2000:])
            for name in ["tokenizer.json", "config.json", "tokenizer_config.json",
                         "generation_config.json"]:
                with open(os.path.join(out, name), "rb") as a, \
                        open(os.path.join(MODEL, name), "rb") as b:
                    self.assertEqual(a.read(), b.read(), f"{name} differs from {MODEL}'s")
            with open(os.path.join(out, "eval.json"), encoding="utf-8") as f:
                fresh = json.load(f)
            self.assertEqual(fresh["scoring_paragraph"], self.eval["scoring_paragraph"])
            got = score(out, fresh["scoring_paragraph"])
            want = fresh["scoring_paragraph_perplexity"]
            self.assertLess(abs(got["perplexity"] - want) / want, 0.01)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    import junit_xml  # noqa: E402
    sys.exit(junit_xml.main(sys.modules[__name__]))
