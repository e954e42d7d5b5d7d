"""The image `make image` built here, as a user runs it: read-only root, UID 65532, no capabilities, /healthz over
HTTPS. The config is read from the OCI archive itself (what a registry would serve); the container runs under the
node's own containerd and runc."""

from __future__ import annotations

import json
import tarfile
import time
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import unique
from tests.e2e.node.image import ARCHIVE, published
from tests.e2e.node.node import Node

REFERENCE = published()


def _blob(archive: tarfile.TarFile, digest: str) -> Any:
    member = archive.extractfile(f"blobs/{digest.replace(':', '/')}")
    assert member is not None
    return json.load(member)


def image_config() -> dict[str, Any]:
    """The image's OCI config: index.json, then its one manifest, then the config blob."""
    if not ARCHIVE.is_file():
        pytest.skip(f"{ARCHIVE} is not built: `make image`")
    with tarfile.open(ARCHIVE) as archive:
        index = json.load(archive.extractfile("index.json"))  # type: ignore[arg-type]
        [entry] = index["manifests"]
        assert entry["annotations"]["org.opencontainers.image.ref.name"] == REFERENCE
        manifest = _blob(archive, entry["digest"])
        config: dict[str, Any] = _blob(archive, manifest["config"]["digest"])
        return config


def test_the_image_runs_as_65532_and_carries_no_test_ca() -> None:
    config = image_config()
    assert config["config"]["User"] == "65532:65532"
    assert config["config"]["Entrypoint"] == ["apiserver-tls-guard"]
    history = json.dumps(config["history"])
    # The host's CA certificates belong to the test base only; the Dockerfile never copies them.
    assert "ca-certificates" not in (ROOT / "Dockerfile").read_text()
    assert "update-ca-certificates" not in history


def test_the_dockerfile_forces_no_pull() -> None:
    """Under BuildKit `# syntax=` pulls docker/dockerfile from a registry before anything else."""
    first = (ROOT / "Dockerfile").read_text().splitlines()[0]
    assert not first.startswith("# syntax=")


HEALTHZ = """
import ssl, sys, time, urllib.request
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE  # the certificate is made at start inside the container, on its tmpfs
deadline = time.monotonic() + 30
while True:
    try:
        with urllib.request.urlopen("https://127.0.0.1:8443/healthz", context=context, timeout=2) as r:
            print(r.status, r.read().decode(), time.monotonic() - float(sys.argv[1]))
            break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
"""


def test_the_image_serves_healthz_over_https_read_only_as_65532(node: Node) -> None:
    name = unique("image")
    certs = "/var/run/apiserver-tls-guard/certs"
    assert node.namespaces is not None
    try:
        node.ctr(
            "run", "--detach", "--read-only", "--user", "65532:65532", "--net-host",
            "--cgroup", f"/{node.cgroups.name}/{name}",
            "--mount", f"type=tmpfs,src=tmpfs,dst={certs},options=rw:nosuid:nodev:mode=1777",
            REFERENCE, name,
        )  # fmt: skip
        result = node.namespaces.run(["python3", "-c", HEALTHZ, str(time.monotonic())], timeout=60)
        status, body, seconds = result.stdout.split()
        assert (status, json.loads(body)) == ("200", {"status": "ok"}), result.stdout
        print(f"/healthz over HTTPS {float(seconds):.2f} s after `ctr run`")
        [pid] = [line.split()[0] for line in node.ctr("task", "ps", name).stdout.splitlines()[1:]]
        status_text = node.namespaces.run(["cat", f"/proc/{pid}/status"]).stdout
        uids = next(line for line in status_text.splitlines() if line.startswith("Uid:")).split()[1:]
        assert set(uids) == {"65532"}, uids
        write = node.ctr("task", "exec", "--exec-id", "probe", name,
                         "python", "-c", "open('/probe', 'w')", check=False)  # fmt: skip
        assert write.returncode != 0
        assert "Read-only file system" in write.stderr + write.stdout
    finally:
        node.ctr("task", "kill", "--signal", "SIGKILL", name, check=False)
        time.sleep(0.5)
        node.ctr("task", "delete", "--force", name, check=False)
        node.ctr("container", "delete", name, check=False)
