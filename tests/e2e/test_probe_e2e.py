"""`probe` against real kube-apiservers, one per group of settings, and every verdict checked against the flags.

Four servers, started once for the module, share one etcd (each under its own --etcd-prefix) and cover:
- bare: no --tls-cert-file (kube-apiserver generates its self-signed pair), no client CA, --anonymous-auth and
  --authorization-mode left at their defaults (AlwaysAllow, which turns anonymous off), default suites and versions;
- hardened: a real CA's certificate, --client-ca-file and --requestheader-client-ca-file, --anonymous-auth=false,
  a strong --tls-cipher-suites, --tls-min-version=VersionTLS12;
- loose: --requestheader-client-ca-file alone, anonymous restricted to the health paths by an
  AuthenticationConfiguration (KEP-4633), weak-but-valid suites, --tls-min-version=VersionTLS10, and a
  certificate that expires in five days;
- the suite's own control plane (tests/e2e/conftest.py): a real CA, --client-ca-file, RBAC with anonymous on,
  and for one probe a binding that lets system:anonymous list namespaces.
Every server also takes a static admin token, so readiness and the kubeconfig's reads never depend on the TLS
settings under test (--token-auth-file is itself a control the network cannot show). Then a TLS-terminating
proxy in front of the hardened one shows what a managed front end reports: its own posture.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import selectors
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, cli
from tests.e2e.conftest import require_built
from tests.e2e.controlplane import KUBE_BIN, APIServer, ControlPlane, Etcd, _wait
from tests.probe import certs

TOKEN = "probe-e2e-admin-token"
SERVICE_IP = "10.0.0.1"  # first address of the fixture's --service-cluster-ip-range=10.0.0.0/24
STRONG = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
WEAK_BUT_VALID = (
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,TLS_RSA_WITH_AES_128_GCM_SHA256"
)
RESTRICTED_ANONYMOUS = {
    "apiVersion": "apiserver.config.k8s.io/v1",
    "kind": "AuthenticationConfiguration",
    "anonymous": {"enabled": True, "conditions": [{"path": "/livez"}, {"path": "/readyz"}, {"path": "/healthz"}]},
}


class ProbedAPIServer(APIServer):
    """The fixture's kube-apiserver, made ready by a static token instead of the admin client certificate (the
    TLS and client-CA flags under test may take that away)."""

    def _ready(self) -> bool:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        request = urllib.request.Request(f"{self.url}/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as response:
                return bool(response.status == 200)
        except urllib.error.HTTPError:
            return False


@dataclass
class Server:
    name: str
    apiserver: APIServer
    kubeconfig: Path

    @property
    def url(self) -> str:
        return self.apiserver.url


def _kubeconfig(path: Path, url: str, ca: Path | None, user: dict[str, str]) -> Path:
    cluster: dict[str, Any] = {"server": url}
    if ca is None:
        cluster["insecure-skip-tls-verify"] = True  # only the kubernetes client's reads; the probe never trusts
    else:
        cluster["certificate-authority"] = str(ca)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    for name in ("etcd", "kube-apiserver"):
        require_built(KUBE_BIN / name)
    store = Etcd(tmp_path_factory.mktemp("probe-etcd"))
    store.start()
    yield store
    store.stop()


@pytest.fixture(scope="module")
def servers(
    etcd: Etcd, tmp_path_factory: pytest.TempPathFactory, control_plane: ControlPlane
) -> Iterator[dict[str, Server]]:
    from tests.e2e import pki as e2e_pki

    base = tmp_path_factory.mktemp("probe-servers")
    cluster_ca = certs.ca("probe-cluster-ca", key=certs.rsa_key())
    front_proxy = certs.ca("front-proxy-ca")
    ca_file = base / "cluster-ca.crt"
    ca_file.write_bytes(cluster_ca.pem)
    front_file = base / "front-proxy-ca.crt"
    front_file.write_bytes(front_proxy.pem)
    names = ("127.0.0.1", SERVICE_IP, "kubernetes.default.svc", "kubernetes", "localhost")
    token_user = {"token": TOKEN}

    def serving(name: str, days: int) -> list[str]:
        pair = certs.leaf(cluster_ca, *names, key=certs.rsa_key(), not_after=certs.NOW + dt.timedelta(days=days))
        cert, key = certs.write_pair(base, name, pair)
        return [f"--tls-cert-file={cert}", f"--tls-private-key-file={key}"]

    (base / "tokens.csv").write_text(f'{TOKEN},probe-admin,probe-admin,"system:masters"\n')
    (base / "authn.yaml").write_text(yaml.safe_dump(RESTRICTED_ANONYMOUS))
    common = [f"--token-auth-file={base / 'tokens.csv'}"]
    flags = {
        "bare": [
            "--tls-cert-file=",
            "--tls-private-key-file=",
            "--client-ca-file=",
            "--authorization-mode=AlwaysAllow",
        ],
        "hardened": [
            *serving("hardened", 365),
            f"--client-ca-file={ca_file}",
            f"--requestheader-client-ca-file={front_file}",
            "--requestheader-allowed-names=front-proxy-client",
            "--anonymous-auth=false",
            f"--tls-cipher-suites={STRONG}",
            "--tls-min-version=VersionTLS12",
            "--bind-address=0.0.0.0",  # reachable on the host's address too, as an EndpointSlice lists it
        ],
        "loose": [
            *serving("loose", 5),
            "--client-ca-file=",
            f"--requestheader-client-ca-file={front_file}",
            f"--authentication-config={base / 'authn.yaml'}",
            f"--tls-cipher-suites={WEAK_BUT_VALID}",
            "--tls-min-version=VersionTLS10",
            "--bind-address=0.0.0.0",
        ],
    }
    made: dict[str, Server] = {}
    ca = e2e_pki.ClusterCA()
    try:
        for name, extra in flags.items():
            directory = base / name
            directory.mkdir()
            apiserver = ProbedAPIServer(directory, etcd.url, ca, [*common, f"--etcd-prefix=/probe-{name}", *extra])
            made[name] = Server(name, apiserver, Path())
        threads = [threading.Thread(target=s.apiserver.start) for s in made.values()]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for server in made.values():
            server.apiserver.process.check_alive()  # type: ignore[union-attr]
            _wait(server.name, server.apiserver._ready, server.apiserver.process, 5)  # type: ignore[arg-type]
        print(f"probe e2e: {len(made)} kube-apiservers ready in {time.monotonic() - start:.1f} s")
        for name, server in made.items():
            server.kubeconfig = _kubeconfig(
                base / f"{name}.kubeconfig", server.url, None if name == "bare" else ca_file, token_user
            )
        assert control_plane.apiserver is not None
        made["suite"] = Server("suite", control_plane.apiserver, control_plane.kubeconfig)
        yield made
    finally:
        for server in made.values():
            if server.name != "suite":
                server.apiserver.stop()


def probe(*args: str) -> tuple[int, dict[str, Any], str]:
    result = cli("probe", "--format", "json", *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr


def states(data: dict[str, Any], index: int = 0) -> dict[str, tuple[str, str]]:
    return {c["control"]: (c["state"], c["detail"]) for c in data["endpoints"][index]["controls"]}


def test_bare_apiserver(servers: dict[str, Server]) -> None:
    code, data, _ = probe("--kubeconfig", str(servers["bare"].kubeconfig))
    assert code == 1
    got = states(data)
    # --tls-cert-file unset: kube-apiserver's generated pair, CN "127.0.0.1@<unix>" (the advertise address).
    assert got["tls-cert-and-key"][0] == "fail"
    assert "kube-apiserver's own self-signed pair (CN=127.0.0.1@" in got["tls-cert-and-key"][1]
    assert got["client-ca-file"][0] == "fail" and "no CertificateRequest" in got["client-ca-file"][1]
    # --anonymous-auth defaults to true, but kube-apiserver turns it off under AlwaysAllow, the default
    # authorizer (pkg/kubeapiserver/options/authentication.go ApplyAuthorization): 401 everywhere, so the
    # authorization mode stops being visible at all.
    assert got["anonymous-auth-disabled"][0] == "pass"
    assert got["authz-not-always-allow"][0] == "not observable"
    # Go's default TLS 1.2 suites on an RSA key: the two ECDHE-RSA CBC-SHA suites are outside the v1.5.1 list.
    assert got["tls-cipher-suites-strong"][0] == "fail"
    assert "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA" in got["tls-cipher-suites-strong"][1]
    assert "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA" in got["tls-cipher-suites-strong"][1]
    # The generated certificate names the Service IP and kubernetes.default.svc, is RSA-2048, lives a year.
    assert got["served-cert-names"][0] == "pass", got["served-cert-names"]
    assert got["serving-key-strength"] == ("pass", "a 2048-bit RSA key")
    assert got["served-cert-not-expiring"][0] == "pass"
    observed = data["endpoints"][0]["observed"]
    assert observed["olderVersionsAccepted"] == {"TLS 1.0": False, "TLS 1.1": False}


def test_hardened_apiserver_is_clean(servers: dict[str, Server]) -> None:
    start = time.monotonic()
    code, data, stderr = probe("--kubeconfig", str(servers["hardened"].kubeconfig))
    elapsed = time.monotonic() - start
    assert code == 0, (data["findings"], stderr)
    got = states(data)
    assert got["tls-cert-and-key"][0] == "pass"
    # --client-ca-file first, then --requestheader-client-ca-file (dynamiccertificates union, in that order).
    assert got["client-ca-file"] == (
        "pass",
        "client CAs named: CN=probe-cluster-ca; CN=front-proxy-ca (the cluster CA among them)",
    )
    assert got["anonymous-auth-disabled"][0] == "pass"
    assert got["authz-not-always-allow"][0] == "not observable"
    assert got["tls-cipher-suites-strong"][0] == "pass"
    assert (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
        in (got["tls-cipher-suites-strong"][1])
        or "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        in got["tls-cipher-suites-strong"][1]
    )
    assert got["served-cert-names"][0] == "pass"  # the Service IP read through the API: 10.0.0.1
    assert data["endpoints"][0]["observed"]["seconds"] < 2
    print(f"probe e2e: hardened apiserver, whole command {elapsed:.2f} s")


def test_loose_apiserver(servers: dict[str, Server]) -> None:
    code, data, _ = probe("--kubeconfig", str(servers["loose"].kubeconfig))
    assert code == 1
    got = states(data)
    assert got["tls-cert-and-key"][0] == "pass"
    assert got["client-ca-file"][0] == "fail"
    assert "names only the front-proxy CA (CN=front-proxy-ca)" in got["client-ca-file"][1]
    assert got["anonymous-auth-disabled"][0] == "fail"
    assert "restricted anonymous (KEP-4633" in got["anonymous-auth-disabled"][1]
    assert "/livez" in got["anonymous-auth-disabled"][1] and "/api 401" in got["anonymous-auth-disabled"][1]
    assert got["authz-not-always-allow"][0] == "not observable"
    suites = got["tls-cipher-suites-strong"]
    assert suites[0] == "fail"
    assert "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA" in suites[1] and "TLS_RSA_WITH_AES_128_GCM_SHA256" in suites[1]
    assert "TLS 1.0 and TLS 1.1 accepted (below TLS 1.2)" in suites[1]
    assert got["served-cert-not-expiring"][0] == "fail" and "in 4 days" in got["served-cert-not-expiring"][1]
    accepted = data["endpoints"][0]["observed"]["tls12SuitesAccepted"]
    assert sorted(accepted) == sorted(WEAK_BUT_VALID.split(","))


def test_the_suites_own_apiserver(servers: dict[str, Server]) -> None:
    code, data, _ = probe("--kubeconfig", str(servers["suite"].kubeconfig))
    assert code == 1
    got = states(data)
    assert got["tls-cert-and-key"][0] == "pass"
    # The admin user's certificate is signed by the CA the server names.
    assert got["client-ca-file"] == (
        "pass",
        "client CAs named: CN=e2e-cluster-ca (the kubeconfig user's CA among them)",
    )
    assert got["anonymous-auth-disabled"][0] == "fail"
    assert 'User \\"system:anonymous\\" cannot get path' in json.dumps(got["anonymous-auth-disabled"][1])
    assert got["authz-not-always-allow"][0] == "pass"
    # tests/e2e/pki.py's serving certificate names kubernetes.default.svc but not the Service IP.
    assert got["served-cert-names"][0] == "fail" and f"IP:{SERVICE_IP}" in got["served-cert-names"][1]
    assert got["serving-key-strength"] == ("pass", "a 256-bit EC secp256r1 key")


def test_anonymous_allowed_to_list_fails_authz(servers: dict[str, Server], control_plane: ControlPlane) -> None:
    name = "probe-e2e-anonymous-lists-namespaces"
    control_plane.kubectl("create", "clusterrole", name, "--verb=list", "--resource=namespaces", check=True)
    try:
        control_plane.kubectl(
            "create", "clusterrolebinding", name, f"--clusterrole={name}", "--user=system:anonymous", check=True
        )
        deadline = time.monotonic() + 10  # RBAC's informer takes a moment to see the binding
        while True:
            code, data, _ = probe("--kubeconfig", str(servers["suite"].kubeconfig))
            got = states(data)
            if got["authz-not-always-allow"][0] == "fail" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        control_plane.kubectl("delete", "clusterrolebinding,clusterrole", name, "--ignore-not-found")
    assert code == 1
    assert got["authz-not-always-allow"][0] == "fail"
    assert "lists namespaces (/api/v1/namespaces 200)" in got["authz-not-always-allow"][1]


def test_text_output_and_timing(servers: dict[str, Server], capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("bare", "hardened"):
        start = time.monotonic()
        result = cli("probe", "--kubeconfig", str(servers[name].kubeconfig))
        with capsys.disabled():
            print(f"\n--- probe, {name} kube-apiserver ({time.monotonic() - start:.2f} s, exit {result.returncode}):")
            print(result.stdout)
        assert result.returncode == (1 if name == "bare" else 0)


# --- a TLS-terminating proxy: what a managed front end shows -------------------------------------------


def _relay(a: ssl.SSLSocket, b: ssl.SSLSocket) -> None:
    """Copies bytes both ways until either side closes, in the calling thread alone."""
    peer = {a: b, b: a}
    with selectors.DefaultSelector() as selector:
        for side in peer:
            side.setblocking(False)
            selector.register(side, selectors.EVENT_READ)
        while events := selector.select(timeout=30):
            for key, _ in events:
                src: ssl.SSLSocket = key.fileobj  # type: ignore[assignment]
                while True:  # drain what TLS has already decrypted too: select sees only the socket
                    try:
                        data = src.recv(65536)
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        break
                    if not data:
                        return
                    dst = peer[src]
                    dst.settimeout(10)
                    dst.sendall(data)
                    dst.setblocking(False)


@contextlib.contextmanager
def terminating_proxy(upstream: str, cert: Path, key: Path) -> Iterator[int]:
    """Accepts TLS with its own certificate (no client CA, Python's default suites) and relays the bytes to
    `upstream` over a second TLS connection, as a cloud load balancer in front of an API server does.

    One thread per connection does both handshakes and both directions, and closes both sockets at the end: a
    TLS object is never used by two threads, and no socket is closed under another thread's `recv`. The first
    version pumped each direction in its own thread and closed a socket from the other one; OpenSSL keeps the
    raw fd number, so a pump still reading went on to read, or write, a *new* connection's bytes once the
    number was reused. That showed as BAD_RECORD_TYPE, bad record MAC and "Bad file descriptor" in the relay,
    and to the probe as an unauthenticated GET left unanswered (5 of 40 probes through it, and 1 of 3 full CI
    runs failing `anonymous-auth-disabled` on it).
    """
    host, port = upstream.removeprefix("https://").rsplit(":", 1)
    front = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    front.load_cert_chain(cert, key)
    back = ssl.create_default_context()
    back.check_hostname = False
    back.verify_mode = ssl.CERT_NONE
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)

    def handle(raw: socket.socket) -> None:
        with contextlib.ExitStack() as stack:
            stack.callback(raw.close)
            try:
                raw.settimeout(10)
                # A blocking handshake sends the alert when it refuses a suite or version, as a front end does.
                client = stack.enter_context(front.wrap_socket(raw, server_side=True))
                server = stack.enter_context(back.wrap_socket(socket.create_connection((host, int(port)), 10)))
                _relay(client, server)
            except OSError:
                return

    def loop() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(raw,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()


def test_a_tls_terminating_proxy_reports_its_own_posture(servers: dict[str, Server], tmp_path: Path) -> None:
    front_ca = certs.ca("cloud-front-end-ca")
    cert, key = certs.write_pair(tmp_path, "front", certs.leaf(front_ca, "127.0.0.1", "kubernetes.default.svc"))
    ca = tmp_path / "front-ca.crt"
    ca.write_bytes(front_ca.pem)
    with terminating_proxy(servers["hardened"].url, cert, key) as port:
        code, data, _ = probe(f"https://127.0.0.1:{port}", "--ca", str(ca), "--service-ip", SERVICE_IP)
        text = cli("probe", f"https://127.0.0.1:{port}", "--ca", str(ca), "--service-ip", SERVICE_IP).stdout
    print("\n--- probe, TLS-terminating proxy in front of the hardened kube-apiserver:\n" + text)
    assert code == 1, data
    got = states(data)
    # Every unauthenticated GET's status, message and attempts, so a failure says which answer decided it.
    asked = data["endpoints"][0]["observed"]["anonymous"]
    # The front end's certificate and TLS settings, not kube-apiserver's: "endpoint posture".
    assert got["tls-cert-and-key"][0] == "pass" and "CN=cloud-front-end-ca" in got["tls-cert-and-key"][1]
    assert got["client-ca-file"][0] == "fail"  # the proxy asks for no certificate, whatever kube-apiserver does
    # What passes through is kube-apiserver's own answer: anonymous is still refused.
    assert got["anonymous-auth-disabled"][0] == "pass", (got["anonymous-auth-disabled"], asked)
    assert {path: answer["status"] for path, answer in asked.items()} == dict.fromkeys(
        ("/version", "/livez", "/api", "/api/v1/namespaces"), 401
    ), asked
    assert data["endpoints"][0]["observed"]["certificate"]["issuer"] == "CN=cloud-front-end-ca"


# --- every backend of the kubernetes Service: --all-endpoints and serve --probe-interval ------------------


def _host_address() -> str:
    """This machine's own non-loopback address: EndpointSlice validation refuses loopback ones."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        address: str = sock.getsockname()[0]
    if address.startswith("127."):
        pytest.skip("no non-loopback address on this machine for an EndpointSlice")
    return address


@pytest.fixture(scope="module")
def two_backends(servers: dict[str, Server]) -> Iterator[tuple[Server, list[str]]]:
    """EndpointSlices of default/kubernetes, in the hardened server's API, listing the hardened and the loose
    server as two backends of one Service (a Service rotates between them; the probe must see each)."""
    host = _host_address()
    api = servers["hardened"]
    urls = []
    for name in ("hardened", "loose"):
        port = servers[name].apiserver.port
        urls.append(f"https://{host}:{port}")
        body = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"kubernetes-probe-{name}",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": "kubernetes"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [host], "conditions": {"ready": True}}],
        }
        result = cli_kubectl(api.kubeconfig, "apply", "-f", "-", stdin=json.dumps(body))
        assert result.returncode == 0, result.stderr
    yield api, urls


def cli_kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> Any:
    import shutil
    import subprocess

    kubectl = shutil.which("kubectl")
    assert kubectl
    return subprocess.run(
        [kubectl, f"--kubeconfig={kubeconfig}", *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def test_all_endpoints_judges_each_backend_of_the_service(two_backends: tuple[Server, list[str]]) -> None:
    api, urls = two_backends
    code, data, stderr = probe("--kubeconfig", str(api.kubeconfig), "--all-endpoints")
    assert code == 1, stderr
    assert sorted(e["url"] for e in data["endpoints"]) == sorted(urls)
    by_url = {e["url"]: {c["control"]: c["state"] for c in e["controls"]} for e in data["endpoints"]}
    hardened, loose = urls
    assert by_url[hardened]["tls-cipher-suites-strong"] == "pass"
    assert by_url[loose]["tls-cipher-suites-strong"] == "fail"
    assert by_url[loose]["served-cert-not-expiring"] == "fail"


def _metrics(port: int, ca: Path) -> str:
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", context=context, timeout=5) as response:
        text: str = response.read().decode()
    return text


def test_serve_probe_interval_exports_each_backend(two_backends: tuple[Server, list[str]], tmp_path: Path) -> None:
    from tests.conftest import start_server, stop_server

    api, urls = two_backends
    certs_dir = tmp_path / "certs"
    assert cli("certs", "--out", str(certs_dir)).returncode == 0
    crd = KUBE_BIN / "crds" / "wgpolicyk8s.io_clusterpolicyreports.yaml"
    require_built(crd)
    applied = cli_kubectl(api.kubeconfig, "apply", "--server-side", "-f", str(crd))
    assert applied.returncode == 0, applied.stderr
    cli_kubectl(api.kubeconfig, "wait", "--for=condition=Established", "crd/clusterpolicyreports.wgpolicyk8s.io")
    server = start_server(
        certs_dir,
        tmp_path,
        "--probe-interval",
        "2",
        "--kubeconfig",
        str(api.kubeconfig),
        "--policy-reports",
        "wgpolicyk8s.io/v1alpha2",
    )
    try:
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline:
            text = _metrics(server.port, certs_dir / "ca.crt")
            if all(f'probe_last_success_timestamp_seconds{{target_endpoint="{u}"}}' in text for u in urls):
                break
            time.sleep(0.5)
        # The round writes its report after its last endpoint: wait for it while the server still runs.
        while time.monotonic() < deadline:
            got = cli_kubectl(api.kubeconfig, "get", "clusterpolicyreport", "apiserver-tls-guard-probe", "-o", "json")
            if got.returncode == 0:
                break
            time.sleep(0.5)
    finally:
        stop_server(server)
    hardened, loose = urls
    lines = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tlsguard_probe")
    }
    with_print = [line for line in text.splitlines() if line.startswith("tlsguard_probe") and hardened in line]
    print("\nprobe e2e: metric lines for one endpoint:\n" + "\n".join(with_print))

    def finding(url: str, control: str) -> float:
        return lines[f'tlsguard_probe_findings{{control="{control}",target_endpoint="{url}"}}']

    assert finding(hardened, "tls-cipher-suites-strong") == 0
    assert finding(loose, "tls-cipher-suites-strong") == 1
    assert finding(loose, "client-ca-file") == 1 and finding(hardened, "client-ca-file") == 0
    assert finding(loose, "served-cert-not-expiring") == 1
    expiry = lines[f'tlsguard_probe_certificate_expiry_timestamp_seconds{{target_endpoint="{loose}"}}']
    assert 4 * 86400 < expiry - time.time() < 5 * 86400
    assert lines['tlsguard_probe_runs_total{result="ok"}'] >= 2
    # The same verdicts in the cluster-scoped Policy Report, written through the real API.
    assert got.returncode == 0, got.stderr
    report = json.loads(got.stdout)
    verdicts = {(r["properties"]["endpoint"], r["policy"]): r["result"] for r in report["results"] if "properties" in r}
    assert verdicts[(hardened, "tls-cipher-suites-strong")] == "pass"
    assert verdicts[(loose, "tls-cipher-suites-strong")] == "warn"  # manual in the benchmark
    assert verdicts[(loose, "client-ca-file")] == "fail"
    assert verdicts[(hardened, "authz-not-always-allow")] == "skip"  # anonymous refused: not observable
    assert verdicts[(loose, "served-cert-not-expiring")] == "fail"


# --- the continuous probe's RBAC: the chart's and manifests/components/probe's, on the real control plane ------

PROBE_RBAC = ROOT / "manifests/components/probe/rbac.yaml"
PROBE_ACCOUNT = "system:serviceaccount:apiserver-tls-guard:apiserver-tls-guard"


def test_the_chart_grants_the_probe_what_the_component_grants(control_plane: ControlPlane, tmp_path: Path) -> None:
    from tests.e2e.test_chart_e2e import HELM, assert_same, kustomize, objects, template, with_components

    require_built(HELM)
    rendered = template("probe.enabled=true")
    assert_same(kustomize(control_plane, with_components(tmp_path, "warn", "probe")), rendered)
    probe_role = objects(rendered)[("Role", "apiserver-tls-guard-probe")]
    assert probe_role["metadata"]["namespace"] == "default"
    assert probe_role["rules"] == [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]}
    ]
    # Off (the default): no probe, no grant, no --probe-interval.
    plain = objects(template())
    assert not [key for key in plain if "probe" in key[1]]
    assert "--probe-interval" not in json.dumps(plain[("Deployment", "apiserver-tls-guard")])
    # Policy Reports off: the probe runs, and may not write the cluster report.
    quiet = objects(template("probe.enabled=true", "audit.policyReports=off"))
    assert ("ClusterRole", "apiserver-tls-guard-probe-report") not in quiet
    assert ("Role", "apiserver-tls-guard-probe") in quiet


def _can_i(control_plane: ControlPlane, *what: str) -> bool:
    result = control_plane.kubectl("auth", "can-i", *what, f"--as={PROBE_ACCOUNT}")
    assert result.stdout.strip() in ("yes", "no"), (what, result.stdout, result.stderr)
    return result.stdout.strip() == "yes"


def test_the_probe_account_lists_the_endpointslices_and_nothing_more(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    from tests.e2e.conftest import service_account_kubeconfig
    from webhook.probe import targets

    crd = KUBE_BIN / "crds" / "wgpolicyk8s.io_clusterpolicyreports.yaml"
    require_built(crd)
    control_plane.kubectl("apply", "--server-side", "-f", str(crd), check=True)
    control_plane.kubectl("wait", "--for=condition=Established", "crd/clusterpolicyreports.wgpolicyk8s.io", check=True)
    slices = ("list", "endpointslices.discovery.k8s.io", "-n", "default")
    assert not _can_i(control_plane, *slices)  # the check can say no: nothing granted yet
    control_plane.kubectl("create", "namespace", "apiserver-tls-guard")  # may exist already
    control_plane.kubectl("create", "serviceaccount", "apiserver-tls-guard", "-n", "apiserver-tls-guard")
    control_plane.kubectl("apply", "-f", str(PROBE_RBAC), check=True)
    try:
        deadline = time.monotonic() + 10  # RBAC's informer takes a moment to see the binding
        while not _can_i(control_plane, *slices) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert _can_i(control_plane, *slices)
        report = "clusterpolicyreports.wgpolicyk8s.io/apiserver-tls-guard-probe"
        assert _can_i(control_plane, "get", report) and _can_i(control_plane, "update", report)
        assert _can_i(control_plane, "create", "clusterpolicyreports.wgpolicyk8s.io")
        refused = [
            ("get", "endpointslices.discovery.k8s.io", "-n", "default"),
            ("watch", "endpointslices.discovery.k8s.io", "-n", "default"),
            ("list", "endpointslices.discovery.k8s.io", "-n", "kube-system"),
            ("list", "endpointslices.discovery.k8s.io", "--all-namespaces"),
            ("get", "services/kubernetes", "-n", "default"),
            ("list", "endpoints", "-n", "default"),
            ("list", "secrets", "-n", "default"),
            ("delete", report),
            ("get", "clusterpolicyreports.wgpolicyk8s.io/someone-elses"),
        ]
        assert [w for w in refused if _can_i(control_plane, *w)] == []
        # And the probe's own read works with the account's token (the Service IP from the pod's environment).
        kubeconfig = service_account_kubeconfig(
            control_plane, tmp_path / "probe.kubeconfig", "apiserver-tls-guard", "apiserver-tls-guard"
        )
        view = targets.cluster_view(targets.load(str(kubeconfig), None), None, True, service_ip=SERVICE_IP)
        assert "could not list" not in view.endpoints_unknown, view.endpoints_unknown
    finally:
        control_plane.kubectl("delete", "-f", str(PROBE_RBAC), "--ignore-not-found")
