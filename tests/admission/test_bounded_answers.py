"""What the submitter sends cannot make the answer, or the server's memory, grow with it (issue 20 point 3).

Reproduced as reported: a dry-run pod of about 3 MB whose `--authorization-mode=Foo0,Foo1,...` echoed every item
into the message and the audit annotations got a 25 MB answer, and 8 of them took the real server from 45 to
607 MiB (the verdict cache bounded entries, not bytes; the Deployment's limit is 256 Mi). The figures asserted here
are the issue's and kube-apiserver's, not the code's: answers within 64 KiB, each warning within the 4096 runes
kube-apiserver keeps (apiserver/pkg/endpoints/filters/warning.go), and RSS under 200 MiB over 20 such reviews."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.admission.test_http import COMPLIANT, NO_TLS, apiserver_pod, without
from tests.apiserver_client import admission_review
from tests.conftest import start_server, stop_server
from webhook.admission.app import answer_review
from webhook.admission.review import Response, bounded_warnings
from webhook.admission.verdict_cache import VerdictCache, serialize
from webhook.core.policy import load_policy

KIB = 1024


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _huge_authorization_mode(i: int) -> dict[str, Any]:
    """About 3 MB of pod, different for each i (so no review is answered from the cache): an
    `--authorization-mode` of 6,000 invalid items (55 KB, inside the reader's 64 KiB per item, so it is judged and
    every item is a finding to echo) and the rest as an annotation, which the engine never reads."""
    items = ",".join(f"Foo{n}" for n in range(i * 1000, i * 1000 + 6_000))
    pod = apiserver_pod(*without("authorization-mode"), f"--authorization-mode={items}", name=f"huge-{i}")
    pod["metadata"].setdefault("annotations", {})["bulk"] = "x" * 3_000_000
    return pod


def _many_containers(count: int) -> dict[str, Any]:
    """A pod of `count` kube-apiserver containers, each failing every control."""
    pod = apiserver_pod()
    template = pod["spec"]["containers"][0]
    pod["spec"]["containers"] = [
        {**copy.deepcopy(template), "name": f"kube-apiserver-{i}", "command": ["kube-apiserver", "--v=2"]}
        for i in range(count)
    ]
    return pod


def test_twenty_huge_reviews_keep_the_answer_and_the_servers_memory_bounded(certs_dir: Path, tmp_path: Path) -> None:
    server = start_server(certs_dir, tmp_path, "--mode", "enforce")
    try:
        client = server.client()
        start = _rss_mib(server.process.pid)
        peak = start
        for i in range(20):
            body = json.dumps(admission_review(_huge_authorization_mode(i), dry_run=True)).encode()
            assert len(body) > 3_000_000
            result = client.post("/validate?timeout=10s", body)
            assert result.status == 200
            assert len(result.body) < 64 * KIB, len(result.body)
            response = json.loads(result.body)["response"]
            assert response["allowed"] is False
            assert f"'Foo{i * 1000}'" in response["status"]["message"]  # it still says what is wrong
            assert "more" in response["status"]["message"]
            assert all(len(v) <= KIB for v in response["auditAnnotations"].values())
            peak = max(peak, _rss_mib(server.process.pid))
        client.close()
        print(f"RSS: {start:.0f} MiB at start, {peak:.0f} MiB at most over 20 reviews")  # for the closing note
        assert peak < 200, f"RSS went {start:.0f} -> {peak:.0f} MiB"
    finally:
        stop_server(server)


def test_many_failing_containers_keep_the_answer_bounded() -> None:
    pod = _many_containers(300)
    policy = load_policy(None, mode="warn")
    status, body = answer_review(policy, json.dumps(admission_review(pod)).encode(), None)
    assert status == 200 and len(body) < 64 * KIB
    response = json.loads(body)["response"]
    assert sum(len(w) for w in response["warnings"]) <= 4096
    assert "more warnings" in response["warnings"][-1]
    assert all(len(v) <= KIB for v in response["auditAnnotations"].values())
    assert response["auditAnnotations"]["verdict"] == "warned"
    denied = json.loads(answer_review(load_policy(None), json.dumps(admission_review(pod)).encode(), None)[1])
    assert len(denied["response"]["status"]["message"]) <= 16 * KIB
    assert "more findings" in denied["response"]["status"]["message"]


def test_an_answer_swollen_by_json_escapes_is_sent_compact() -> None:
    swollen = Response("uid-1", False, "apiserver-tls-guard: denied\n" + "\x01" * 16_000, 403, "Forbidden")
    body = serialize(swollen, "admission.k8s.io/v1")
    assert len(body) < 64 * KIB
    answer = json.loads(body)["response"]
    assert answer["allowed"] is False and answer["uid"] == "uid-1"
    assert answer["status"]["message"].startswith("apiserver-tls-guard: denied\n")


def test_the_verdict_cache_is_bounded_by_bytes_and_keeps_no_oversize_answer() -> None:
    policy = load_policy(None, mode="enforce")
    cache = VerdictCache(max_bytes=64 * KIB)
    for i in range(100):
        answer_review(policy, json.dumps(admission_review(apiserver_pod(*NO_TLS, name=f"p{i}"))).encode(), cache)
        assert cache.bytes <= 64 * KIB
    assert 0 < len(cache) < 100
    pod = _many_containers(50)
    big = VerdictCache()
    status, body = answer_review(policy, json.dumps(admission_review(pod)).encode(), big)
    assert status == 200 and len(body) > 32 * KIB  # past what the cache keeps
    assert len(big) == 0
    small = VerdictCache()
    answer_review(policy, json.dumps(admission_review(apiserver_pod(*COMPLIANT))).encode(), small)
    assert len(small) == 1


@pytest.mark.parametrize("size", [5, 60, 119, 120, 4000, 5000])
def test_warnings_stay_within_what_kube_apiserver_keeps_whole(size: int) -> None:
    """apiserver/pkg/endpoints/filters/warning.go: past 4 * 1024 runes in all, every warning is cut to 256."""
    kept = bounded_warnings(["w" * size] * 1000)
    assert sum(len(w) for w in kept) <= 4096
    assert "more warnings left out" in kept[-1]
