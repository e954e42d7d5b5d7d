"""`serve` as PID 1 of its own PID namespace, as in every container: SIGTERM and SIGINT work before it serves
(certificate bootstrap against an API that does not answer) and once it serves (uvicorn's graceful shutdown).

The kernel gives PID 1 of a PID namespace no default action: a signal it has no handler for is dropped, whether
sent from inside the namespace or from an ancestor one such as containerd's (kernel/signal.c, sig_task_ignored:
SIGNAL_UNKILLABLE with SIG_DFL; only SIGKILL and SIGSTOP from an ancestor are forced). uvicorn installs its
handlers only once it serves (uvicorn/server.py, Server.capture_signals), so without ours a pod stuck in
`--cluster-certs` bootstrap sat out the whole grace period until the kubelet's SIGKILL.

The PID 1 tests need root for `unshare --pid --mount-proc`; skipped without it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import _wait_ready, free_port
from webhook.runtime import signals


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root: unshare --pid --mount-proc"
    if shutil.which("unshare") is None:
        return "needs unshare (util-linux)"
    return None


as_pid_1 = pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")

# Seconds from the signal to the log line that says so, and to the exit. The exit includes the interpreter's
# teardown, ~0.15 s of CPU (the kubernetes client's modules), measured 1.1-1.7 s of wall time at load average 20 on
# 2 cores; without a handler the process never exits (it sits out the grace period until SIGKILL).
PROMPT = 2.0
EXITED = 5.0


@dataclass
class Pid1:
    """`apiserver-tls-guard` run by `unshare --pid --fork`: `pid` is its host PID, 1 inside its namespace."""

    unshare: subprocess.Popen[bytes]
    pid: int
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.text().splitlines() if line.startswith("{")]


def _start(tmp_path: Path, *args: str) -> Pid1:
    log = tmp_path / "serve.log"
    exe = Path(sys.executable).with_name("apiserver-tls-guard")
    with log.open("wb") as sink:
        unshare = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", str(exe), *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    children = Path(f"/proc/{unshare.pid}/task/{unshare.pid}/children")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = children.read_text().split() if children.exists() else []
        if found:
            pid = int(found[0])
            status = Path(f"/proc/{pid}/status").read_text()
            nspid = next(line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:"))
            if nspid[-1] == "1":  # exec'd in the new namespace, not unshare's fork still setting it up
                return Pid1(unshare, pid, log)
        time.sleep(0.02)
    unshare.kill()
    raise RuntimeError(f"unshare started no PID 1: {log.read_text()}")


def _stop(process: Pid1) -> None:
    if process.unshare.poll() is None:
        os.kill(process.pid, signal.SIGKILL)  # the only signal PID 1 cannot ignore
        process.unshare.wait(timeout=10)


@pytest.fixture
def dead_api(tmp_path: Path) -> Path:
    """A kubeconfig whose API nothing listens on: every bootstrap attempt fails and is retried."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "dead", "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "dead", "context": {"cluster": "dead", "user": "u"}}],
        "current-context": "dead",
    }
    path = tmp_path / "dead.kubeconfig"
    path.write_text(json.dumps(config))
    return path


def _wait_log(process: Pid1, msg: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(line.get("msg") == msg for line in process.lines()):
            return
        if process.unshare.poll() is not None:
            raise AssertionError(f"exited before {msg!r}: {process.text()}")
        time.sleep(0.05)
    raise AssertionError(f"no {msg!r} in {timeout:.0f} s: {process.text()}")


@pytest.fixture
def bootstrapping(tmp_path: Path, dead_api: Path) -> Iterator[Pid1]:
    process = _start(tmp_path, "serve", "--cluster-certs", f"--kubeconfig={dead_api}",
                     f"--certs-dir={tmp_path / 'certs'}", f"--port={free_port()}", "--host=127.0.0.1")  # fmt: skip
    try:
        _wait_log(process, "certificates not ready")  # in the retry loop: sleeping or dialling the dead API
        yield process
    finally:
        _stop(process)


@as_pid_1
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_certificate_bootstrap_exits_promptly_as_pid_1(
    bootstrapping: Pid1, sig: signal.Signals, code: int
) -> None:
    sent, wall = time.monotonic(), dt.datetime.now(dt.UTC)
    os.kill(bootstrapping.pid, sig)
    try:
        returned = bootstrapping.unshare.wait(timeout=EXITED)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{sig.name} ignored by PID 1 for {EXITED} s during bootstrap:\n{bootstrapping.text()}")
    took = time.monotonic() - sent
    [stopped] = [line for line in bootstrapping.lines() if line.get("msg") == "stopped before serving"]
    said = (dt.datetime.fromisoformat(str(stopped["time"])) - wall).total_seconds()
    print(f"\n{sig.name} to PID 1 in bootstrap: logged after {said:.3f} s, exited {returned} after {took:.3f} s")
    assert said < PROMPT
    # 128 + the signal: what a shell, and containerd for a process its signal killed, report.
    assert returned == code
    assert stopped["signal"] == sig.name and stopped["exitCode"] == code and stopped["level"] == "warning"
    assert "Traceback" not in bootstrapping.text()


@as_pid_1
def test_sigterm_while_serving_as_pid_1_still_shuts_down_gracefully(certs_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    process = _start(tmp_path, "serve", "--host=127.0.0.1", f"--port={port}", f"--certs-dir={certs_dir}")
    try:
        _wait_ready(port, certs_dir / "ca.crt", process.unshare, process.log)
        sent = time.monotonic()
        os.kill(process.pid, signal.SIGTERM)
        returned = process.unshare.wait(timeout=10)
        print(f"\nSIGTERM to PID 1 while serving: exited {returned} after {time.monotonic() - sent:.3f} s")
        assert returned == 0, process.text()
        said = [str(line.get("msg")) for line in process.lines()]
        # uvicorn's own shutdown ran (Server.shutdown), not our start-up exit.
        assert "Shutting down" in said and "Finished server process [1]" in said, said
        assert "stopped before serving" not in said and "Traceback" not in process.text()
    finally:
        _stop(process)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_the_handler_raises_stopped_past_an_except_exception(sig: signal.Signals, code: int) -> None:
    """A retry loop's `except Exception` (pki/cluster.py, ClusterCertificates.start) must not swallow the stop."""
    before = {s: signal.getsignal(s) for s in signals.STOP_SIGNALS}
    try:
        signals.install()
        with pytest.raises(signals.Stopped) as stopped:
            try:
                signal.raise_signal(sig)
            except Exception:  # the point: it is not caught here
                pytest.fail("Stopped was caught as an Exception")
        assert (stopped.value.name, stopped.value.exit_code) == (sig.name, code)
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
