"""`check --node` reads argv as the kernel writes it (issue 19, point 8): /proc/PID/cmdline is each argument followed
by one NUL (proc(5)), so only that final NUL goes and an empty argument stays one. `--tls-cert-file '' --v=2` is an
empty certificate file then --v=2; dropping the empty item made it `--tls-cert-file=--v=2`, a pass."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.admission.test_http import COMPLIANT
from tests.conftest import cli
from tests.offline.test_check_cli import _proc

WITHOUT_CERT = tuple(f for f in COMPLIANT if not f.startswith("--tls-cert-file"))
EMPTY_CERT = ["--tls-cert-file", "", "--v=2"]


@pytest.mark.parametrize(
    ("raw", "argv"),
    [
        (b"kube-apiserver\0--tls-cert-file\0\0--v=2\0", ["kube-apiserver", "--tls-cert-file", "", "--v=2"]),
        (b"kube-apiserver\0--a\0\0", ["kube-apiserver", "--a", ""]),  # an empty last argument
        (b"kube-apiserver\0--a=1", ["kube-apiserver", "--a=1"]),  # no final NUL (a rewritten argv)
        (b"", []),  # a kernel thread
        (b"\0", [""]),
    ],
)
def test_argv_of_cmdline(raw: bytes, argv: list[str]) -> None:
    from webhook.offline.node import argv_of

    assert argv_of(raw) == argv


def _tls_details(report: dict[str, object], source: str) -> list[str]:
    findings = report["findings"]
    assert isinstance(findings, list)
    return [f["detail"] for f in findings if f["source"] == source and f["control"] == "tls-cert-and-key"]


def test_empty_argument_in_a_proc_tree(tmp_path: Path) -> None:
    _proc(tmp_path, 300, ["kube-apiserver", *WITHOUT_CERT, *EMPTY_CERT])
    result = cli("check", "--node", "--proc-root", str(tmp_path), "--format", "json")
    assert result.returncode == 1, result.stderr
    assert _tls_details(json.loads(result.stdout), f"{tmp_path}/300/cmdline") == ["--tls-cert-file is empty"]


@pytest.fixture
def apiserver_named_process() -> Iterator[subprocess.Popen[bytes]]:
    """A real process whose argv[0] is kube-apiserver and whose argv holds an empty argument: Python, told to
    sleep (its own options come before the flags, as a wrapper's would)."""
    argv = ["kube-apiserver", "-c", "import time; time.sleep(60)", *WITHOUT_CERT, *EMPTY_CERT]
    process = subprocess.Popen(argv, executable=sys.executable)
    cmdline = Path(f"/proc/{process.pid}/cmdline")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not cmdline.read_bytes().startswith(b"kube-apiserver\0"):
        time.sleep(0.02)  # between fork and exec the child still shows the parent's argv
    try:
        yield process
    finally:
        process.kill()
        process.wait()


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")
def test_a_real_process_with_an_empty_argument(apiserver_named_process: subprocess.Popen[bytes]) -> None:
    pid = apiserver_named_process.pid
    assert b"--tls-cert-file\0\0--v=2\0" in Path(f"/proc/{pid}/cmdline").read_bytes()
    result = cli("check", "--node", "--format", "json")
    assert result.returncode == 1, result.stderr
    assert _tls_details(json.loads(result.stdout), f"/proc/{pid}/cmdline") == ["--tls-cert-file is empty"]
