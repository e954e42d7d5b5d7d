"""A real control plane on loopback: etcd, kube-apiserver and kube-controller-manager, built by `make kube`.

Shaped after envtest (controller-runtime `pkg/internal/testing/controlplane`): one small type per process, each
with `start` and `stop`; `ControlPlane.start` undoes what it started when a later step fails, and `stop` stops
everything, collecting errors rather than giving up at the first. No kubelet runs: pods stay Pending, which is all
admission needs.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e import pki

KUBE_BIN = Path(os.environ.get("KUBE_BIN", Path(__file__).resolve().parents[2] / ".kube-bin"))
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")

# Metadata for every request, so admission annotations (ours and the apiserver's failed-open one) are recorded,
# denied requests included. RequestReceived is dropped: it never carries annotations.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if not (KUBE_BIN / name).is_file()]


def kubectl(
    kubeconfig: Path, *args: str, stdin: str | None = None, check: bool = False, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Real kubectl on the host with `kubeconfig`; `check` fails with its stderr."""
    binary = shutil.which("kubectl")
    assert binary, "kubectl is not installed"
    result = subprocess.run(
        [binary, f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Process:
    """One child process in its own session, so that stopping it stops whatever it started."""

    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.popen = subprocess.Popen(
                self.argv, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} exited early; end of {self.log}:\n{tail}")

    def stop(self, timeout: float = 15) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def _wait(what: str, ready: object, process: Process, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.check_alive()
        try:
            if ready():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s; see {process.log}")


@dataclass
class Etcd:
    """etcd with a throw-away data dir. Configurable: nothing; ports are picked free at start."""

    directory: Path
    client_port: int = 0
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self) -> None:
        self.client_port, peer = free_port(), free_port()
        peer_url = f"http://127.0.0.1:{peer}"
        argv = [
            str(KUBE_BIN / "etcd"),
            f"--data-dir={self.directory / 'etcd'}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--unsafe-no-fsync=true",  # a test's data dies with the test
            "--log-level=warn",
        ]
        self.process = Process("etcd", argv, self.directory / "etcd.log")
        self.process.start()

        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return bool(json.loads(response.read()).get("health") == "true")

        _wait("etcd", healthy, self.process, 60)

    def stop(self) -> None:
        if self.process:
            self.process.stop()


@dataclass
class APIServer:
    """kube-apiserver with envtest's flags, our own test PKI, RBAC and a Metadata-level audit log.

    `extra_flags` are appended last (pflag: the last occurrence wins), for tests that need a different apiserver.
    """

    directory: Path
    etcd_url: str
    ca: pki.ClusterCA
    extra_flags: list[str] = field(default_factory=list)
    port: int = 0
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def audit_log(self) -> Path:
        return self.directory / "audit.log"

    @property
    def flags(self) -> list[str]:
        d = self.directory
        return [
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.port}",
            # No default route on this machine: name the address, and keep the Endpoints reconciler away from it.
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
            f"--cert-dir={d / 'apiserver-certs'}",
            f"--tls-cert-file={d / 'apiserver.crt'}",
            f"--tls-private-key-file={d / 'apiserver.key'}",
            f"--client-ca-file={d / 'ca.crt'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            f"--service-account-issuer={self.url}",
            f"--service-account-key-file={d / 'sa.key'}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            "--authorization-mode=Node,RBAC",
            # No kubelet, so nothing would ever mount a ServiceAccount token; the plugin only gets in the way.
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            f"--audit-policy-file={d / 'audit-policy.json'}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            *self.extra_flags,
        ]

    def start(self) -> None:
        d = self.directory
        self.port = free_port()
        cert, key = self.ca.serving()
        pki.write(d / "apiserver.crt", cert)
        pki.write(d / "apiserver.key", key, private=True)
        pki.write(d / "ca.crt", self.ca.cert_pem)
        pki.write(d / "sa.key", pki.service_account_key(), private=True)
        (d / "audit-policy.json").write_text(json.dumps(AUDIT_POLICY))
        self.process = Process("kube-apiserver", [str(KUBE_BIN / "kube-apiserver"), *self.flags], d / "apiserver.log")
        self.process.start()
        _wait("kube-apiserver", self._ready, self.process, 120)

    def admin_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.directory / "ca.crt"))
        context.load_cert_chain(self.directory / "admin.crt", self.directory / "admin.key")
        return context

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=5, context=self.admin_context()) as response:
                return bool(response.status == 200)
        except urllib.error.HTTPError:
            return False

    def stop(self) -> None:
        if self.process:
            self.process.stop()


@dataclass
class ControllerManager:
    """kube-controller-manager with every controller: Deployments, ReplicaSets, the garbage collector, ..."""

    directory: Path
    kubeconfig: Path
    process: Process | None = None

    def start(self) -> None:
        d = self.directory
        argv = [
            str(KUBE_BIN / "kube-controller-manager"),
            f"--kubeconfig={self.kubeconfig}",
            "--controllers=*",
            f"--service-account-private-key-file={d / 'sa.key'}",
            f"--root-ca-file={d / 'ca.crt'}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            "--use-service-account-credentials=false",
        ]
        self.process = Process("kube-controller-manager", argv, d / "controller-manager.log")
        self.process.start()
        time.sleep(1)
        self.process.check_alive()

    def stop(self) -> None:
        if self.process:
            self.process.stop()


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager in `directory`, with an admin kubeconfig."""

    directory: Path
    extra_apiserver_flags: list[str] = field(default_factory=list)
    with_controller_manager: bool = True
    etcd: Etcd | None = None
    apiserver: APIServer | None = None
    controller_manager: ControllerManager | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "admin.kubeconfig"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)  # a test run that dies without teardown still leaves no process behind
        ca = pki.ClusterCA()
        cert, key = ca.client("e2e-admin", "system:masters")
        pki.write(self.directory / "admin.crt", cert)
        pki.write(self.directory / "admin.key", key, private=True)
        try:
            self.etcd = Etcd(self.directory)
            self.etcd.start()
            self.apiserver = APIServer(self.directory, self.etcd.url, ca, list(self.extra_apiserver_flags))
            self.apiserver.start()
            self._write_kubeconfig()
            if self.with_controller_manager:
                self.controller_manager = ControllerManager(self.directory, self.kubeconfig)
                self.controller_manager.start()
        except BaseException:
            self.stop()
            raise

    def _write_kubeconfig(self) -> None:
        assert self.apiserver is not None
        d = self.directory
        cluster = {"server": self.apiserver.url, "certificate-authority": str(d / "ca.crt")}
        user = {"client-certificate": str(d / "admin.crt"), "client-key": str(d / "admin.key")}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "e2e", "cluster": cluster}],
            "users": [{"name": "admin", "user": user}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}],
            "current-context": "e2e",
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))
        self.kubeconfig.chmod(0o600)

    def stop(self) -> list[str]:
        """Stop every process, newest first; returns what went wrong instead of stopping at the first error."""
        errors = []
        for part in (self.controller_manager, self.apiserver, self.etcd):
            if part is None:
                continue
            try:
                part.stop()
            except Exception as err:
                errors.append(f"{type(part).__name__}: {err}")
        return errors

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Real kubectl against this control plane."""
        return kubectl(self.kubeconfig, *args, stdin=stdin, check=check, timeout=timeout)
