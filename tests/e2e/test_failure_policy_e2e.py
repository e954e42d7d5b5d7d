"""failurePolicy as the real kube-apiserver applies it, with our overlays: a webhook that is down or slower than
`timeoutSeconds` is admitted past by `warn` (failurePolicy Ignore, with the apiserver's failed-open audit
annotation) and refused by `enforce` (failurePolicy Fail, with the apiserver's own message).

"Down" is our serve process stopped; "slow" is the same process frozen with SIGSTOP, so connections are accepted
by the kernel and never answered: the real server, made slow without a stand-in.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningServer, start_server, stop_server
from tests.e2e.conftest import (
    BAD_FLAGS,
    Registered,
    apiserver_pod,
    audit_events,
    register,
    unique,
    unregister,
    wait_for,
)
from tests.e2e.controlplane import ControlPlane

FAILED_OPEN = "failed-open.validating.webhook.admission.k8s.io/round_0_index_0"


@pytest.fixture
def own_server(certs_dir: Path, tmp_path: Path) -> Iterator[RunningServer]:
    """A serve process of this test's own, which it may stop or freeze."""
    server = start_server(certs_dir, tmp_path, "--mode", "enforce")
    yield server
    if server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGCONT)
    stop_server(server)


def _outage(server: RunningServer, how: str) -> None:
    if how == "down":
        stop_server(server)
    else:
        os.kill(server.process.pid, signal.SIGSTOP)


@pytest.mark.parametrize("how", ["down", "slow"])
def test_warn_overlay_fails_open_and_the_audit_log_says_so(
    how: str, control_plane: ControlPlane, own_server: RunningServer
) -> None:
    register(control_plane, own_server, "warn")
    try:
        _outage(own_server, how)
        name = unique(f"warn-{how}")
        started = time.monotonic()
        result = control_plane.kubectl("create", "-f", "-", stdin=json.dumps(apiserver_pod(name, BAD_FLAGS)))
        elapsed = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        if how == "slow":
            assert elapsed >= 4.5, "the apiserver waited timeoutSeconds (5 s) before giving up"

        def failed_open() -> dict[str, str]:
            for event in audit_events(control_plane, name):
                if event["verb"] == "create" and event["stage"] == "ResponseComplete":
                    return dict(event.get("annotations") or {})
            return {}

        annotations = wait_for(failed_open, what="the create's audit event")
        assert annotations.get(FAILED_OPEN) == "pods.apiserver-tls-guard.io", annotations
    finally:
        unregister(control_plane)


@pytest.mark.parametrize("how", ["down", "slow"])
def test_enforce_overlay_refuses_with_the_apiservers_message(
    how: str, control_plane: ControlPlane, own_server: RunningServer
) -> None:
    registered: Registered = register(control_plane, own_server, "enforce")
    try:
        _outage(own_server, how)
        name = unique(f"enforce-{how}")
        result = control_plane.kubectl("create", "-f", "-", stdin=json.dumps(apiserver_pod(name, BAD_FLAGS)))
        assert result.returncode == 1
        assert 'failed calling webhook "pods.apiserver-tls-guard.io"' in result.stderr, result.stderr
        if how == "slow":
            assert "context deadline exceeded" in result.stderr or "Timeout" in result.stderr, result.stderr
        else:
            assert "connection refused" in result.stderr, result.stderr
        assert not registered.reached(name)
    finally:
        unregister(control_plane)
