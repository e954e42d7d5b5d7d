"""Shared fixtures: certificates made by our own `certs` command and the real server process over HTTPS."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.apiserver_client import ApiserverClient, apiserver_tls_context

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CORPUS = SHARED / "corpus"


def cli(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed command exactly as a user does."""
    exe = Path(sys.executable).with_name("apiserver-tls-guard")
    return subprocess.run(
        [str(exe), *args], input=stdin, capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def certs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    result = cli("certs", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


@dataclass
class RunningServer:
    port: int
    certs: Path
    process: subprocess.Popen[bytes]
    log: Path

    def client(self, **kwargs: object) -> ApiserverClient:
        return ApiserverClient(self.port, self.certs / "ca.crt", **kwargs)  # type: ignore[arg-type]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _wait_ready(port: int, ca: Path, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early: {log.read_text()}")
        try:
            context = apiserver_tls_context(ca)  # the server may still be making (or fetching) it
            with (
                socket.create_connection(("127.0.0.1", port), timeout=1) as sock,
                context.wrap_socket(sock, server_hostname="localhost"),
            ):
                return
        except (OSError, ssl.SSLError):
            time.sleep(0.1)
    raise RuntimeError(f"server did not start: {log.read_text()}")


def start_server(certs: Path, workdir: Path, *args: str) -> RunningServer:
    port = free_port()
    log = workdir / f"server-{port}.log"
    exe = Path(sys.executable).with_name("apiserver-tls-guard")
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port), "--certs-dir", str(certs), *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    _wait_ready(port, certs / "ca.crt", process, log)
    return RunningServer(port, certs, process, log)


def stop_server(server: RunningServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()


ServerFactory = Callable[..., RunningServer]


@pytest.fixture(scope="session")
def server_factory(certs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """Start (once per argument list) a real `apiserver-tls-guard serve` process."""
    running: dict[tuple[str, ...], RunningServer] = {}
    workdir = tmp_path_factory.mktemp("servers")

    def get(*args: str) -> RunningServer:
        if args not in running:
            running[args] = start_server(certs_dir, workdir, *args)
        return running[args]

    yield get
    for server in running.values():
        stop_server(server)


@pytest.fixture(scope="session")
def enforce_server(server_factory: ServerFactory) -> RunningServer:
    return server_factory("--mode", "enforce")


@pytest.fixture(scope="session")
def warn_server(server_factory: ServerFactory) -> RunningServer:
    return server_factory("--mode", "warn")


@pytest.fixture
def enforce_client(enforce_server: RunningServer) -> Iterator[ApiserverClient]:
    client = enforce_server.client()
    yield client
    client.close()


@pytest.fixture
def warn_client(warn_server: RunningServer) -> Iterator[ApiserverClient]:
    client = warn_server.client()
    yield client
    client.close()


def pytest_report_header() -> str:
    """One visible line at the top of every run: whether the shared corpus is here, and so whether its tests run."""
    if CORPUS.is_dir():
        return f"shared corpus: {CORPUS} ({len(list(CORPUS.iterdir()))} files): corpus tests run"
    return f"shared corpus: ABSENT ({CORPUS}): every corpus-driven test is skipped; .ci/run refuses to run like this"


def corpus_cases(names: list[str]) -> list[Any]:
    """Parameters for a corpus-driven test: the names, or one skipped case saying why there are none. Empty
    parameter sets fail at collection (pyproject: empty_parameter_set_mark), so a test can never vanish silently."""
    if names:
        return list(names)
    return [pytest.param(None, marks=pytest.mark.skip(reason=f"{SHARED} is absent: the shared corpus is not here"))]


def requires_shared() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not CORPUS.is_dir(), reason=f"{SHARED} is absent: the shared corpus is not here")
