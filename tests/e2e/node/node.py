"""One real node inside private namespaces: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
containerd with runc, kubelet, kube-proxy and the bridge CNI, all built by `make kube` (the CNI plugins are
Debian's). The facts behind every setting are in ../shared/real-node.md; each is named where it is used.

Shaped as tests/e2e/controlplane.py: one small type per part with `start` and `stop`; `Node.start` undoes what it
started when a later step fails and `Node.stop` collects errors instead of stopping at the first.

Isolation: `unshare --net --mount --pid` holds a network, mount and PID namespace; every component runs under
`nsenter` into it. The node's, pods' and Services' addresses exist only in that network namespace (kube-proxy's
iptables rules too), mounts die with it, and SIGKILL to its first process ends every process in it. The host
reaches the API through a socat forwarder on 127.0.0.1. What the namespaces cannot hold is undone by `stop`: the
kubelet's cgroups (removed bottom-up).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e import controlplane, pki
from tests.e2e.controlplane import AUDIT_POLICY, KUBE_BIN, Process, free_port
from tests.e2e.node.host import missing_tools

NODE_NAME = "e2e-node"
NODE_IP = "10.200.0.2"
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.0.0.0/24"
API_SERVICE_IP = "10.0.0.1"  # the first address of SERVICE_CIDR: the `kubernetes` Service
API_PORT = 6443
ETCD_TLS_PORT = 2379
SANDBOX_IMAGE = "registry.k8s.io/pause:3.10.1"
APISERVER_IMAGE = "registry.k8s.io/kube-apiserver:v1.37.2"
CNI_BIN = Path("/usr/lib/cni")
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "runc",
    "pause",
)
# The kubelet and containerd write here whatever their flags say (real-node.md): a tmpfs on each, inside the mount
# namespace only, so that nothing lands on the host.
TMPFS_DIRS = (
    "/var/lib/kubelet",
    "/var/log/pods",
    "/var/log/containers",
    "/run/containerd",
    "/var/lib/cni",
    "/run/netns",
)
# The kubelet sets these global kernel settings at start, and fails when it cannot (cm/container_manager_linux.go,
# setupKernelTunables; protectKernelDefaults only turns the write into an error). Inside the mount namespace a file
# with the value it wants is bound over each, so the host's kernel keeps its own.
KERNEL_TUNABLES = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}


# The suite's audit policy, plus the request bodies of kube-system pod creates: what the kubelet sends for a mirror
# pod, each retry's own.
NODE_AUDIT_POLICY = {
    **AUDIT_POLICY,
    "rules": [
        {"level": "Request", "verbs": ["create"], "namespaces": ["kube-system"],
         "resources": [{"group": "", "resources": ["pods"]}]},
        *AUDIT_POLICY["rules"],
    ],
}  # fmt: skip


def unavailable() -> str | None:
    """Why this host cannot run the node, or None."""
    if os.geteuid() != 0:
        return "the node needs root (namespaces, mounts, cgroups, iptables)"
    missing = [name for name in BINARIES if not (KUBE_BIN / name).is_file()]
    if missing:
        return f"not built in {KUBE_BIN}: {', '.join(missing)} (`make kube` builds them; needs go)"
    tools = missing_tools(["unshare", "nsenter", "ip", "iptables", "socat", "buildah", f"{CNI_BIN}/bridge"])
    if tools:
        return f"missing on this host: {', '.join(tools)} (Debian packages; `make e2e` installs them as root)"
    if not Path("/sys/fs/cgroup").is_dir():
        return "no cgroup filesystem at /sys/fs/cgroup"
    return None


def _run(argv: list[str], timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


@dataclass
class Namespaces:
    """The holder of the node's network, mount and PID namespaces."""

    directory: Path
    process: Process | None = None
    pid: int = 0  # the namespaces' first process, as the host sees it

    def start(self) -> None:
        argv = ["unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private"]
        self.process = Process("namespaces", [*argv, "sleep", "infinity"], self.directory / "namespaces.log")
        self.process.start()
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        deadline = time.monotonic() + 10
        while not self.pid and time.monotonic() < deadline:
            self.process.check_alive()
            text = children.read_text().split() if children.exists() else []
            # PID 1 inside is `sleep` once unshare has mounted /proc; before that it is still unshare's fork.
            if text and Path(f"/proc/{text[0]}/comm").read_text().strip() == "sleep":
                self.pid = int(text[0])
            time.sleep(0.05)
        if not self.pid:
            raise RuntimeError("unshare did not start its namespaces")
        self._setup()

    def _setup(self) -> None:
        tunables = self.directory / "kernel-tunables"
        tunables.mkdir()
        script = [
            "set -e",
            "ip link set lo up",
            # The node's own address on a bridge of its own (no dummy module here), and a default route:
            # kube-apiserver in this namespace dials Service IPs, which need a route before kube-proxy's OUTPUT
            # rules rewrite them.
            "ip link add node0 type bridge",
            f"ip addr add {NODE_IP}/24 dev node0",
            "ip link set node0 up",
            "ip route add default dev node0",
        ]
        for directory in TMPFS_DIRS:
            script += [f"mkdir -p {directory}", f"mount -t tmpfs -o mode=0755 tmpfs {directory}"]
        for name, value in KERNEL_TUNABLES.items():
            path = tunables / name.replace("/", "_")
            path.write_text(value + "\n")
            script.append(f"mount --bind {path} /proc/sys/{name}")
        _run(self.enter(["sh", "-c", "\n".join(script)]))

    def enter(self, argv: list[str]) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "--net", "--mount", "--pid", "--", *argv]

    def run(self, argv: list[str], timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(self.enter(argv), timeout, check)

    def stop(self) -> list[str]:
        """SIGKILL to the first process ends every process of the PID namespace (containers and shims too); returns
        the processes still in the network namespace after that (none, or the stop is not clean)."""
        if not self.pid:
            return []
        try:
            netns = os.stat(f"/proc/{self.pid}/ns/net").st_ino
        except FileNotFoundError:
            netns = 0
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        if self.process:
            self.process.stop(timeout=5)
        deadline = time.monotonic() + 10
        while netns:
            left = []
            for entry in Path("/proc").iterdir():
                with contextlib.suppress(OSError):
                    if entry.name.isdigit() and os.stat(entry / "ns" / "net").st_ino == netns:
                        left.append(f"{entry.name} ({(entry / 'comm').read_text().strip()})")
            if not left or time.monotonic() > deadline:
                return [f"still in the node's network namespace: {', '.join(left)}"] if left else []
            time.sleep(0.1)
        return []


@dataclass
class CgroupRoot:
    """The kubelet's `cgroupRoot`: its own name, made in every hierarchy the kubelet and runc use, removed
    bottom-up at stop. cgroup v1: each controller's hierarchy (cpuset needs cpus and mems copied from its parent,
    or no task can join it); cgroup v2: one directory."""

    name: str = field(default_factory=lambda: f"apiserver-tls-guard-e2e-{uuid.uuid4().hex[:8]}")
    made: list[Path] = field(default_factory=list)

    @staticmethod
    def hierarchies() -> list[Path]:
        base = Path("/sys/fs/cgroup")
        if (base / "cgroup.controllers").exists():
            return [base]
        seen: dict[Path, Path] = {}
        for entry in sorted(base.iterdir()):
            if entry.is_dir() and (entry / "cgroup.procs").exists():
                seen.setdefault(entry.resolve(), entry)
        return list(seen.values())

    def create(self) -> None:
        for hierarchy in self.hierarchies():
            path = hierarchy / self.name
            path.mkdir()
            self.made.append(path)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (path / name).exists():
                    (path / name).write_text((hierarchy / name).read_text())

    def remove(self, timeout: float = 20) -> list[str]:
        """rmdir every cgroup under the root, deepest first; a cgroup whose tasks are still dying is retried."""
        left: list[str] = []
        deadline = time.monotonic() + timeout
        for root in self.made:
            while root.exists():
                try:
                    for directory in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                        directory.rmdir()
                    root.rmdir()
                except OSError as err:
                    if time.monotonic() > deadline:
                        left.append(f"{root}: {err}")
                        break
                    time.sleep(0.2)
        return left


@dataclass
class NodePKI:
    """The cluster CA and every certificate the node's components present or serve with."""

    directory: Path
    ca: pki.ClusterCA = field(default_factory=pki.ClusterCA)

    def write(self) -> None:
        d = self.directory
        pki.write(d / "ca.crt", self.ca.cert_pem)
        pki.write(d / "sa.key", pki.service_account_key(), private=True)
        cert, key = self.ca.serving(ips=(NODE_IP, API_SERVICE_IP))
        pki.write(d / "apiserver.crt", cert)
        pki.write(d / "apiserver.key", key, private=True)
        cert, key = self.ca.serving(ips=(NODE_IP,))
        pki.write(d / "etcd.crt", cert)
        pki.write(d / "etcd.key", key, private=True)
        clients = {
            "admin": ("e2e-admin", "system:masters"),
            # The Node authorizer and NodeRestriction know a node by this name and group only.
            "kubelet": (f"system:node:{NODE_NAME}", "system:nodes"),
            "kube-proxy": ("system:kube-proxy", None),  # bound to system:node-proxier by RBAC's defaults
            "scheduler": ("system:kube-scheduler", None),
            "controller-manager": ("system:kube-controller-manager", None),
            "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", "system:masters"),
        }
        for name, (user, group) in clients.items():
            cert, key = self.ca.client(user, group)
            pki.write(d / f"{name}.crt", cert)
            pki.write(d / f"{name}.key", key, private=True)

    def kubeconfig(self, name: str, server: str) -> Path:
        d = self.directory
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "node", "cluster": {"server": server, "certificate-authority": str(d / "ca.crt")}}],
            "users": [
                {
                    "name": name,
                    "user": {"client-certificate": str(d / f"{name}.crt"), "client-key": str(d / f"{name}.key")},
                }
            ],
            "contexts": [{"name": "node", "context": {"cluster": "node", "user": name}}],
            "current-context": "node",
        }
        path = d / f"{name}.kubeconfig"
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)
        return path


def _config(path: Path, obj: Mapping[str, object]) -> Path:
    path.write_text(json.dumps(obj, indent=2))
    return path


def containerd_config(d: Path) -> str:
    """containerd 2.x (config version 3). restrict_oom_score_adj: nothing here may lower oom_score_adj (no
    CAP_SYS_RESOURCE) and runc fails every sandbox without it (runc nsexec.c, update_oom_score_adj)."""
    runc = KUBE_BIN / "runc"
    return f"""version = 3
root = "{d / "containerd"}"
state = "/run/containerd/state"

[grpc]
  address = "{CONTAINERD_SOCKET}"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{SANDBOX_IMAGE}"

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{CNI_BIN}"]
    conf_dir = "{d / "cni"}"
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false
"""


CNI_CONFIG: dict[str, object] = {
    "cniVersion": "1.0.0",
    "name": "e2e",
    "plugins": [
        {
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": True,
            "ipMasq": False,  # nothing outside the namespace to reach
            "hairpinMode": True,  # a pod reaching itself through its Service
            "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR}]], "routes": [{"dst": "0.0.0.0/0"}]},
        },
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}


@dataclass
class Node:
    """The node and its control plane in `directory`; `kubeconfig` is the admin's, usable from the host."""

    directory: Path
    images: list[Path] = field(default_factory=list)
    namespaces: Namespaces | None = None
    cgroups: CgroupRoot = field(default_factory=CgroupRoot)
    processes: dict[str, Process] = field(default_factory=dict)
    forward_port: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    ca: pki.ClusterCA | None = None  # the cluster CA, set by `start`: tests issue more certificates with it

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "admin.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.directory / "audit.log"

    @property
    def static_pods(self) -> Path:
        return self.directory / "manifests"

    def log(self, component: str) -> Path:
        return self.directory / f"{component}.log"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        started = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.timings["up"] = time.monotonic() - started

    def _start(self) -> None:
        d = self.directory
        keys = NodePKI(d)
        keys.write()
        self.ca = keys.ca
        inside = f"https://{NODE_IP}:{API_PORT}"
        self.namespaces = Namespaces(d)
        self.namespaces.start()
        self.cgroups.create()
        self._spawn(
            "etcd",
            [
                f"--data-dir={d / 'etcd'}",
                # The node's kube-apiserver on loopback; kube-apiservers in pods and static pods (each on an etcd
                # prefix of its own, tests/e2e/node/apiservers.py) over TLS with client certificates on the node's
                # address, as a compliant --etcd-cafile/--etcd-certfile command line needs. Each URL's scheme makes
                # its listener secure or not (etcd server/embed/etcd.go, configureClientListeners).
                f"--listen-client-urls=http://127.0.0.1:2379,https://{NODE_IP}:{ETCD_TLS_PORT}",
                "--advertise-client-urls=http://127.0.0.1:2379",
                f"--cert-file={d / 'etcd.crt'}",
                f"--key-file={d / 'etcd.key'}",
                f"--trusted-ca-file={d / 'ca.crt'}",
                "--client-cert-auth=true",
                "--listen-peer-urls=http://127.0.0.1:2380",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        (d / "audit-policy.json").write_text(json.dumps(NODE_AUDIT_POLICY))
        self._spawn("kube-apiserver", self.apiserver_flags())
        self._forward()
        keys.kubeconfig("admin", f"https://127.0.0.1:{self.forward_port}").rename(self.kubeconfig)
        self._wait("kube-apiserver /readyz", self._apiserver_ready, "kube-apiserver", 120)
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={keys.kubeconfig('controller-manager', inside)}",
                f"--service-account-private-key-file={d / 'sa.key'}",
                f"--root-ca-file={d / 'ca.crt'}",
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
            ],
        )
        scheduler = keys.kubeconfig("scheduler", inside)
        self._spawn(
            "kube-scheduler",
            [
                f"--kubeconfig={scheduler}",
                f"--authentication-kubeconfig={scheduler}",
                f"--authorization-kubeconfig={scheduler}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
            ],
        )
        (d / "cni").mkdir()
        _config(d / "cni" / "10-e2e.conflist", CNI_CONFIG)
        (d / "containerd.toml").write_text(containerd_config(d))
        self._spawn("containerd", [f"--config={d / 'containerd.toml'}"])
        self._wait("containerd", lambda: self.ctr("version", check=False).returncode == 0, "containerd", 60)
        started = time.monotonic()
        for archive in self.images:
            self.ctr("images", "import", "--platform", "linux/amd64", str(archive), timeout=300)
        self.timings["images"] = time.monotonic() - started
        self.static_pods.mkdir(exist_ok=True)
        for stale in self.static_pods.iterdir():
            stale.unlink()  # pitfall: a manifest left here starts before the webhook exists
        self._spawn(
            "kubelet",
            [
                f"--config={_config(d / 'kubelet.json', self.kubelet_config())}",
                f"--kubeconfig={keys.kubeconfig('kubelet', inside)}",
                "--root-dir=/var/lib/kubelet",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
            ],
        )
        proxy = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(keys.kubeconfig("kube-proxy", inside))},
            "hostnameOverride": NODE_NAME,
            "clusterCIDR": POD_CIDR,
            # 0 everywhere: kube-proxy leaves the global conntrack sysctls alone.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "metricsBindAddress": "127.0.0.1:10249",
            "healthzBindAddress": "127.0.0.1:10256",
        }
        self._spawn("kube-proxy", [f"--config={_config(d / 'kube-proxy.json', proxy)}"])
        self._wait("node Ready", self._node_ready, "kubelet", 120)
        # Pitfall: a pod made before the controller-manager has made its namespace's ServiceAccount is refused.
        for namespace in ("default", "kube-system"):
            self._wait(
                f"ServiceAccount {namespace}/default",
                lambda ns=namespace: self.kubectl("get", "serviceaccount", "default", "-n", ns).returncode == 0,
                "kube-controller-manager",
                60,
            )

    def apiserver_flags(self) -> list[str]:
        d = self.directory
        return [
            "--etcd-servers=http://127.0.0.1:2379",
            "--bind-address=0.0.0.0",
            f"--secure-port={API_PORT}",
            # Pods reach this address (through the `kubernetes` Service); the default lease reconciler publishes it.
            f"--advertise-address={NODE_IP}",
            f"--cert-dir={d / 'apiserver-certs'}",
            f"--tls-cert-file={d / 'apiserver.crt'}",
            f"--tls-private-key-file={d / 'apiserver.key'}",
            f"--client-ca-file={d / 'ca.crt'}",
            f"--kubelet-client-certificate={d / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={d / 'apiserver-kubelet-client.key'}",
            # The node's name resolves nowhere here (no DNS in the namespace): logs and exec go to its address.
            "--kubelet-preferred-address-types=InternalIP",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={d / 'sa.key'}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            "--authorization-mode=Node,RBAC",
            # ServiceAccount admission stays on (a default plugin): the webhook's --cluster-certs needs its token.
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            f"--audit-policy-file={d / 'audit-policy.json'}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
        ]

    def kubelet_config(self) -> dict[str, object]:
        d = self.directory
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # 1.35+ refuses cgroup v1 unless told (pkg/kubelet/cm/validation_linux.go); re-check at every bump.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{self.cgroups.name}",
            "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
            "staticPodPath": str(self.static_pods),
            "fileCheckFrequency": "2s",
            "readOnlyPort": 0,
            "failSwapOn": False,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(d / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            # The host's disks are shared and may be full-ish: evict only when nearly nothing is left.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "2%",
                "nodefs.inodesFree": "2%",
                "imagefs.available": "2%",
                "imagefs.inodesFree": "2%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
        }

    def _spawn(self, name: str, flags: list[str]) -> Process:
        assert self.namespaces is not None
        # containerd finds its shim, and kube-proxy iptables, on PATH.
        path = f"PATH={KUBE_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        process = Process(name, self.namespaces.enter(["env", path, str(KUBE_BIN / name), *flags]), self.log(name))
        process.start()
        self.processes[name] = process
        return process

    def _forward(self) -> None:
        """socat on the host's loopback, each connection forwarded to the API inside the namespaces."""
        assert self.namespaces is not None
        self.forward_port = free_port()
        inner = f"nsenter -t {self.namespaces.pid} --net socat STDIO TCP\\:{NODE_IP}\\:{API_PORT}"
        argv = ["socat", f"TCP-LISTEN:{self.forward_port},bind=127.0.0.1,fork,reuseaddr", f"EXEC:{inner}"]
        process = Process("forwarder", argv, self.log("forwarder"))
        process.start()
        self.processes["forwarder"] = process

    def _wait(self, what: str, ready: object, component: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.processes[component].check_alive()
            try:
                if ready():  # type: ignore[operator]
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{what} not ready after {timeout:.0f} s; see {self.log(component)}")

    def admin_context(self) -> ssl.SSLContext:
        d = self.directory
        context = ssl.create_default_context(cafile=str(d / "ca.crt"))
        context.load_cert_chain(d / "admin.crt", d / "admin.key")
        return context

    def _apiserver_ready(self) -> bool:
        url = f"https://127.0.0.1:{self.forward_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=5, context=self.admin_context()) as response:
                return bool(response.status == 200)
        except (urllib.error.HTTPError, urllib.error.URLError, ssl.SSLError, ConnectionError):
            return False

    def _node_ready(self) -> bool:
        result = self.kubectl("get", "node", NODE_NAME, "-o", "json")
        if result.returncode != 0:
            return False
        conditions = json.loads(result.stdout)["status"].get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def ctr(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.namespaces is not None
        argv = [str(KUBE_BIN / "ctr"), f"--address={CONTAINERD_SOCKET}", "--namespace=k8s.io", *args]
        return self.namespaces.run(argv, timeout, check)

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Real kubectl on the host, through the forwarder."""
        return controlplane.kubectl(self.kubeconfig, *args, stdin=stdin, check=check, timeout=timeout)

    def write_static_pod(self, name: str, manifest: dict[str, object]) -> Path:
        """Pitfall: the kubelet may read a file copied in place half-written; write a dot-file, then rename."""
        temporary = self.static_pods / f".{name}.json"
        temporary.write_text(json.dumps(manifest))
        final = self.static_pods / f"{name}.json"
        temporary.rename(final)
        return final

    def stop(self) -> list[str]:
        """Stop every component, newest first, then the namespaces (and with them every container), then remove
        the cgroups; returns what went wrong."""
        errors: list[str] = []
        for name in reversed(list(self.processes)):
            try:
                self.processes[name].stop(timeout=10)
            except Exception as err:
                errors.append(f"{name}: {err}")
        self.processes.clear()
        if self.namespaces is not None:
            try:
                errors += self.namespaces.stop()
            except Exception as err:
                errors.append(f"namespaces: {err}")
            self.namespaces = None
        errors += self.cgroups.remove()
        self.cgroups.made.clear()
        return errors
