"""The policy watcher outlives any file: whatever cannot be read or parsed is a refused policy, logged with its
reason and counted, and a later valid file still applies. Issue 21: a byte that is not UTF-8 raised
UnicodeDecodeError out of `PolicyReloader.check`, ending the watcher task for good (no log, no count)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from webhook.core.policy import Mode, PolicyInForce, load_in_force, load_policy, policy_digest
from webhook.runtime.policy_reload import PolicyReloader

NO_OVERRIDES: dict[str, Any] = {"mode": None, "cisVersion": None}


def _errors() -> float:
    return REGISTRY.get_sample_value("tlsguard_policy_reload_errors_total") or 0.0


def _reloader(path: Path, content: bytes) -> PolicyReloader:
    path.write_bytes(content)
    in_force = PolicyInForce(load_policy(path), policy_digest(path, NO_OVERRIDES))
    return PolicyReloader(path, NO_OVERRIDES, in_force, interval=0.01)


def _refusals(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.__dict__.get("fields", {}) for r in caplog.records if "new policy refused" in r.getMessage()]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"mode: warn\n# caf\xe9 in Latin-1\n", "not UTF-8"),  # was UnicodeDecodeError out of check()
        (b"\xff\xfe\x00m\x00o", "not UTF-8"),  # UTF-16 with its byte-order mark, as some editors save
        (b"mode: [", "not valid YAML"),
        (b"- a\n", "top level must be a mapping"),
        (b"mode: sometimes\n", "mode"),
    ],
)
def test_bad_file_is_refused_logged_counted_and_a_later_good_one_applies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, reason: str
) -> None:
    path = tmp_path / "policy.yaml"
    reloader = _reloader(path, b"mode: warn\n")
    kept = reloader.in_force.digest
    before = _errors()
    caplog.set_level(logging.INFO, logger="apiserver_tls_guard")

    path.write_bytes(content)
    assert reloader.check() is False
    assert reloader.check() is False  # the same refused content: logged and counted once
    assert reloader.in_force.digest == kept and reloader.in_force.policy.mode is Mode.WARN
    assert _errors() == before + 1
    [refused] = _refusals(caplog)
    assert reason in json.dumps(refused), refused

    path.write_bytes(b"mode: enforce\n")  # the switch a dead watcher never applied
    assert reloader.check() is True
    assert reloader.in_force.policy.mode.value == "enforce"


def test_unreadable_file_is_a_counted_refusal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "policy.yaml"
    reloader = _reloader(path, b"mode: warn\n")
    before = _errors()
    caplog.set_level(logging.INFO, logger="apiserver_tls_guard")
    path.unlink()
    path.mkdir()  # reading a directory: IsADirectoryError
    assert reloader.check() is False and reloader.check() is False
    assert _errors() == before + 1
    assert "cannot read" in json.dumps(_refusals(caplog))
    path.rmdir()
    path.write_bytes(b"mode: audit\n")
    assert reloader.check() is True and reloader.in_force.policy.mode is Mode.AUDIT


def test_the_policy_in_force_is_known_by_the_hash_of_the_bytes_it_was_parsed_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kubelet may swap the file between two reads; one read per look means the hash always names the policy
    in force. Here every read of the file flips its content, as a swap between two reads would."""
    path = tmp_path / "policy.yaml"
    reloader = _reloader(path, b"mode: audit\n")
    contents = [b"mode: warn\n", b"mode: enforce\n"]
    path.write_bytes(contents[0])
    real_read_bytes, real_read_text = Path.read_bytes, Path.read_text

    def flip() -> None:
        current = real_read_bytes(path)
        path.write_bytes(contents[1] if current == contents[0] else contents[0])

    def read_bytes(self: Path) -> bytes:
        data = real_read_bytes(self)
        if self == path:
            flip()
        return data

    def read_text(self: Path, *args: Any, **kwargs: Any) -> str:
        data = real_read_text(self, *args, **kwargs)
        if self == path:
            flip()
        return data

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    monkeypatch.setattr(Path, "read_text", read_text)
    assert reloader.check() is True
    mode = reloader.in_force.policy.mode.value
    assert reloader.in_force.digest == policy_digest(None, NO_OVERRIDES, f"mode: {mode}\n".encode())
    # And at start (serving.build_app): one read too.
    for _ in range(2):
        started = load_in_force(path, NO_OVERRIDES)
        mode = started.policy.mode.value
        assert started.digest == policy_digest(None, NO_OVERRIDES, f"mode: {mode}\n".encode())


def test_the_watcher_task_never_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a bug of ours inside a look (here: the parser raising something unexpected) leaves the task running."""
    path = tmp_path / "policy.yaml"
    reloader = _reloader(path, b"mode: warn\n")
    calls = {"n": 0}

    def broken(*_: Any, **__: Any) -> Any:
        calls["n"] += 1
        raise RuntimeError("a bug")

    monkeypatch.setattr("webhook.runtime.policy_reload.policy_from_bytes", broken)
    path.write_bytes(b"mode: enforce\n")

    async def main() -> bool:
        task = asyncio.create_task(reloader.run())
        await asyncio.sleep(0.1)
        alive = not task.done()
        task.cancel()
        return alive

    before = _errors()
    assert asyncio.run(main()) is True
    assert calls["n"] >= 1 and _errors() == before + 1


def test_policy_info_is_one_series_with_two_workers(tmp_path: Path, certs_dir: Path) -> None:
    """Issue 21: with several workers, each hash ever in force stayed a series (set to 0, never removed: the
    worker files of prometheus_client cannot drop a label). Three policies later, /metrics shows one."""
    import re

    from tests.conftest import start_server, stop_server

    path = tmp_path / "policy.yaml"
    path.write_text("mode: warn\n")
    server = start_server(certs_dir, tmp_path, "--config", str(path), "--reload-interval", "0.1", "--workers", "2")
    try:
        for mode in ("enforce", "audit", "warn\nexemptions: {namespaces: [x]}"):
            path.write_text(f"mode: {mode}\n")
            time.sleep(1.0)
        client = server.client()
        text = client.get("/metrics").body.decode()
        client.close()
    finally:
        stop_server(server)
    series = re.findall(r"^tlsguard_policy_info\{.*$", text, re.MULTILINE)
    expected = policy_digest(path, NO_OVERRIDES)
    assert series == [f'tlsguard_policy_info{{hash="{expected}"}} 1.0'], series
