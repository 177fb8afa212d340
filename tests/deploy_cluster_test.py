#!/usr/bin/python3
"""The rendered `cpu` overlay, run: every container of every pod that
`kubectl kustomize deploy/k8s/overlays/cpu` describes (the worker
StatefulSet's ranks and the router Deployment's replicas) is started with
exactly its command, arguments, environment and ports, from the image's root
filesystem (deploy/docker/make_rootfs.sh on this build: what the Dockerfile's
runtime stage holds), as the manifest's user, on loopback (see
tests/deploy_util.py for what stands in for the kubelet, the container
runtime and cluster DNS). Then:
  - each pod passes its own startup and readiness probes, run as kubelet
    runs them (grpc.health.v1 with the manifest's port and service);
  - each worker's rank is its pod ordinal and its world size the replicas;
  - a completion streams through the router's Service ports (gRPC and HTTP);
  - every metric the Grafana dashboard and the alert rules read is in a live
    scrape of the router and the workers, with the labels they group by;
  - SIGTERM drains each container within its terminationGracePeriodSeconds.
A flag renamed in the code, a port or a name that does not line up, breaks
this test rather than a rollout.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_util as du  # noqa: E402

NETWORK, NETWORK_ERROR = du.private_network_or_error()  # before gRPC starts any thread

from cluster_util import grpc, inference_pb2, inference_pb2_grpc  # noqa: E402

# Where the cpu overlay's hostPath points on a node, and this machine's copy.
NODE_PATHS = {"/var/lib/moeserve/models/austen-moe": os.path.join(du.REPO, "models", "austen-moe")}
BINARIES = ["router/moeserve-router", "worker/moeserve-worker", "tools/moeserve"]
PROMPT = "It is a truth universally acknowledged, that"


def built(path):
    for candidate in [path, os.path.join("bazel-bin", path), os.path.join(du.REPO, "bazel-bin", path)]:
        if os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    raise AssertionError("%s is not built (bazel build //%s)" % (path, path.replace("/", ":", 1)))


def workdir(name):
    base = os.environ.get("TEST_TMPDIR") or "/tmp"
    path = os.path.join(base, name)
    subprocess.run(["rm", "-rf", path], check=True)
    os.makedirs(path)
    return path


class DeployClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pods = []
        if NETWORK_ERROR:
            raise unittest.SkipTest("cannot make a private network namespace (%s): the rendered pods "
                                    "need one, and mount namespaces, to run" % NETWORK_ERROR)
        cls.objects = du.render(du.OVERLAYS["cpu"])
        print("rendered overlays/cpu with %s: %d objects; %s" % (
            du.renderers()[0][0], len(cls.objects), NETWORK), flush=True)
        cls.dir = workdir("deploy_cluster")
        cls.rootfs = os.path.join(cls.dir, "rootfs")
        du.run([os.path.join(du.DEPLOY, "docker", "make_rootfs.sh"), cls.rootfs] +
               [built(b) for b in BINARIES], timeout=120)
        cls.pods = du.pods_of(cls.objects)
        records = du.dns_records(cls.objects, cls.pods)
        for pod in cls.pods:
            pod.hosts, pod.resolv = du.hosts_file(pod, records), du.resolv_conf(pod)
        du.prepare_rootfs(cls.rootfs, cls.pods)
        cls.workers = [p for p in cls.pods if "apps.kubernetes.io/pod-index" in p.labels]
        cls.routers = [p for p in cls.pods if p not in cls.workers]
        cls.argv = {}
        cls.started = time.time()
        try:
            # Parallel pod management: every rank at once, routers beside them.
            for pod in cls.workers + cls.routers:
                for c in pod.spec["containers"]:
                    _, argv, _ = du.start_container(pod, c, cls.objects, cls.rootfs, NODE_PATHS, cls.dir)
                    cls.argv[pod.name] = argv
                    print("started %s/%s: %s" % (pod.name, c["name"], " ".join(argv)), flush=True)
            for pod in cls.workers + cls.routers:
                cls.wait_ready(pod)
        except BaseException:
            cls.dump_logs()
            du.stop_all(cls.pods)
            raise
        print("all %d pods ready in %.1f s" % (len(cls.pods), time.time() - cls.started), flush=True)

    @classmethod
    def wait_ready(cls, pod):
        """Kubelet's order: the startup probe until it passes (within its
        window, capped for the test), then readiness."""
        c = pod.spec["containers"][0]
        proc = pod.processes[-1][1]
        for kind, cap in [("startupProbe", 120), ("readinessProbe", 30)]:
            probe = c.get(kind)
            if probe is None:
                continue
            limit = min(du.probe_window(probe), cap)
            deadline = time.time() + limit
            while not du.run_probe(pod, c, probe):
                if proc.poll() is not None:
                    raise AssertionError("%s exited with %d before its %s passed:\n%s" % (
                        pod.name, proc.returncode, kind, du.read_log(pod.processes[-1][2])))
                if time.time() > deadline:
                    raise AssertionError("%s: %s did not pass within %d s:\n%s" % (
                        pod.name, kind, limit, du.read_log(pod.processes[-1][2])))
                time.sleep(0.2)

    @classmethod
    def dump_logs(cls):
        for pod in cls.pods:
            for name, proc, log in pod.processes:
                print("---- %s/%s (exit %s) ----\n%s" % (pod.name, name, proc.poll(), du.read_log(log)))

    @classmethod
    def tearDownClass(cls):
        du.stop_all(cls.pods)

    def log(self, pod):
        return du.read_log(pod.processes[-1][2], limit=100000)

    def service_address(self, name, port_name):
        """Where the Service's port lands: its targetPort on a selected pod."""
        svc = du.one(self.objects, "Service", name)
        port = next(p for p in svc["spec"]["ports"] if p["name"] == port_name)
        pod = next(p for p in self.pods if du.labels_match(svc["spec"]["selector"], p.labels))
        return "%s:%d" % (pod.ip, du.port_number(pod.spec["containers"][0], port["targetPort"]))

    def test_1_ranks_are_ordinals_and_world_size_is_replicas(self):
        sts = du.one(self.objects, "StatefulSet")
        replicas = sts["spec"]["replicas"]
        experts = []
        for pod in self.workers:
            m = re.search(r"moeserve-worker ready (.*)", self.log(pod))
            self.assertIsNotNone(m, "%s printed no ready line:\n%s" % (pod.name, self.log(pod)))
            ready = dict(re.findall(r"(\w+)=(\S+)", m.group(1)))
            ordinal = int(pod.labels["apps.kubernetes.io/pod-index"])
            print("%s: %s" % (pod.name, m.group(0)))
            self.assertEqual(int(ready["rank"]), ordinal, pod.name)
            self.assertEqual(int(ready["world"]), replicas, pod.name)
            self.assertEqual(ready["listen"], "%s:50061" % pod.fqdn(), pod.name)
            self.assertEqual(ready["collective"], "gloo", pod.name)
            begin, end = map(int, ready["experts"].split("-"))
            experts.append((ordinal, begin, end))
        experts.sort()
        config = json.load(open(os.path.join(NODE_PATHS["/var/lib/moeserve/models/austen-moe"], "config.json")))
        n = config.get("num_experts") or config.get("num_local_experts")
        self.assertEqual(experts[0][1], 0)
        self.assertEqual(experts[-1][2], n, "the ranks' expert ranges must cover all %d experts" % n)
        for a, b in zip(experts, experts[1:]):
            self.assertEqual(a[2], b[1], "expert ranges must be contiguous: %r" % experts)

    def test_2_health_serving_and_probes_pass(self):
        for pod in self.pods:
            c = pod.spec["containers"][0]
            for kind in ["startupProbe", "readinessProbe", "livenessProbe"]:
                if kind in c:
                    self.assertTrue(du.run_probe(pod, c, c[kind]), "%s %s fails" % (pod.name, kind))
        # Each main process runs as the manifest's user, chrooted into the
        # image, whose root is read-only where the manifest says so.
        for pod in self.pods:
            c = pod.spec["containers"][0]
            pid = pod.processes[-1][1].pid
            sec = dict(pod.spec.get("securityContext", {}), **c.get("securityContext", {}))
            with open("/proc/%d/status" % pid) as f:
                uid = int(re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1))
            self.assertEqual(uid, 0 if du.ONLY_ROOT_MAPPED else sec["runAsUser"], pod.name)
            self.assertEqual(os.readlink("/proc/%d/root" % pid), self.rootfs, pod.name)
            with open("/proc/%d/mountinfo" % pid) as f:
                root_options = [line.split()[5] for line in f if line.split()[4] == "/"][-1]
            self.assertEqual(root_options.split(",")[0], "ro" if sec.get("readOnlyRootFilesystem") else "rw",
                             pod.name)
        router = self.service_address("moeserve-router", "grpc")
        self.assertEqual(du.grpc_health(router, ""), "SERVING")
        self.assertEqual(du.grpc_health(router, "moeserve.v1.Inference"), "SERVING")
        # A probe naming a service the router does not have fails: the probes
        # above are not passing by accident.
        self.assertEqual(du.grpc_health(router, "moeserve.v1.Nonexistent"), "NOT_FOUND")
        for pod in self.workers:
            self.assertEqual(du.grpc_health("%s:50061" % pod.ip, ""), "SERVING", pod.name)
        # The routers were not told the worker addresses: they followed the
        # headless Service's name.
        for pod in self.routers:
            self.assertRegex(du.flag(self.argv[pod.name], "workers"),
                             r"^moeserve-worker\.moeserve\.svc\.cluster\.local:50061$")

    def test_3_streams_a_completion_through_the_router_service(self):
        target = self.service_address("moeserve-router", "grpc")
        with grpc.insecure_channel(target) as ch:
            stub = inference_pb2_grpc.InferenceStub(ch)
            tokens, text, chunks, finish = [], "", 0, None
            for chunk in stub.Generate(inference_pb2.GenerateRequest(
                    text=PROMPT, max_tokens=24, sampling=inference_pb2.SamplingParams(
                        temperature=0.8, seed=11)), timeout=60):
                chunks += 1
                tokens.extend(chunk.token_ids)
                text += chunk.text
                if chunk.HasField("finish"):
                    finish = chunk.finish
        print("gRPC via %s: %d tokens in %d chunks: %r" % (target, len(tokens), chunks, text))
        self.assertEqual(len(tokens), 24)
        self.assertGreater(chunks, 1, "the answer came in one piece, not streamed")
        self.assertTrue(text.strip(), "no text came back")
        self.assertIsNotNone(finish)
        self.assertEqual(finish.reason, inference_pb2.FINISH_REASON_LENGTH)
        # The OpenAI API on the Service's http port.
        http = self.service_address("moeserve-router", "http")
        body = json.dumps({"model": "model", "prompt": PROMPT, "max_tokens": 8, "seed": 3}).encode()
        req = urllib.request.Request("http://%s/v1/completions" % http, data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            answer = json.loads(r.read())
        print("HTTP via %s: %r" % (http, answer["choices"][0]["text"]))
        self.assertEqual(answer["usage"]["completion_tokens"], 8)
        self.assertTrue(answer["choices"][0]["text"])

    def test_4_dashboard_and_alerts_read_only_exported_metrics(self):
        import yaml
        # One refused request, so that the error counter has a sample.
        with grpc.insecure_channel(self.service_address("moeserve-router", "grpc")) as ch:
            with self.assertRaises(grpc.RpcError) as refused:
                list(inference_pb2_grpc.InferenceStub(ch).Generate(
                    inference_pb2.GenerateRequest(text=PROMPT, max_tokens=8,
                                                  sampling=inference_pb2.SamplingParams(top_p=7.0)),
                    timeout=30))
            self.assertEqual(refused.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        scraped = {}
        for pod in self.pods:
            c = pod.spec["containers"][0]
            port = du.port_number(c, "metrics")
            with urllib.request.urlopen("http://%s:%d/metrics" % (pod.ip, port), timeout=10) as r:
                text = r.read().decode()
            for name, labels in du.scrape_names_and_labels(text).items():
                scraped.setdefault(name, set()).update(labels)
            if pod in self.routers:
                # The router found every rank through the headless Service.
                replicas = str(du.one(self.objects, "StatefulSet")["spec"]["replicas"])
                for gauge in ["moeserve_router_workers", "moeserve_router_workers_connected",
                              "moeserve_router_world_size"]:
                    self.assertRegex(text, r"(?m)^%s %s$" % (gauge, replicas))
        # Labels Prometheus adds to every sample (target and scrape labels).
        target_labels = {"namespace", "pod", "instance", "job", "container", "service", "endpoint"}
        with open(os.path.join(du.K8S, "components", "grafana-dashboard", "moeserve-dashboard.json")) as f:
            queries = du.dashboard_queries(json.load(f))
        with open(os.path.join(du.K8S, "monitoring", "moeserve.rules.yml")) as f:
            rules, recorded = du.rule_exprs(yaml.safe_load(f))
        self.assertGreater(len(queries), 20)
        missing, bad_labels = [], []
        for where, expr in [("dashboard: " + t, e) for t, e in queries] + [("rule: " + n, e) for n, e in rules]:
            for name in du.promql_metric_names(expr):
                if name in recorded:
                    continue
                if name not in scraped:
                    missing.append("%s reads %s" % (where, name))
                    continue
                extra = du.promql_by_labels(expr) - scraped[name] - target_labels
                if extra:
                    bad_labels.append("%s groups %s by %s, which it lacks" % (where, name, sorted(extra)))
        print("%d dashboard queries and %d rules checked against %d scraped series names" % (
            len(queries), len(rules), len(scraped)))
        self.assertEqual(missing, [], "metrics not exported by the live router and workers")
        self.assertEqual(bad_labels, [])

    def test_5_a_lost_rank_comes_back_and_the_group_re_forms(self):
        """kill -9 of a rank's container: the other ranks stay alive (their
        liveness probe passes) but not ready until kubelet has restarted the
        lost container (same pod: name, address, rank) and the group has
        re-formed under a new epoch; then the router serves again."""
        lost, survivors = self.workers[-1], self.workers[:-1]
        epochs_before = {p.name: self.epochs(p) for p in survivors}
        lost.processes[-1][1].kill()
        lost.processes[-1][1].wait(10)
        c = lost.spec["containers"][0]
        for pod in survivors:
            sc = pod.spec["containers"][0]
            noticed = du.wait_until(lambda: not du.run_probe(pod, sc, sc["readinessProbe"]), 60)
            self.assertTrue(noticed, "%s stayed ready without its peer:\n%s" % (pod.name, self.log(pod)))
            self.assertIsNone(pod.processes[-1][1].poll(), "%s exited:\n%s" % (pod.name, self.log(pod)))
            self.assertTrue(du.run_probe(pod, sc, sc["livenessProbe"]),
                            "%s fails its liveness probe while the group re-forms: kubelet would restart it"
                            % pod.name)
        time.sleep(2)  # kubelet's restart back-off starts at 10 s; the test waits less
        for pod in survivors:
            sc = pod.spec["containers"][0]
            self.assertTrue(du.run_probe(pod, sc, sc["livenessProbe"]), pod.name)
        _, argv, _ = du.start_container(lost, c, self.objects, self.rootfs, NODE_PATHS, self.dir)
        self.assertEqual(argv, self.argv[lost.name], "a restart must give the same rank and flags")
        start = time.time()
        try:
            for pod in self.workers + self.routers:
                self.wait_ready(pod)
        except AssertionError:
            self.dump_logs()
            raise
        print("group re-formed and routers ready %.1f s after the restart" % (time.time() - start))
        for pod in survivors:
            self.assertEqual(self.epochs(pod)[:len(epochs_before[pod.name])], epochs_before[pod.name])
            self.assertGreater(len(self.epochs(pod)), len(epochs_before[pod.name]), "no new epoch")
            self.assertEqual(self.epochs(pod)[-1], self.epochs(lost)[-1], "ranks in different epochs")
        with grpc.insecure_channel(self.service_address("moeserve-router", "grpc")) as ch:
            stub = inference_pb2_grpc.InferenceStub(ch)
            tokens = []
            for chunk in stub.Generate(inference_pb2.GenerateRequest(text=PROMPT, max_tokens=8), timeout=60):
                tokens.extend(chunk.token_ids)
        self.assertEqual(len(tokens), 8)

    def epochs(self, pod):
        return re.findall(r"moeserve-worker ready .* epoch=(\d+)", self.log(pod))

    def test_6_sigterm_drains_within_the_grace_period(self):
        # Kubelet: preStop, then SIGTERM, then SIGKILL at
        # terminationGracePeriodSeconds. Routers first (one with a call in
        # flight, which must finish), then the workers.
        router = self.routers[0]
        channel = grpc.insecure_channel(self.service_address("moeserve-router", "grpc"))
        call = inference_pb2_grpc.InferenceStub(channel).Generate(
            inference_pb2.GenerateRequest(text=PROMPT, max_tokens=64), timeout=60)
        first = next(call)
        sigterm_at = {router.name: time.time()}
        router.processes[-1][1].send_signal(signal.SIGTERM)
        tokens, finish = list(first.token_ids), None
        for chunk in call:
            tokens.extend(chunk.token_ids)
            if chunk.HasField("finish"):
                finish = chunk.finish
        channel.close()
        self.assertEqual(len(tokens), 64, "the call in flight did not finish during the drain")
        self.assertEqual(finish.reason, inference_pb2.FINISH_REASON_LENGTH)
        for pod in self.routers + self.workers:
            grace = pod.spec.get("terminationGracePeriodSeconds", 30)
            c = pod.spec["containers"][0]
            pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
            proc = pod.processes[-1][1]
            start = sigterm_at.get(pod.name, time.time())
            if pod.name not in sigterm_at:
                proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(max(0.0, start + grace - pre_stop - time.time()))
            except subprocess.TimeoutExpired:
                self.fail("%s did not stop within terminationGracePeriodSeconds %d - preStop %d:\n%s" % (
                    pod.name, grace, pre_stop, self.log(pod)))
            print("%s stopped in %.1f s (exit %d)" % (pod.name, time.time() - start, code))
            self.assertEqual(code, 0, "%s exited %d after SIGTERM:\n%s" % (pod.name, code, self.log(pod)))


if __name__ == "__main__":
    import junit_xml  # noqa: E402
    sys.exit(junit_xml.main(sys.modules[__name__]))
