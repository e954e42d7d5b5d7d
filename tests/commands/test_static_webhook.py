"""The static node-local webhook's files and pod agree (issue 24 item 5): `certs --owner` gives the serving files to
the user the pod runs as, the key staying 0600, and `static` writes a pod that runs as that user, mounts that folder
read-only, and warns (with the exact command) when that user cannot read it.

Ownership changes need root (chown); those tests are skipped without it. The real kubelet runs the pod in
tests/e2e/test_node_static_webhook.py.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, cli
from webhook.commands.static import RUN_AS, unreadable

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
SERVED = ("tls.key", "tls.crt", "ca.crt")


def owner_and_mode(path: Path) -> tuple[int, int, int]:
    found = path.stat()
    return found.st_uid, found.st_gid, stat.S_IMODE(found.st_mode)


def static_pod(tmp_path: Path, certs: Path, *args: str) -> tuple[dict[str, Any], str]:
    result = cli("static", str(tmp_path / "admission"), "--certs-dir", str(certs), *args)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load((tmp_path / "admission" / "apiserver-tls-guard.yaml").read_text()), result.stderr


@as_root
def test_certs_owner_gives_the_served_files_to_that_user_and_keeps_the_keys_0600(tmp_path: Path) -> None:
    result = cli("certs", "--out", str(tmp_path), "--owner", "65532:65532")
    assert result.returncode == 0, result.stderr
    assert owner_and_mode(tmp_path / "tls.key") == (65532, 65532, 0o600)
    assert owner_and_mode(tmp_path / "tls.crt") == (65532, 65532, 0o644)
    assert owner_and_mode(tmp_path / "ca.crt") == (65532, 65532, 0o644)
    # The server never signs: the CA's key stays with whoever ran `certs`.
    assert owner_and_mode(tmp_path / "ca.key") == (0, 0, 0o600)
    assert "tls.key (65532:65532 600)" in result.stderr


@as_root
def test_without_owner_the_files_are_roots_and_the_pod_user_cannot_read_the_key(tmp_path: Path) -> None:
    """The defect: root-owned 0600 key, read by UID 65532."""
    certs = tmp_path / "certs"
    assert cli("certs", "--out", str(certs)).returncode == 0
    assert owner_and_mode(certs / "tls.key") == (0, 0, 0o600)
    assert unreadable(certs) == [certs / "tls.key"]


@as_root
def test_kept_files_get_the_owner_and_a_renewal_without_it_keeps_theirs(tmp_path: Path) -> None:
    assert cli("certs", "--out", str(tmp_path)).returncode == 0
    assert cli("certs", "--out", str(tmp_path), "--owner", "65532").returncode == 0  # kept, now 65532's
    for name in SERVED:
        assert owner_and_mode(tmp_path / name)[:2] == (65532, 65532), name
    # Overwritten in place (owner kept) with a certificate that does not match the key: as an expiry would, the
    # serving pair is re-issued.
    (tmp_path / "tls.crt").write_bytes((tmp_path / "ca.crt").read_bytes())
    again = cli("certs", "--out", str(tmp_path))
    assert again.returncode == 0 and "wrote" in again.stderr
    assert owner_and_mode(tmp_path / "tls.key") == (65532, 65532, 0o600)
    assert owner_and_mode(tmp_path / "tls.crt")[:2] == (65532, 65532)


@pytest.mark.parametrize("bad", ["nobody", "65532:staff", "-1", "1:-2", ""])
def test_owner_must_be_numbers(tmp_path: Path, bad: str) -> None:
    result = cli("certs", "--out", str(tmp_path), "--owner", bad)
    assert result.returncode == 2
    assert "not UID:GID in numbers" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "tls.key").exists()


def test_the_pod_runs_as_the_images_user_and_mounts_the_certs_folder_read_only(certs_dir: Path, tmp_path: Path) -> None:
    pod, _ = static_pod(tmp_path, certs_dir, "--port", "9443")
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(rf"^USER {RUN_AS}:{RUN_AS}$", dockerfile, re.M)
    spec = pod["spec"]
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # fsGroup would be a promise the kubelet does not keep for a hostPath volume (host_path.go, SetUp).
    assert "fsGroup" not in spec["securityContext"]
    [container] = spec["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["volumeMounts"] == [{"name": "certs", "mountPath": "/certs", "readOnly": True}]
    assert spec["volumes"] == [{"name": "certs", "hostPath": {"path": str(certs_dir.resolve()), "type": "Directory"}}]
    assert "--external-certs" in container["args"] and "--port=9443" in container["args"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert (get["host"], get["port"], get["scheme"]) == ("127.0.0.1", 9443, "HTTPS"), probe


@as_root
def test_static_warns_with_the_exact_command_until_the_pod_user_can_read_the_files(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    assert cli("certs", "--out", str(certs)).returncode == 0
    pod, said = static_pod(tmp_path, certs)
    command = f"apiserver-tls-guard certs --out {certs} --owner {RUN_AS}:{RUN_AS}"
    assert "warning" in said and str(certs / "tls.key") in said and command in said
    assert cli(*command.split()[1:]).returncode == 0
    # The files now agree with the pod as written, whatever user it names.
    context = pod["spec"]["securityContext"]
    assert unreadable(certs, context["runAsUser"], context["runAsGroup"]) == []
    _, said = static_pod(tmp_path, certs)
    assert "warning" not in said
    assert "staticPodPath" in said


@as_root
@pytest.mark.parametrize(
    ("uid", "gid", "mode", "readable"),
    [
        (RUN_AS, 0, 0o600, True),  # the owner's bits
        (0, RUN_AS, 0o640, True),  # the group's
        (0, RUN_AS, 0o604, False),  # the group's bits decide for a member of the group, not the others'
        (0, 0, 0o644, True),  # the others'
        (0, 0, 0o600, False),
        (RUN_AS, 0, 0o066, False),  # the owner's bits decide for the owner
    ],
)
def test_unreadable_follows_the_kernels_order(tmp_path: Path, uid: int, gid: int, mode: int, readable: bool) -> None:
    certs = tmp_path / "certs"
    assert cli("certs", "--out", str(certs), "--owner", f"{RUN_AS}:{RUN_AS}").returncode == 0
    key = certs / "tls.key"
    os.chown(key, uid, gid)
    key.chmod(mode)
    assert (key not in unreadable(certs)) is readable
    assert certs not in unreadable(certs)
    certs.chmod(0o700)  # root's folder, no search for others
    assert certs in unreadable(certs)


@as_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux) to run as UID 65532")
def test_serve_names_the_file_and_the_user_when_it_cannot_read_the_key() -> None:
    """What the static pod's log says (before: the TLS library's bare "Permission denied", no file, no user)."""
    with tempfile.TemporaryDirectory(dir="/tmp") as top:  # pytest's folders are 0700: UID 65532 could not look in
        os.chmod(top, 0o755)
        certs = Path(top) / "certs"
        assert cli("certs", "--out", str(certs)).returncode == 0
        exe = Path(sys.executable).with_name("apiserver-tls-guard")
        as_pod = ["setpriv", f"--reuid={RUN_AS}", f"--regid={RUN_AS}", "--clear-groups"]
        argv = [*as_pod, str(exe), "serve", "--external-certs", "--certs-dir", str(certs), "--port", "1"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert f"UID {RUN_AS} cannot read {certs / 'tls.key'}" in result.stderr and "Traceback" not in result.stderr
