#!/usr/bin/python3
"""deploy/docker: the image.

- The Dockerfile is honest: what its build stage builds and hands to
  deploy/docker/make_rootfs.sh exists after `bazel build` (these are this
  test's Bazel inputs), every file it copies from the build context exists
  and is not ignored, its runtime stage copies exactly make_rootfs.sh's
  output, its user and ports are the ones the Kubernetes manifests use, and
  the commands the manifests run are in the image.
- The root filesystem make_rootfs.sh makes of this build runs: each binary
  starts there, chrooted, as the non-root user, with nothing but what the
  image holds (no shell).
- With buildah (Debian's; no daemon) the Dockerfile's runtime stage is built
  for real, from that root filesystem (the build stage needs Docker Hub and
  NVIDIA's repository, which this machine cannot reach), and pushed to an
  OCI image layout whose digests and config are checked; the image is then
  unpacked and started: a worker and a router from it, as the image's user,
  stream a completion.
"""
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_util as du  # noqa: E402

NETWORK, NETWORK_ERROR = du.private_network_or_error()  # before gRPC starts any thread

from cluster_util import grpc, inference_pb2, inference_pb2_grpc  # noqa: E402

DOCKER = os.path.join(du.DEPLOY, "docker")
DOCKERFILE = os.path.join(DOCKER, "Dockerfile")
MODEL = os.path.join(du.REPO, "models", "austen-moe")


def built(path):
    for candidate in [path, os.path.join(du.REPO, "bazel-bin", path)]:
        if os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    raise AssertionError("%s is not built" % path)


def workdir(name):
    path = os.path.join(os.environ.get("TEST_TMPDIR") or "/tmp", name)
    subprocess.run(["rm", "-rf", path], check=True)
    os.makedirs(path)
    return path


def parse_dockerfile(path):
    """[(stage name, base, [(instruction, text)])], continuation lines joined."""
    with open(path) as f:
        text = re.sub(r"\\\n", " ", f.read())
    stages, global_args = [], []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", rest.strip(), re.I)
            stages.append((m.group(2), m.group(1), []))
        elif stages:
            stages[-1][2].append((word, rest.strip()))
        else:
            global_args.append((word, rest.strip()))
    return global_args, stages


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_digest(root):
    """{path: (mode bits, sha256 or link target)} of a directory tree."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if os.path.islink(full):
                out[rel] = ("link", os.readlink(full))
            elif os.path.isfile(full):
                out[rel] = (oct(st.st_mode & 0o7777), sha256_file(full))
            else:
                out[rel] = (oct(st.st_mode & 0o7777), "dir")
    return out


class DockerfileTest(unittest.TestCase):
    def test_the_dockerfile_copies_what_the_build_makes(self):
        global_args, stages = parse_dockerfile(DOCKERFILE)
        names = [s[0] for s in stages]
        self.assertEqual(names, ["build", "rootfs", "runtime"])
        self.assertIn(("ARG", "ROOTFS=build"), global_args)
        build, rootfs, runtime = stages
        self.assertEqual(rootfs[1], "${ROOTFS}")
        self.assertEqual(runtime[1], "scratch", "the runtime stage holds only what make_rootfs.sh gathers")
        # The build stage: COPY from the context, then bazel build and
        # make_rootfs.sh on the built binaries.
        with open(os.path.join(DOCKER, "Dockerfile.dockerignore")) as f:
            ignored = [line.strip() for line in f if line.strip() and not line.startswith("#")]
        build_args = {}
        for word, text in build[2]:
            if word == "ARG":
                key, _, value = text.partition("=")
                build_args[key] = value
            if word == "COPY":
                self.assertNotIn("--from", text)
                *sources, _ = text.split()
                for src in sources:
                    self.assertTrue(os.path.exists(os.path.join(du.REPO, src)), "COPY %s: not in the context" % src)
                    if src != ".":
                        self.assertFalse(any(re.fullmatch(p.replace("*", ".*"), src) for p in ignored),
                                         "COPY %s is ignored by Dockerfile.dockerignore" % src)
        self.assertEqual(set(build_args), {"CUDA_VERSION", "CUDA_ARCHITECTURES"})
        runs = " ".join(text for word, text in build[2] if word == "RUN")
        m = re.search(r"bazel build (.*?) &&\s+deploy/docker/make_rootfs.sh /out/rootfs (.*?)$", runs)
        self.assertIsNotNone(m, "no `bazel build ... && make_rootfs.sh /out/rootfs ...` in the build stage")
        targets = re.findall(r"//([\w/]+):([\w-]+)", m.group(1))
        self.assertIn('--define=cuda_archs=$CUDA_ARCHITECTURES', m.group(1))
        binaries = m.group(2).split()
        self.assertEqual(binaries, ["bazel-bin/%s/%s" % t for t in targets],
                         "make_rootfs.sh must get exactly the binaries bazel built")
        for path in binaries:
            # Exists after `bazel build` (they are this test's inputs).
            built(path[len("bazel-bin/"):])
        # The runtime stage: exactly the root filesystem, as the non-root user.
        copies = [text for word, text in runtime[2] if word == "COPY"]
        self.assertEqual(copies, ["--from=rootfs /out/rootfs/ /"])
        user = [text for word, text in runtime[2] if word == "USER"]
        self.assertEqual(user, ["65532:65532"])
        exposed = {int(p) for word, text in runtime[2] if word == "EXPOSE" for p in text.split()}
        # ... which are the manifests' user, commands and ports.
        objects = du.render(du.OVERLAYS["gpu"])
        ports, commands = set(), set()
        for w in du.find(objects, "StatefulSet") + du.find(objects, "Deployment"):
            spec = w["spec"]["template"]["spec"]
            self.assertEqual((spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]),
                             (65532, 65532))
            for c in spec["containers"]:
                ports |= {p["containerPort"] for p in c["ports"]}
                commands.add(c["command"][0])
        self.assertEqual(exposed, ports)
        self.assertEqual(commands, {"/usr/local/bin/" + os.path.basename(b) for b in binaries} & commands)
        self.assertEqual(len(commands), 2)
        print("Dockerfile: builds %s; the runtime stage is make_rootfs.sh's output as 65532:65532; "
              "exposes %s" % (", ".join("//%s:%s" % t for t in targets), sorted(exposed)))


class RootfsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = workdir("deploy_image")
        cls.rootfs = os.path.join(cls.dir, "rootfs")
        cls.binaries = [built(p) for p in ["router/moeserve-router", "worker/moeserve-worker", "tools/moeserve"]]
        p = du.run([os.path.join(DOCKER, "make_rootfs.sh"), cls.rootfs] + cls.binaries, timeout=120)
        print(p.stdout.strip())

    def chroot(self, *argv, user="65532:65532"):
        spec = [] if du.ONLY_ROOT_MAPPED else ["--userspec=" + user]
        return subprocess.run([du.tool("chroot")] + spec + [self.rootfs] + list(argv),
                              capture_output=True, text=True, timeout=60)

    def test_every_binary_starts_in_the_rootfs_as_the_user(self):
        if NETWORK_ERROR:
            self.skipTest("needs root or user namespaces to chroot: %s" % NETWORK_ERROR)
        for b in self.binaries:
            name = os.path.basename(b)
            p = self.chroot("/usr/local/bin/" + name, "--help")
            self.assertEqual(p.returncode, 0, "%s --help in the rootfs:\n%s%s" % (name, p.stdout, p.stderr))
            self.assertIn("Usage", p.stdout + p.stderr, name)
        self.assertFalse(os.path.exists(os.path.join(self.rootfs, "bin", "sh")), "a shell in the image")
        with open(os.path.join(self.rootfs, "etc", "passwd")) as f:
            self.assertIn("moeserve:x:65532:65532:", f.read())
        # Every library each binary loads, resolved inside the rootfs by its
        # own loader, is a file of the rootfs.
        for b in self.binaries:
            p = self.chroot("/lib64/ld-linux-x86-64.so.2", "--list", "/usr/local/bin/" + os.path.basename(b))
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertNotIn("not found", p.stdout)


class BuildahTest(unittest.TestCase):
    """The Dockerfile's runtime stage, built by buildah and started."""

    @classmethod
    def setUpClass(cls):
        cls.buildah = shutil.which("buildah")
        cls.pods = []
        if cls.buildah is None:
            raise unittest.SkipTest("buildah is not installed (tools/deps.sh installs it for tests)")
        if os.geteuid() != 0 or du.ONLY_ROOT_MAPPED:
            raise unittest.SkipTest("buildah's vfs storage needs root here")
        cls.dir = workdir("deploy_buildah")
        cls.store = ["--root", os.path.join(cls.dir, "storage"), "--runroot", os.path.join(cls.dir, "run"),
                     "--storage-driver", "vfs"]
        rootfs = os.path.join(cls.dir, "rootfs")
        binaries = [built(p) for p in ["router/moeserve-router", "worker/moeserve-worker", "tools/moeserve"]]
        du.run([os.path.join(DOCKER, "make_rootfs.sh"), rootfs] + binaries, timeout=120)
        cls.rootfs_tree = tree_digest(rootfs)
        # What the build stage would leave: an image with /out/rootfs.
        ctr = cls.bh("from", "scratch").strip()
        cls.bh("copy", ctr, rootfs, "/out/rootfs")
        cls.bh("commit", "-q", ctr, "localhost/moeserve-build:test")
        cls.bh("rm", ctr)
        out = cls.bh("bud", "--isolation", "chroot", "--layers=false", "--build-arg",
                     "ROOTFS=localhost/moeserve-build:test", "-f", DOCKERFILE, "-t", "localhost/moeserve:test",
                     DOCKER, timeout=300)
        print("\n".join(line for line in out.splitlines() if "STEP" in line))
        cls.oci = os.path.join(cls.dir, "oci")
        cls.bh("push", "-q", "localhost/moeserve:test", "oci:%s:moeserve" % cls.oci, timeout=300)
        shutil.rmtree(os.path.join(cls.dir, "storage"), ignore_errors=True)

    @classmethod
    def bh(cls, *args, timeout=120):
        return du.run([cls.buildah] + cls.store + list(args), timeout=timeout).stdout

    @classmethod
    def tearDownClass(cls):
        du.stop_all(cls.pods)

    def blob(self, digest):
        algo, hexd = digest.split(":")
        self.assertEqual(algo, "sha256")
        path = os.path.join(self.oci, "blobs", "sha256", hexd)
        self.assertEqual(sha256_file(path), hexd, "blob %s does not match its digest" % digest)
        return path

    def image(self):
        with open(os.path.join(self.oci, "oci-layout")) as f:
            self.assertEqual(json.load(f)["imageLayoutVersion"], "1.0.0")
        with open(os.path.join(self.oci, "index.json")) as f:
            index = json.load(f)
        entry = index["manifests"][0]
        self.assertEqual(entry["annotations"]["org.opencontainers.image.ref.name"], "moeserve")
        with open(self.blob(entry["digest"])) as f:
            manifest = json.load(f)
        self.assertEqual(os.path.getsize(self.blob(entry["digest"])), entry["size"])
        with open(self.blob(manifest["config"]["digest"])) as f:
            config = json.load(f)
        return manifest, config

    def unpack(self):
        manifest, config = self.image()
        target = os.path.join(self.dir, "unpacked")
        shutil.rmtree(target, ignore_errors=True)
        os.makedirs(target)
        self.assertEqual(len(manifest["layers"]), len(config["rootfs"]["diff_ids"]))
        for layer, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"]):
            path = self.blob(layer["digest"])
            self.assertEqual(os.path.getsize(path), layer["size"])
            opener = gzip.open if layer["mediaType"].endswith("+gzip") else open
            with opener(path, "rb") as f:
                h = hashlib.sha256()
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            self.assertEqual("sha256:" + h.hexdigest(), diff_id, "layer's diff_id")
            with tarfile.open(path) as tar:
                tar.extractall(target, numeric_owner=True)
        return target, config

    def test_1_image_layout_and_config(self):
        manifest, config = self.image()
        c = config["config"]
        print("image: %d layer(s), %.0f MB; config %s" % (
            len(manifest["layers"]), sum(l["size"] for l in manifest["layers"]) / 1e6,
            json.dumps({k: c.get(k) for k in ["User", "Cmd", "Entrypoint", "ExposedPorts", "WorkingDir"]})))
        self.assertEqual((config["os"], config["architecture"]), ("linux", "amd64"))
        self.assertEqual(c["User"], "65532:65532")
        self.assertEqual(c["Cmd"], ["/usr/local/bin/moeserve-router", "--help"])
        self.assertIn("NVIDIA_DRIVER_CAPABILITIES=compute,utility", c["Env"])
        self.assertEqual(set(c["ExposedPorts"]), {"%d/tcp" % p for p in [50051, 8000, 9090, 50061, 50062, 9091]})

    def test_2_image_is_the_rootfs_and_serves(self):
        if NETWORK_ERROR:
            self.skipTest("needs a private network namespace: %s" % NETWORK_ERROR)
        root, config = self.unpack()
        tree = tree_digest(root)
        self.assertEqual(tree, self.rootfs_tree, "the image's files differ from make_rootfs.sh's")
        user, group = map(int, config["config"]["User"].split(":"))
        # The image's CMD, as the image's user.
        p = subprocess.run([du.tool("chroot"), "--userspec=%d:%d" % (user, group), root] + config["config"]["Cmd"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("Usage: moeserve-router", p.stdout)
        # A one-rank worker and a router from the image, on loopback.
        sec = {"runAsUser": user, "runAsGroup": group, "readOnlyRootFilesystem": True}
        mounts = [{"name": "model", "mountPath": "/models/model", "readOnly": True},
                  {"name": "tmp", "mountPath": "/tmp"}]
        volumes = [{"name": "model", "hostPath": {"path": "/model"}}, {"name": "tmp", "emptyDir": {}}]
        worker = du.Pod("worker", "test", {}, {"securityContext": sec, "volumes": volumes, "containers": [{
            "name": "worker", "command": ["/usr/local/bin/moeserve-worker"],
            "args": ["--model=/models/model", "--listen=127.0.0.31:50061", "--threads=1",
                     "--kv-cache-bytes=67108864"], "volumeMounts": mounts}]}, "127.0.0.31")
        router = du.Pod("router", "test", {}, {"securityContext": sec, "volumes": volumes, "containers": [{
            "name": "router", "command": ["/usr/local/bin/moeserve-router"],
            "args": ["--model=/models/model", "--listen=127.0.0.32:50051", "--workers=127.0.0.31:50061"],
            "volumeMounts": mounts}]}, "127.0.0.32")
        self.pods.extend([worker, router])
        for pod in self.pods:
            pod.hosts, pod.resolv = du.hosts_file(pod, {}), du.resolv_conf(pod)
        du.prepare_rootfs(root, self.pods)
        for pod in self.pods:
            du.start_container(pod, pod.spec["containers"][0], [], root, {"/model": MODEL}, self.dir)
        serving = du.wait_until(lambda: du.grpc_health("127.0.0.32:50051") == "SERVING" or
                                any(p.processes[-1][1].poll() is not None for p in self.pods), 60)
        logs = "\n".join(du.read_log(p.processes[-1][2]) for p in self.pods)
        self.assertEqual(du.grpc_health("127.0.0.32:50051"), "SERVING", logs)
        self.assertTrue(serving)
        with grpc.insecure_channel("127.0.0.32:50051") as ch:
            tokens, text = [], ""
            for chunk in inference_pb2_grpc.InferenceStub(ch).Generate(
                    inference_pb2.GenerateRequest(text="It is a truth universally acknowledged, that",
                                                  max_tokens=12), timeout=60):
                tokens.extend(chunk.token_ids)
                text += chunk.text
        print("from the image: %r" % text)
        self.assertEqual(len(tokens), 12)
        self.assertTrue(text.strip())
        with open("/proc/%d/status" % worker.processes[-1][1].pid) as f:
            self.assertRegex(f.read(), r"(?m)^Uid:\s+%d\s" % user)


if __name__ == "__main__":
    import junit_xml  # noqa: E402
    sys.exit(junit_xml.main(sys.modules[__name__]))
