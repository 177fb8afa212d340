#!/usr/bin/python3
"""Writes the seed corpus of //router:request_fuzz: serialized
moeserve.v1.GenerateRequest messages (text, token ids, chat; sampling values
inside and outside their ranges; stop strings and ids; a prompt beyond the
context). Needs the generated Python stubs:

    bazel build //proto:py_stubs
    /usr/bin/python3 router/testdata/make_request_fuzz_corpus.py
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bazel-bin", "proto"))
from moeserve.v1 import inference_pb2 as pb  # noqa: E402


def chat(*turns):
    return pb.ChatMessages(messages=[pb.ChatMessage(role=r, content=c) for r, c in turns])


SEEDS = {
    "text": pb.GenerateRequest(text="It is a truth universally acknowledged", max_tokens=8),
    "ids": pb.GenerateRequest(token_ids=pb.TokenIds(ids=[1, 2, 3]), max_tokens=4),
    "ids_out_of_range": pb.GenerateRequest(token_ids=pb.TokenIds(ids=[5, 99999, -1])),
    "chat": pb.GenerateRequest(chat=chat(("system", "Be brief."), ("user", "Who is Emma?")),
                               max_tokens=16),
    "chat_bad_role": pb.GenerateRequest(chat=chat(("wizard", "hi"))),
    "sampling": pb.GenerateRequest(
        text="Mr. Darcy", max_tokens=5,
        sampling=pb.SamplingParams(temperature=0.7, top_k=40, top_p=0.9, min_p=0.05, seed=3,
                                   repetition_penalty=1.1, presence_penalty=0.5,
                                   frequency_penalty=-0.5, logprobs=5)),
    "sampling_bad": pb.GenerateRequest(
        text="x", sampling=pb.SamplingParams(temperature=-1, top_p=0, top_k=-3, min_p=2,
                                             repetition_penalty=0, logprobs=99)),
    "stops": pb.GenerateRequest(text="Elizabeth", stop=["\n\n", "Darcy"],
                                stop_token_ids=[0, 1], max_tokens=12, ignore_eos=True),
    "stops_bad": pb.GenerateRequest(text="E", stop=[""], stop_token_ids=[70000]),
    "too_long": pb.GenerateRequest(text="Emma " * 50, max_tokens=4000000000),
    "empty": pb.GenerateRequest(),
    "utf8": pb.GenerateRequest(text="caf\u00e9 \u2014 \U0001F600 \u0000 end", priority=-5),
}

if __name__ == "__main__":
    out = os.path.join(HERE, "request_fuzz_corpus")
    os.makedirs(out, exist_ok=True)
    for name, msg in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(msg.SerializeToString())
    print(f"wrote {len(SEEDS)} seeds to {out}")
