"""Repository rule that finds the CUDA toolkit, or falls back to CPU-only.

Creates @local_cuda with:
  //:defs.bzl    HAS_CUDA (bool), CUDA_PATH (string)
  //:cudart, //:cublas, //:nccl   link-only cc_library targets (empty when
                                 CUDA is absent, so dependents still build)
The toolkit is looked up in $CUDA_PATH, then /usr/local/cuda. Setting
MOESERVE_NO_CUDA=1 forces the CPU-only build (how CI proves the fallback).
"""

_BUILD_WITH_CUDA = """
package(default_visibility = ["//visibility:public"])

_LIB = ["-L{path}/lib64", "-L{path}/lib", "-Wl,-rpath,{path}/lib64", "-Wl,-rpath,{path}/lib"]

cc_library(
    name = "headers",
    hdrs = glob(["include/**/*.h", "include/**/*.hpp", "include/**/*.cuh", "include/nv/**"], allow_empty = True),
    includes = ["include"],
)

cc_library(name = "cudart", deps = [":headers"], linkopts = _LIB + ["-lcudart"])
cc_library(name = "cublas", deps = [":headers"], linkopts = _LIB + ["-lcublasLt", "-lcublas"])
cc_library(name = "nccl", deps = [":headers"], linkopts = _LIB + ["-lnccl"])

filegroup(name = "nvcc", srcs = ["bin/nvcc"])
"""

_BUILD_NO_CUDA = """
package(default_visibility = ["//visibility:public"])

# CUDA toolkit not found: empty targets so that dependents still build.
cc_library(name = "headers")
cc_library(name = "cudart")
cc_library(name = "cublas")
cc_library(name = "nccl")
filegroup(name = "nvcc", srcs = [])
"""

def _cuda_configure_impl(ctx):
    path = ctx.os.environ.get("CUDA_PATH", "/usr/local/cuda")
    forced_off = ctx.os.environ.get("MOESERVE_NO_CUDA", "") not in ["", "0"]
    has_cuda = (not forced_off) and ctx.path(path + "/bin/nvcc").exists
    if has_cuda:
        for entry in ["bin", "include", "lib", "lib64", "nvvm"]:
            if ctx.path(path + "/" + entry).exists:
                ctx.symlink(path + "/" + entry, entry)
        ctx.file("BUILD.bazel", _BUILD_WITH_CUDA.format(path = ctx.path(path).realpath))
    else:
        ctx.file("BUILD.bazel", _BUILD_NO_CUDA)
    ctx.file("defs.bzl", "HAS_CUDA = {}\nCUDA_PATH = \"{}\"\n".format(
        "True" if has_cuda else "False",
        ctx.path(path).realpath if has_cuda else "",
    ))

cuda_configure = repository_rule(
    implementation = _cuda_configure_impl,
    environ = ["CUDA_PATH", "MOESERVE_NO_CUDA"],
    local = True,
)
