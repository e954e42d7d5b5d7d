"""A changed policy takes effect without a restart, the way the kubelet updates a mounted ConfigMap (a new
timestamped folder, then the `..data` symlink swapped atomically); an invalid one is refused and the policy in
force is kept."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.admission.test_http import NO_TLS, apiserver_pod
from tests.apiserver_client import admission_review
from tests.conftest import RunningServer, start_server, stop_server


class MountedConfigMap:
    """The kubelet's atomic writer, as it lays out a ConfigMap volume."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.version = 0

    def write(self, content: str) -> None:
        self.version += 1
        folder = self.root / f"..2026_11_25_00_00_{self.version:02d}"
        folder.mkdir()
        (folder / "policy.yaml").write_text(content)
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(folder.name)
        os.replace(tmp, self.root / "..data")  # rename(2): the swap is atomic
        if not (self.root / "policy.yaml").is_symlink():
            (self.root / "policy.yaml").symlink_to("..data/policy.yaml")

    @property
    def path(self) -> Path:
        return self.root / "policy.yaml"


@pytest.fixture
def mounted(tmp_path: Path) -> MountedConfigMap:
    volume = tmp_path / "volume"
    volume.mkdir()
    configmap = MountedConfigMap(volume)
    configmap.write("mode: enforce\n")
    return configmap


@pytest.fixture
def server(certs_dir: Path, tmp_path: Path, mounted: MountedConfigMap) -> Iterator[RunningServer]:
    running = start_server(certs_dir, tmp_path, "--config", str(mounted.path), "--reload-interval", "0.2")
    yield running
    stop_server(running)


def _allowed(server: RunningServer) -> bool:
    client = server.client()
    try:
        return bool(client.review(admission_review(apiserver_pod(*NO_TLS)))["allowed"])
    finally:
        client.close()


def _policy_hash(server: RunningServer) -> str:
    client = server.client()
    try:
        text = client.get("/metrics").body.decode()
    finally:
        client.close()
    [line] = [ln for ln in text.splitlines() if ln.startswith("tlsguard_policy_info{") and ln.endswith(" 1.0")]
    return line.split('hash="', 1)[1].split('"', 1)[0]


def _eventually(condition: object, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_policy_swap_applies_valid_and_refuses_invalid(server: RunningServer, mounted: MountedConfigMap) -> None:
    assert _allowed(server) is False
    first = _policy_hash(server)

    mounted.write("mode: warn\n")  # roll back from enforce to warn
    assert _eventually(lambda: _allowed(server)), "the new policy never took effect"
    second = _policy_hash(server)
    assert second != first

    mounted.write('mode: warn\nexemptions: {names: "kube-*"}\n')  # a typo: must not exempt anything
    assert _eventually(lambda: "new policy refused" in server.log_text())
    assert _policy_hash(server) == second
    refused = [json.loads(ln) for ln in server.log_text().splitlines() if "new policy refused" in ln]
    assert "exemptions.names: expected a list" in refused[0]["error"]

    mounted.write("mode: enforce\n")
    assert _eventually(lambda: not _allowed(server))
    assert _policy_hash(server) == first  # the same content is the same hash
