#!/usr/bin/python3
"""End-to-end tests of the `moeserve` CLI binary on the fixtures.

Runs bazel-bin/tools/moeserve as a user would and checks its real output:
greedy generations equal the float64 reference's tokens (golden.safetensors),
chat prompts render and tokenize as the reference did, tokenize/decode round
trip, seeded sampling is reproducible, and bad input gets a clear message and
a non-zero exit. Standard library only.
"""
import json
import os
import struct
import subprocess
import sys
import unittest

BIN = os.environ.get("MOESERVE_BIN", "tools/moeserve")
FIXTURES = "tests/fixtures"


def golden(name):
    """{tensor: list} for the I32 tensors of a fixture's golden.safetensors."""
    with open(os.path.join(FIXTURES, name, "golden.safetensors"), "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for key, entry in header.items():
        if key == "__metadata__" or entry["dtype"] != "I32":
            continue
        begin, end = entry["data_offsets"]
        raw = data[8 + n + begin:8 + n + end]
        out[key] = list(struct.unpack(f"<{len(raw) // 4}i", raw))
    out["__metadata__"] = header.get("__metadata__", {})
    return out


def run(*args, stdin=None):
    """Runs the binary; stdout/stderr decoded as UTF-8 with no newline translation."""
    p = subprocess.run([BIN, *args], input=None if stdin is None else stdin.encode(),
                       capture_output=True, timeout=300)
    p.stdout = p.stdout.decode("utf-8")
    p.stderr = p.stderr.decode("utf-8", "replace")
    return p


class RunTest(unittest.TestCase):
    def test_greedy_json_matches_reference_on_a_checkpoint_without_tokenizer(self):
        for name in ["mixtral_f32", "qwen3_moe_bf16_merged_sharded", "olmoe_bf16"]:
            g = golden(name)
            ids = ",".join(map(str, g["prompt_ids"]))
            p = run("run", "--model", f"{FIXTURES}/{name}", "--prompt-ids", ids,
                    "--max-tokens", "40", "--ignore-eos", "--format", "json")
            self.assertEqual(p.returncode, 0, p.stderr)
            out = json.loads(p.stdout)
            self.assertEqual(out["token_ids"], g["greedy_ids"], name)
            self.assertEqual(out["prompt_tokens"], len(g["prompt_ids"]))
            self.assertEqual(out["finish_reason"], "length")
            self.assertNotIn("text", out)  # no tokenizer files: no text

    def test_chat_prompt_renders_and_generates_like_the_reference(self):
        g = golden("qwen3_moe_chat")
        p = run("run", "--model", f"{FIXTURES}/qwen3_moe_chat", "--chat",
                "--system", "You are a helpful assistant.",
                "--prompt", "Tell me about the river and the old ferryman.",
                "--max-tokens", "40", "--ignore-eos", "--format", "json")
        self.assertEqual(p.returncode, 0, p.stderr)
        out = json.loads(p.stdout)
        self.assertEqual(out["prompt_tokens"], len(g["prompt_ids"]))
        self.assertEqual(out["token_ids"], g["greedy_ids"])
        d = run("tokenize", "--model", f"{FIXTURES}/qwen3_moe_chat",
                "--decode", ",".join(map(str, out["token_ids"])), "--skip-special-tokens")
        self.assertEqual(d.stdout[:-1], out["text"])

    def test_text_mode_streams_and_reports(self):
        p = run("run", "--model", f"{FIXTURES}/qwen3_moe_chat", "--prompt", "Hello there",
                "--max-tokens", "12", "--temperature", "0.9", "--seed", "3")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("prompt tokens", p.stderr)
        self.assertIn("tokens/s", p.stderr)
        self.assertTrue(p.stdout.endswith("\n"))

    def test_seeded_sampling_is_reproducible(self):
        def sample(seed):
            p = run("run", "--model", f"{FIXTURES}/qwen3_moe_f32", "--prompt-ids", "5,6,7",
                    "--max-tokens", "24", "--temperature", "1.0", "--seed", str(seed),
                    "--ignore-eos", "--format", "json")
            self.assertEqual(p.returncode, 0, p.stderr)
            return json.loads(p.stdout)["token_ids"]
        self.assertEqual(sample(11), sample(11))
        self.assertNotEqual(sample(11), sample(12))

    def test_stops_at_a_stop_token(self):
        g = golden("mixtral_f32")
        stop = g["greedy_ids"][5]
        p = run("run", "--model", f"{FIXTURES}/mixtral_f32",
                "--prompt-ids", ",".join(map(str, g["prompt_ids"])), "--max-tokens", "40",
                "--stop-token-ids", str(stop), "--format", "json")
        out = json.loads(p.stdout)
        first = g["greedy_ids"].index(stop)
        self.assertEqual(out["token_ids"], g["greedy_ids"][:first + 1])
        self.assertEqual(out["finish_reason"], "stop")

    def test_help_documents_every_flag(self):
        p = run("run", "--help")
        self.assertEqual(p.returncode, 0)
        for flag in ["--model", "--prompt", "--prompt-ids", "--chat", "--max-tokens",
                     "--temperature", "--seed", "--format", "--threads", "--chat-format"]:
            self.assertIn(flag, p.stdout)
        self.assertEqual(run("--help").returncode, 0)
        self.assertIn("--decode", run("tokenize", "--help").stdout)

    def test_bad_input_gets_a_clear_error(self):
        cases = [
            (["run", "--prompt", "x"], "--model DIR is required", 2),
            (["run", "--model", "/nonexistent", "--prompt-ids", "1"], "/nonexistent/config.json", 1),
            (["run", "--model", f"{FIXTURES}/mixtral_f32", "--prompt-ids", "1,99999"],
             "token id 99999 is outside the vocabulary [0, 320)", 2),
            (["run", "--model", f"{FIXTURES}/mixtral_f32", "--prompt-ids", "1,x"],
             "--prompt-ids: 'x' is not an integer", 2),
            (["run", "--model", f"{FIXTURES}/mixtral_f32", "--prompt-ids", "1,2",
              "--max-tokens", "1000"], "prompt (2 tokens) plus max_tokens (1000)", 2),
            (["run", "--model", f"{FIXTURES}/mixtral_f32", "--prompt", "hi"],
             "has no tokenizer.json: give the prompt as token ids with --prompt-ids", 1),
            (["run", "--model", f"{FIXTURES}/qwen3_moe_chat", "--prompt", "hi", "--chat",
              "--chat-format", "vicuna"], "chatml", 2),
            (["run", "--model", f"{FIXTURES}/mixtral_f32", "--prompt-ids", "1", "--bogus"],
             "unknown flag --bogus", 2),
            (["run", "--model", f"{FIXTURES}/mixtral_f32", "--prompt-ids", "1",
              "--format", "xml"], "--format must be text or json", 2),
            (["frobnicate"], "unknown subcommand 'frobnicate'", 2),
        ]
        for args, message, code in cases:
            p = run(*args)
            self.assertIn(message, p.stderr, args)
            self.assertNotEqual(p.returncode, 0, args)
            self.assertEqual(p.returncode, code, (args, p.stderr))


class TokenizeTest(unittest.TestCase):
    def test_encode_decode_round_trip_and_stdin(self):
        text = "Hello world, caf\u00e9 \u4e16\u754c \U0001F600"
        p = run("tokenize", "--model", f"{FIXTURES}/qwen3_moe_chat", "--text", text)
        self.assertEqual(p.returncode, 0, p.stderr)
        ids = json.loads(p.stdout)
        self.assertTrue(all(isinstance(i, int) for i in ids))
        self.assertEqual(json.loads(run("tokenize", "--model", f"{FIXTURES}/qwen3_moe_chat",
                                        stdin=text).stdout), ids)
        d = run("tokenize", "--model", f"{FIXTURES}/qwen3_moe_chat",
                "--decode", ",".join(map(str, ids)))
        self.assertEqual(d.stdout, text + "\n")

    def test_matches_the_fixture_tokenizer_cases(self):
        with open(os.path.join(FIXTURES, "qwen3_moe_chat", "tokenizer_cases.json")) as f:
            cases = json.load(f)
        checked = 0
        for case in cases["cases"]:
            p = run("tokenize", "--model", f"{FIXTURES}/qwen3_moe_chat", "--text", case["text"])
            self.assertEqual(json.loads(p.stdout), case["ids"], case["text"])
            checked += 1
        self.assertGreater(checked, 0)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import junit_xml  # noqa: E402
    sys.exit(junit_xml.main(sys.modules[__name__]))
