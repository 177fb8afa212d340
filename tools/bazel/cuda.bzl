"""cuda_library: .cu files compiled by nvcc into a cc_library.

Only meaningful when @local_cuda found a toolkit (HAS_CUDA); BUILD files
guard their CUDA targets with `if HAS_CUDA:` so a machine without CUDA builds
everything else. Architectures default to sm_90 (H100/H200) plus PTX for
newer GPUs; override with `--define=cuda_archs=80;90` style lists (';' or
',' separated compute capabilities without the dot): SASS for each, and PTX
of the last for GPUs newer than all of them. The kernels need sm_80 or later
(bf16 mma.sync, cp.async).
"""

load("@local_cuda//:defs.bzl", "CUDA_PATH")

def cuda_library(name, srcs, hdrs = [], cu_hdrs = [], deps = [], copts = [], **kwargs):
    """cu_hdrs: further headers the .cu files include (not exported)."""
    objs = []
    for src in srcs:
        obj = name + "_" + src.replace("/", "_").replace(".cu", ".o")
        native.genrule(
            name = obj + "_nvcc",
            srcs = [src] + hdrs + cu_hdrs,
            outs = [obj],
            # nvcc names its temporaries after its PID, which is the same
            # small number in every sandbox's PID namespace: give each
            # action its own TMPDIR, or parallel nvcc runs clobber each other.
            cmd = "export TMPDIR=$$(mktemp -d) && trap 'rm -rf $$TMPDIR' EXIT && " + " ".join([
                CUDA_PATH + "/bin/nvcc",
                "-std=c++17 -O3 -ccbin /usr/bin/g++ -Xcompiler -fPIC -I.",
                "$$(archs=$$(echo '$(cuda_archs)' | tr ';,' '  ');",
                "for a in $$archs; do printf -- '-gencode arch=compute_%s,code=sm_%s ' $$a $$a; done;",
                "last=$${archs##* }; printf -- '-gencode arch=compute_%s,code=compute_%s' $$last $$last)",
                " ".join(copts),
                "-c $(location " + src + ") -o $@",
            ]),
        )
        objs.append(obj)
    native.cc_library(
        name = name,
        srcs = objs,
        hdrs = hdrs,
        deps = deps + ["@local_cuda//:cudart"],
        **kwargs
    )
