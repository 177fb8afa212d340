#!/bin/bash
# Assembles the runtime image's root filesystem: the given binaries under
# /usr/local/bin, every shared library they load (as `ldd` resolves them on
# the build machine, copied as real files to the same paths, the dynamic
# loader included), a non-root user and the few files glibc reads.
#
#   deploy/docker/make_rootfs.sh OUT BINARY...
#
# The Dockerfile's build stage runs it on the Bazel-built binaries, and its
# runtime stage (FROM scratch) copies OUT/ as the whole image; tests run it
# on this machine's build (tests/deploy_image_test.py). Nothing else is in
# the image: no shell, no package manager.
#
# Left out on purpose: linux-vdso (the kernel's), and the NVIDIA driver
# (libcuda.so.1, which the CUDA runtime opens at run time): the NVIDIA
# container toolkit mounts the host driver's into the container. The CUDA
# runtime and NCCL are linked, so `ldd` lists them and they are copied.
#
# Fails on a library `ldd` cannot find, or when OUT exists and is not empty.
set -euo pipefail

if (($# < 2)); then
  echo "usage: $0 OUT BINARY..." >&2
  exit 2
fi
out=$1
shift
if [[ -e $out && -n $(ls -A "$out") ]]; then
  echo "make_rootfs.sh: $out exists and is not empty" >&2
  exit 1
fi
mkdir -p "$out"/usr/local/bin "$out"/etc "$out"/tmp
chmod 1777 "$out"/tmp

# copy_real SRC DEST_PATH_IN_IMAGE: the file SRC points to, as a real file.
copy_real() {
  mkdir -p "$out$(dirname "$2")"
  cp --dereference --preserve=mode "$1" "$out$2"
  chmod u+w,go-w "$out$2"
}

declare -A copied=()
for bin in "$@"; do
  [[ -x $bin ]] || { echo "make_rootfs.sh: $bin is not an executable file" >&2; exit 1; }
  copy_real "$bin" "/usr/local/bin/$(basename "$bin")"
  listing=$(ldd "$bin") || { echo "make_rootfs.sh: ldd $bin failed" >&2; exit 1; }
  if grep -q "not found" <<<"$listing"; then
    echo "make_rootfs.sh: $bin needs libraries this machine lacks:" >&2
    grep "not found" <<<"$listing" >&2
    exit 1
  fi
  while read -r line; do
    # "libfoo.so.1 => /lib/x86_64-linux-gnu/libfoo.so.1 (0x...)" or the
    # loader's "/lib64/ld-linux-x86-64.so.2 (0x...)".
    if [[ $line == *" => "* ]]; then
      path=${line#* => }
      path=${path%% (*}
    else
      path=${line%% (*}
    fi
    [[ $path == /* ]] || continue # linux-vdso.so.1
    [[ -n ${copied[$path]:-} ]] && continue
    copied[$path]=1
    copy_real "$path" "$path"
  done <<<"$listing"
done

# The user the containers run as (securityContext runAsUser 65532, the
# "nonroot" of distroless images), and root for completeness.
cat >"$out"/etc/passwd <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
moeserve:x:65532:65532:moeserve:/tmp:/sbin/nologin
EOF
cat >"$out"/etc/group <<'EOF'
root:x:0:
moeserve:x:65532:
EOF
# Host names from /etc/hosts first (Kubernetes writes the pod's own name
# there), then DNS; glibc >= 2.34 has both built in.
echo "hosts: files dns" >"$out"/etc/nsswitch.conf
chmod 0644 "$out"/etc/passwd "$out"/etc/group "$out"/etc/nsswitch.conf
echo "make_rootfs.sh: $# binaries and ${#copied[@]} libraries in $out ($(du -sh "$out" | cut -f1))"
