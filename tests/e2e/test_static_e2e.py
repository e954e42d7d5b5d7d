"""The static guardrail on a real kube-apiserver v1.37 started with the files `apiserver-tls-guard static` writes:
the guard is in force on the very first request after start (policies and the node-local webhook both), the
static objects cannot be seen, deleted or replaced through the API, and a change in the folder is picked up."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningServer, cli, start_server, stop_server
from tests.e2e.conftest import BAD_FLAGS, apiserver_pod, unique, wait_for
from tests.e2e.controlplane import ControlPlane, missing_binaries

POLICY = "apiserver-tls-guard-enforce.static.k8s.io"


@pytest.fixture(scope="module")
def node(
    certs_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ControlPlane, RunningServer, Path]]:
    if missing_binaries():
        pytest.skip("the real control plane is not built (see tests/e2e/conftest.py)")
    work = tmp_path_factory.mktemp("static")
    server = start_server(certs_dir, work, "--mode", "enforce")
    static = work / "admission"
    written = cli("static", str(static), "--mode", "enforce", "--certs-dir", str(certs_dir), "--port", str(server.port))
    assert written.returncode == 0, written.stderr
    flag = written.stdout.strip().split(": ", 1)[1]
    plane = ControlPlane(work / "control-plane", extra_apiserver_flags=[flag], with_controller_manager=False)
    plane.start()
    yield plane, server, static
    plane.stop()
    stop_server(server)


def test_the_guard_denies_the_very_first_request_after_start(node: tuple[ControlPlane, RunningServer, Path]) -> None:
    """The first request the new apiserver serves: a shell-wrapped bad apiserver, which the policies cannot read
    (they warn "needs the webhook") and the node-local static webhook denies. Then a plain one, which the
    policies deny themselves (they run before webhooks, so the webhook never sees it)."""
    plane, server, _ = node
    wrapped = apiserver_pod(unique("first"), [])
    wrapped["spec"]["containers"][0]["command"] = ["/bin/sh", "-c", "exec kube-apiserver " + " ".join(BAD_FLAGS)]
    result = plane.kubectl("create", "-f", "-", stdin=json.dumps(wrapped))
    assert result.returncode == 1
    assert 'admission webhook "node.apiserver-tls-guard.static.k8s.io" denied the request' in result.stderr
    assert "[needs-webhook]" in result.stderr
    name = wrapped["metadata"]["name"]
    assert any(json.loads(line).get("objectName") == name for line in server.log_text().splitlines() if line[:1] == "{")

    plain = plane.kubectl("create", "-f", "-", stdin=json.dumps(apiserver_pod(unique("plain"), BAD_FLAGS)))
    assert plain.returncode == 1
    assert f"ValidatingAdmissionPolicy '{POLICY}' with binding '{POLICY}' denied request" in plain.stderr
    assert "[tls-cert-and-key]" in plain.stderr


def test_static_objects_cannot_be_seen_deleted_or_replaced_through_the_api(
    node: tuple[ControlPlane, RunningServer, Path],
) -> None:
    plane, _, static = node
    assert "No resources found" in plane.kubectl("get", "validatingadmissionpolicies").stderr
    deleted = plane.kubectl("delete", "validatingadmissionpolicy", POLICY)
    assert deleted.returncode == 1 and "NotFound" in deleted.stderr
    impostor = (
        (static / "vap" / f"{POLICY}.validatingadmissionpolicy.yaml")
        .read_text()
        .replace("validations:", "validations: []\n  x-validations:")
    )
    created = plane.kubectl("create", "-f", "-", stdin=impostor)
    assert created.returncode == 1, "a policy named *.static.k8s.io must not be creatable through the API"
    still = plane.kubectl("create", "-f", "-", stdin=json.dumps(apiserver_pod(unique("after"), BAD_FLAGS)))
    assert still.returncode == 1 and POLICY in still.stderr


def test_a_change_in_the_folder_is_picked_up(node: tuple[ControlPlane, RunningServer, Path]) -> None:
    """kube-apiserver re-reads the folders on every change (manifest/source.go: filesystem.WatchUntil, fsnotify)
    and at least every minute (defaultReloadInterval)."""
    plane, _, static = node
    # The operator steps back to warn, with the policies only: the enforce policy and the webhook file go.
    for old in [*(static / "vap").glob("apiserver-tls-guard-enforce.*"), *(static / "webhooks").glob("*")]:
        old.unlink()
    rewritten = cli("static", str(static), "--mode", "warn")
    assert rewritten.returncode == 0, rewritten.stderr
    started = time.monotonic()

    def admitted_with_warnings() -> bool:
        result = plane.kubectl("create", "--dry-run=server", "-f", "-",
                               stdin=json.dumps(apiserver_pod(unique("later"), BAD_FLAGS)))  # fmt: skip
        return result.returncode == 0 and "[tls-cert-and-key]" in result.stderr

    wait_for(admitted_with_warnings, timeout=150, what="the changed folder to take effect")
    print(f"\nstatic folder change in force after {time.monotonic() - started:.0f} s")
