"""Starting and talking to a `moeserve local` cluster from tests and benches.

The client side is Debian's python3-grpcio with stubs that protoc generated
from proto/ (//proto:py_stubs): an implementation independent of the C++
one under test.
"""
import os
import re
import signal
import subprocess
import sys
import threading
import time

BIN = os.environ.get("MOESERVE_BIN", "tools/moeserve")


def _add_stub_path():
    for base in [os.environ.get("MOESERVE_PY_STUBS", ""), "proto", "bazel-bin/proto"]:
        if base and os.path.exists(os.path.join(base, "moeserve", "v1", "inference_pb2.py")):
            sys.path.insert(0, os.path.abspath(base))
            return
    raise RuntimeError("generated Python stubs not found (bazel build //proto:py_stubs)")


_add_stub_path()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proc_util import children, cmdline, cpu_seconds  # noqa: E402,F401 (cpu_seconds: re-exported)
import grpc  # noqa: E402
from moeserve.v1 import inference_pb2, inference_pb2_grpc  # noqa: E402
from moeserve.internal.v1 import worker_pb2, worker_pb2_grpc  # noqa: E402


def health(channel):
    """Whether the server says SERVING: a grpc.health.v1 Check by hand (Debian
    has no grpc_health module); False on any RPC error."""
    check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                request_serializer=lambda b: b,
                                response_deserializer=lambda b: b)
    try:
        return check(b"", timeout=2) == b"\x08\x01"
    except grpc.RpcError:
        return False


class Cluster:
    """`moeserve local` as a child process; stop() or use as a context manager."""

    def __init__(self, model, workers, *extra, timeout=120, threads=1):
        self.proc = subprocess.Popen(
            [BIN, "local", "--model", model, "--workers", str(workers), "--grpc-port", "0",
             "--threads-per-worker", str(threads), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.http = None  # HOST:PORT of the OpenAI HTTP API, with --http-port
        self.metrics = None  # {"router": ADDR, "workers": [ADDR, ...]}, with --metrics-port
        self.stderr_lines = []
        self.stdout_lines = []
        self._ready = threading.Event()
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout_lines, True),
                         daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr_lines, False),
                         daemon=True).start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError("cluster not ready in %ds:\n%s" % (timeout, self.log()))
        if self.proc.poll() is not None or not self.target:
            raise RuntimeError("cluster failed to start:\n" + self.log())
        self.channel = grpc.insecure_channel(self.target)
        self.stub = inference_pb2_grpc.InferenceStub(self.channel)

    def _pump(self, stream, lines, is_stdout):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            lines.append(line)
            if is_stdout and line.startswith("moeserve metrics "):
                fields = dict(f.split("=", 1) for f in line.split()[2:])
                self.metrics = {"router": fields["router"],
                                "workers": fields["workers"].split(",")}
            if is_stdout and line.startswith("moeserve http="):
                self.http = line.split("http=", 1)[1].strip()
            if is_stdout and line.startswith("moeserve ready grpc="):
                self.target = line.split("grpc=", 1)[1].strip()
                self._ready.set()
        if is_stdout:
            self.target = getattr(self, "target", None)
            self._ready.set()

    def log(self):
        return "\n".join(self.stdout_lines + self.stderr_lines)

    def workers(self):
        """[{rank, listen, resident_expert_bytes, ...}] from the workers' ready lines."""
        out = []
        for line in self.stderr_lines:
            if "moeserve-worker ready" in line:
                out.append(dict(re.findall(r"(\w+)=(\S+)", line)))
        return sorted(out, key=lambda w: int(w["rank"]))

    def worker_status(self, rank):
        w = self.workers()[rank]
        with grpc.insecure_channel(w["listen"]) as ch:
            return worker_pb2_grpc.WorkerStub(ch).GetStatus(worker_pb2.GetStatusRequest(),
                                                            timeout=10)

    def router_pid(self):
        """The router's pid (a child of `moeserve local`)."""
        return self.child_pid("router")

    def child_pid(self, role):
        """The pid of the first child running `moeserve ROLE` (router, worker)."""
        for pid in self.child_pids():
            if cmdline(pid)[1:2] == [role]:
                return pid
        raise RuntimeError(f"{role} not found:\n{self.log()}")

    def child_pids(self):
        """Processes started by this launcher."""
        return children(self.proc.pid)

    def generate(self, timeout=120, **request):
        """(token_ids, text, finish) of one streamed completion."""
        tokens, text, finish = [], "", None
        for chunk in self.stub.Generate(inference_pb2.GenerateRequest(**request),
                                        timeout=timeout):
            self._check(finish is None, "a chunk after the finish")
            tokens.extend(chunk.token_ids)
            text += chunk.text
            if chunk.HasField("finish"):
                finish = chunk.finish
        self._check(finish is not None, "the stream ended without a finish")
        return tokens, text, finish

    @staticmethod
    def _check(ok, what):
        if not ok:
            raise AssertionError(what)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if getattr(self, "channel", None):
            self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def run_json(model, *args):
    """`moeserve run ... --format json` as a dict."""
    import json
    p = subprocess.run([BIN, "run", "--model", model, *args, "--format", "json"],
                       capture_output=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.decode())
    return json.loads(p.stdout)
