"""Writes the demo model's card (README.md) from what train.py recorded beside the weights
(config.json, training_summary.json, eval.json).

    /usr/bin/python3 tools/train_demo_model/model_card.py models/austen-moe
"""
import json
import os
import sys


def _load(d, name):
    with open(os.path.join(d, name), encoding="utf-8") as f:
        return json.load(f)


def write_card(d):
    c, s, e = _load(d, "config.json"), _load(d, "training_summary.json"), _load(d, "eval.json")
    args = (f"--steps {s['steps']} --batch {s['batch']} --seq {s['seq']} --lr {s['lr']} "
            f"--warmup {s['warmup']} --aux-coef {s['aux_coef']} --seed {s['seed']}")
    card = f"""---
license: cc0-1.0
language: en
pipeline_tag: text-generation
tags: [qwen3_moe, mixture-of-experts, moeserve-demo]
---

# austen-moe: a small Qwen3-MoE trained on Jane Austen

moeserve's bundled demo model: {s['parameters'] / 1e6:.2f}M parameters in Hugging Face's
`Qwen3MoeForCausalLM` layout (bf16 safetensors), with its own byte-level BPE tokenizer. It writes
prose in the manner of Austen's novels; it is a demonstration of a real Mixture-of-Experts served
end to end, not a useful language model. It continues text; it was never trained on dialogue, so
chat prompts (the ChatML template in tokenizer_config.json) get a continuation, not an answer.
Under greedy decoding it falls into loops: sample (generation_config.json: temperature 0.8,
top-p 0.95, top-k 50, repetition penalty 1.1).

| | |
| --- | --- |
| layers | {c['num_hidden_layers']}, every one MoE |
| hidden size | {c['hidden_size']} |
| attention | {c['num_attention_heads']} query heads, {c['num_key_value_heads']} KV heads, head_dim {c['head_dim']}, per-head q/k RMSNorm, RoPE θ {c['rope_theta']:g} |
| experts | {c['num_experts']} SwiGLU experts of width {c['moe_intermediate_size']}, top-{c['num_experts_per_tok']}, renormalised |
| vocabulary | {c['vocab_size']}: 256 bytes, {c['vocab_size'] - 259} merges, `<\\|endoftext\\|>` {c['vocab_size'] - 3}, `<\\|im_start\\|>` {c['vocab_size'] - 2}, `<\\|im_end\\|>` {c['vocab_size'] - 1} |
| context | trained on {s['seq']}-token windows; config allows {c['max_position_embeddings']} |
| lm_head | untied |

## Data

The six novels (Sense and Sensibility, Pride and Prejudice, Mansfield Park, Emma, Northanger
Abbey, Persuasion) as Debian's `r-cran-janeaustenr` package (1.0.0-1, bookworm) ships them:
Project Gutenberg texts, public domain; the package itself is MIT-licensed (Julia Silge). Its R
data files are read without R (tools/train_demo_model/austen_data.py). Lines are joined into
paragraphs, paragraphs separated by a blank line, novels by `<|endoftext|>`. The last 5% of each
novel's paragraphs are held out: {s['train_tokens']:,} training tokens, {s['held_out_tokens']:,}
held out.

## Training

```sh
/usr/bin/python3 tools/train_demo_model/train.py --out models/austen-moe {args}
```

AdamW (β 0.9/0.95, weight decay 0.1 on matrices), peak learning rate {s['lr']} with
{s['warmup']} warm-up steps and cosine decay to 10%, batch {s['batch']} × {s['seq']} tokens,
gradient clipping 1.0, and the Switch/HF load-balancing loss with coefficient {s['aux_coef']}.
{s['steps']} steps ({s['steps'] * s['batch'] * s['seq'] / s['train_tokens']:.1f} epochs) took
{s['train_seconds'] / 60:.0f} minutes on a 2-core VM with Debian's python3-torch 1.13 and
OpenBLAS (pthread). training_log.txt has the whole log.

The run is seeded: a rerun writes the same tokenizer and config byte for byte (a test checks this
with a two-step run) and weights of the same quality. Bit-identical weights would also need the
same torch, OpenBLAS and CPU; that was not verified (it takes the full half hour).

## Results

Computed by train.py from the saved bf16 weights in float64:

- held-out loss **{e['held_out_loss']:.4f}** nats/token (perplexity {e['held_out_perplexity']:.2f}),
  over 32 batches of held-out windows;
- the held-out paragraph in eval.json ({e['scoring_paragraph_tokens']} tokens, from the end of
  Persuasion): perplexity **{e['scoring_paragraph_perplexity']:.4f}**. `moeserve run --score`
  reproduces it (tests/demo_model_test.py checks within 1%).

## Files

- model.safetensors: SHA-256 `{s['sha256']}`
- config.json, generation_config.json, tokenizer.json, tokenizer_config.json: HF formats
- eval.json, training_summary.json, training_log.txt: what the training measured

## License

The weights and tokenizer are dedicated to the public domain (CC0 1.0), like the text they were
trained on.
"""
    with open(os.path.join(d, "README.md"), "w", encoding="utf-8") as f:
        f.write(card)


if __name__ == "__main__":
    write_card(sys.argv[1])
