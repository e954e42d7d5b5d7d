"""The static node-local webhook of `apiserver-tls-guard static`, run by the real kubelet from the image built here,
with certificates made by `apiserver-tls-guard certs` on the host (issue 24 item 5).

- Made as root without `--owner`, tls.key is root's and 0600, and the pod (UID 65532, hostPath: the kubelet changes
  no ownership there) cannot read it: the container exits, again and again, and `static` said so.
- Made with the command `static` prints (`certs --owner 65532:65532`), the same pod becomes Ready, serves HTTPS on
  the node's loopback with that certificate, and a kube-apiserver on the node started with the admission
  configuration `static` wrote calls it and shows its denial.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import cli
from tests.e2e.conftest import BAD_FLAGS, apiserver_pod, unique, wait_for
from tests.e2e.controlplane import KUBE_BIN, Process
from tests.e2e.node.image import published
from tests.e2e.node.node import API_PORT, NODE_IP, NODE_NAME, Node

PORT = 18443  # on the node's loopback (host network); no node component listens there
SECOND_API_PORT = API_PORT + 1
WEBHOOK = "node.apiserver-tls-guard.static.k8s.io"


def make_static(work: Path, certs: Path, *owner: str) -> tuple[dict[str, Any], Path, str]:
    """`certs` then `static`, as a user runs them on the node: (the pod, the admission folder, static's stderr)."""
    made = cli("certs", "--out", str(certs), *owner)
    assert made.returncode == 0, made.stderr
    admission = work / "admission"
    written = cli("static", str(admission), "--mode", "enforce", "--certs-dir", str(certs), "--port", str(PORT),
                  "--image", published())  # fmt: skip
    assert written.returncode == 0, written.stderr
    return yaml.safe_load((admission / "apiserver-tls-guard.yaml").read_text()), admission, written.stderr


def mirror(node: Node, name: str) -> dict[str, Any] | None:
    result = node.kubectl("get", "pod", f"{name}-{NODE_NAME}", "-n", "kube-system", "-o", "json")
    return json.loads(result.stdout) if result.returncode == 0 else None


def logs(node: Node, name: str, *args: str) -> str:
    result = node.kubectl("logs", "-n", "kube-system", f"{name}-{NODE_NAME}", *args)
    return result.stdout + result.stderr


def ready(node: Node, name: str) -> dict[str, Any] | None:
    found = mirror(node, name)
    conditions = ((found or {}).get("status") or {}).get("conditions") or []
    return found if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) else None


def remove(node: Node, name: str) -> None:
    (node.static_pods / f"{name}.json").unlink(missing_ok=True)
    wait_for(lambda: mirror(node, name) is None, 60, f"the mirror pod {name} to go")


def test_a_root_owned_key_keeps_the_static_webhook_down(node: Node, tmp_path: Path) -> None:
    """The failing fixture: the files as `certs` wrote them before `--owner`."""
    certs = tmp_path / "certs"
    pod, _, said = make_static(tmp_path, certs)
    assert "warning: UID 65532 cannot read" in said and str(certs / "tls.key") in said
    name = unique("static-webhook-unowned")
    pod["metadata"]["name"] = name
    node.write_static_pod(name, pod)
    try:

        def restarted() -> dict[str, Any] | None:
            found = mirror(node, name)
            statuses = ((found or {}).get("status") or {}).get("containerStatuses") or []
            return statuses[0] if statuses and statuses[0]["restartCount"] >= 1 else None

        status = wait_for(restarted, 120, "the unreadable key to make the container exit")
        assert status["ready"] is False
        text = logs(node, name, "--previous")
        print(f"\ncontainer {status['state']}, log: {text.strip()}")
        assert "UID 65532 cannot read /certs/tls.key" in text, text
    finally:
        remove(node, name)


HTTPS = """
import json, socket, ssl, sys, urllib.request
port, ca, tls_crt, review = sys.argv[1:5]
context = ssl.create_default_context(cafile=ca)  # verified: the CA of `certs`, the name 127.0.0.1
with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as raw:
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        served = tls.getpeercert(binary_form=True)
print(served == ssl.PEM_cert_to_DER_cert(open(tls_crt).read()))
with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=context, timeout=10) as answer:
    print(answer.status)
request = urllib.request.Request(f"https://127.0.0.1:{port}/validate", data=open(review, "rb").read(),
                                 headers={"Content-Type": "application/json"})
with urllib.request.urlopen(request, context=context, timeout=10) as answer:
    print(json.dumps(json.load(answer)["response"]["allowed"]))
"""


def shell_wrapped(name: str, namespace: str = "kube-system") -> dict[str, Any]:
    """A bad kube-apiserver the static policies cannot read (they defer it to the webhook: "needs the webhook")."""
    pod = apiserver_pod(name, [], namespace)
    pod["spec"]["containers"][0]["command"] = ["/bin/sh", "-c", "exec kube-apiserver " + " ".join(BAD_FLAGS)]
    return pod


@pytest.fixture(scope="module")
def owned(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, str]]:
    """The static webhook from files made with the command `static` printed; (certs, admission folder, pod name)."""
    work = tmp_path_factory.mktemp("static-webhook")
    certs = work / "certs"
    _, _, said = make_static(work, certs)
    [command] = [line.split(": ")[-1] for line in said.splitlines() if "warning: UID 65532" in line]
    assert command == f"apiserver-tls-guard certs --out {certs} --owner 65532:65532"
    fixed = cli(*shlex.split(command)[1:])
    assert fixed.returncode == 0, fixed.stderr
    pod, admission, said = make_static(work, certs)
    assert "warning" not in said
    name = str(pod["metadata"]["name"])
    node.write_static_pod(name, pod)
    try:
        yield certs, admission, name
    finally:
        remove(node, name)


def test_with_certs_owner_the_static_webhook_is_ready_and_serves_that_certificate(
    node: Node, owned: tuple[Path, Path, str], tmp_path: Path
) -> None:
    certs, _, name = owned
    started = time.monotonic()
    pod = wait_for(lambda: ready(node, name), 120, "the static webhook pod Ready")
    print(f"\nstatic webhook Ready {time.monotonic() - started:.1f} s after the manifest was written")
    [status] = pod["status"]["containerStatuses"]
    assert status["restartCount"] == 0 and status["image"] == published()
    review = tmp_path / "review.json"
    review.write_text(json.dumps({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "static-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"}, "operation": "CREATE",
                    "namespace": "kube-system", "userInfo": {"username": "e2e"},
                    "object": shell_wrapped(unique("review"))},
    }))  # fmt: skip
    assert node.namespaces is not None
    argv = ["python3", "-c", HTTPS, str(PORT), str(certs / "ca.crt"), str(certs / "tls.crt"), str(review)]
    answer = node.namespaces.run(argv, check=False)
    # The certificate `certs` made, verified with its CA; /healthz; the shell-wrapped apiserver denied.
    assert answer.stdout.split() == ["True", "200", "false"], answer.stdout + answer.stderr
    # The process in the container is UID 65532, as the pod says, reading files that are 65532's.
    container = status["containerID"].removeprefix("containerd://")
    [pid] = [line.split()[0] for line in node.ctr("task", "ps", container).stdout.splitlines()[1:]]
    text = node.namespaces.run(["cat", f"/proc/{pid}/status"]).stdout
    uids = next(line for line in text.splitlines() if line.startswith("Uid:")).split()[1:]
    assert set(uids) == {"65532"}, uids


@pytest.fixture
def second_apiserver(node: Node, owned: tuple[Path, Path, str], tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A second kube-apiserver on the node (same etcd, port 6444) started with the admission configuration `static`
    wrote: the node's own was started without one. No endpoint reconciler: the `kubernetes` Service stays the
    first's."""
    _, admission, _ = owned
    assert node.namespaces is not None
    flags = [f for f in node.apiserver_flags() if not f.startswith(("--secure-port=", "--audit-log-path="))]
    flags += [
        f"--secure-port={SECOND_API_PORT}",
        f"--audit-log-path={tmp_path / 'audit.log'}",
        "--endpoint-reconciler-type=none",
        f"--admission-control-config-file={admission / 'admission-configuration.yaml'}",
    ]
    log = tmp_path / "kube-apiserver-static.log"
    process = Process("kube-apiserver-static", node.namespaces.enter([str(KUBE_BIN / "kube-apiserver"), *flags]), log)
    process.start()
    try:
        yield f"https://{NODE_IP}:{SECOND_API_PORT}", log
    finally:
        process.stop()


CREATE = """
import json, ssl, sys, time, urllib.error, urllib.request
url, directory, body = sys.argv[1:4]
context = ssl.create_default_context(cafile=directory + "/ca.crt")
context.load_cert_chain(directory + "/admin.crt", directory + "/admin.key")
deadline = time.monotonic() + 120
while True:  # until it is ready and has loaded the static webhook
    try:
        urllib.request.urlopen(url + "/readyz", context=context, timeout=5).read()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.5)
request = urllib.request.Request(url + "/api/v1/namespaces/default/pods?dryRun=All", data=body.encode(),
                                 headers={"Content-Type": "application/json"})
try:
    print(urllib.request.urlopen(request, context=context, timeout=30).status)
except urllib.error.HTTPError as err:
    print(err.code, json.load(err)["message"])
"""


def test_kube_apiserver_on_the_node_calls_the_static_webhook(
    node: Node, owned: tuple[Path, Path, str], second_apiserver: tuple[str, Path]
) -> None:
    _, _, name = owned
    url, log = second_apiserver
    assert node.namespaces is not None
    wait_for(lambda: ready(node, name), 120, "the static webhook pod Ready")
    body = json.dumps(shell_wrapped(unique("through-apiserver"), "default"))
    result = node.namespaces.run(["python3", "-c", CREATE, url, str(node.directory), body], timeout=180, check=False)
    assert result.returncode == 0, result.stdout + result.stderr + log.read_text(errors="replace")[-3000:]
    print(f"\nkube-apiserver with the static configuration: {result.stdout.strip()}")
    assert result.stdout.startswith("400 ") or result.stdout.startswith("403 "), result.stdout
    assert f'admission webhook "{WEBHOOK}" denied the request' in result.stdout
    decisions = [line for line in logs(node, name).splitlines() if '"decision"' in line]
    assert any('"denied"' in line for line in decisions), decisions
