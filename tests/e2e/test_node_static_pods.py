"""Static pods run by the real kubelet, with the chart installed in enforce mode: the kubelet creates each static
pod's mirror pod as `system:node:<node>` (NodeRestriction admits it), and that create is what the webhook judges.

- A compliant kube-apiserver static pod gets its mirror pod, judged clean.
- A non-compliant one still runs on the node (the kubelet never asks the API whether it may run a static pod:
  pkg/kubelet/config/file.go reads it from disk) while its mirror pod is denied and absent from the API. The
  kubelet retries the mirror pod at every sync of the pod (pkg/kubelet/kubelet.go, SyncPod, "Failed creating a
  mirror pod"); the test measures how often, and what that costs the webhook.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import BAD_FLAGS, GOOD_FLAGS, apiserver_pod, unique, wait_for
from tests.e2e.node.chart import Release
from tests.e2e.node.node import APISERVER_IMAGE, NODE_NAME, Node

NAMESPACE = "guard-static"
WINDOW = 75.0  # seconds of a denied mirror pod, long enough for the kubelet's one-minute resync
CACHE = "tlsguard_verdict_cache_lookups_total"
# klog's header: E1201 23:10:01.123456   12345 kubelet.go:1234] "Failed creating a mirror pod" ...
KLOG_TIME = re.compile(r"^[IWEF]\d{4} (\d\d:\d\d:\d\d\.\d{6})")


@pytest.fixture(scope="module")
def release(node: Node) -> Iterator[Release]:
    installed = Release(node, NAMESPACE)
    installed.install("mode=enforce")
    yield installed
    installed.uninstall()


def static_apiserver(name: str, flags: list[str]) -> dict[str, Any]:
    """A kube-apiserver static pod as kubeadm writes one (host network, node-critical), of the image built here."""
    pod = apiserver_pod(name, flags)
    pod["metadata"]["labels"]["tier"] = "control-plane"
    # kubeadm sets both: without `priority` the kubelet warns that the mirror pod's create may fail (Priority
    # admission), pkg/kubelet/config/common.go.
    pod["spec"].update({"hostNetwork": True, "priorityClassName": "system-node-critical", "priority": 2000001000})
    pod["spec"]["containers"][0]["image"] = APISERVER_IMAGE
    return pod


def mirror(node: Node, name: str) -> dict[str, Any] | None:
    result = node.kubectl("get", "pod", name, "-n", "kube-system", "-o", "json")
    return json.loads(result.stdout) if result.returncode == 0 else None


def kubelet_records(node: Node, mirror_name: str) -> list[str]:
    """The kubelet's "Failed creating a mirror pod" records for this pod. klog writes an error with newlines (the
    webhook's message has some) as `err=<` ... `>` over several lines: a record runs to the next header."""
    records: list[str] = []
    for line in node.log("kubelet").read_text(errors="replace").splitlines():
        if KLOG_TIME.match(line) or not records:
            records.append(line)
        else:
            records[-1] += "\n" + line
    return [r for r in records if "Failed creating a mirror pod" in r and f'pod="kube-system/{mirror_name}"' in r]


def remove_static(node: Node, name: str) -> None:
    (node.static_pods / f"{name}.json").unlink(missing_ok=True)


def test_a_compliant_static_pod_gets_its_mirror_pod_judged_clean(node: Node, release: Release) -> None:
    name = unique("kube-apiserver-good")
    mirror_name = f"{name}-{NODE_NAME}"
    node.write_static_pod(name, static_apiserver(name, GOOD_FLAGS))
    try:
        pod = wait_for(lambda: mirror(node, mirror_name), 60, f"the mirror pod {mirror_name}")
        assert "kubernetes.io/config.mirror" in pod["metadata"]["annotations"]
        [decision] = wait_for(lambda: release.decisions(mirror_name), 10, "the webhook's decision")
        assert decision["verdict"] == "clean", decision
        assert decision["operation"] == "CREATE"
        events = [json.loads(line) for line in node.audit_log.read_text().splitlines()]
        [create] = [
            e for e in events
            if (e.get("objectRef") or {}).get("name") == mirror_name and e["verb"] == "create"
            and e["stage"] == "ResponseComplete"
        ]  # fmt: skip
        assert create["user"]["username"] == f"system:node:{NODE_NAME}"
        assert create["responseStatus"]["code"] == 201
    finally:
        remove_static(node, name)


def _seconds(line: str) -> float:
    match = KLOG_TIME.match(line)
    assert match, line
    clock = dt.datetime.strptime(match.group(1), "%H:%M:%S.%f")
    return clock.hour * 3600 + clock.minute * 60 + clock.second + clock.microsecond / 1e6


def test_a_non_compliant_static_pod_runs_while_its_mirror_pod_is_denied(node: Node, release: Release) -> None:
    name = unique("kube-apiserver-bad")
    mirror_name = f"{name}-{NODE_NAME}"
    before = release.metric(CACHE)
    started = time.monotonic()
    node.write_static_pod(name, static_apiserver(name, BAD_FLAGS))
    try:
        [first, *_] = wait_for(lambda: kubelet_records(node, mirror_name), 60, "the kubelet's mirror-pod failure")
        print(f"kubelet log:\n{first}")
        time.sleep(max(0.0, WINDOW - (time.monotonic() - started)))
        elapsed = time.monotonic() - started
        lines = kubelet_records(node, mirror_name)
        decisions = release.decisions(mirror_name)
        after = release.metric(CACHE)
        assert mirror(node, mirror_name) is None
        assert decisions and all(d["verdict"] == "denied" for d in decisions)
        # The kubelet ran it anyway: containerd holds the pod's sandbox and its kube-apiserver container.
        listed = node.ctr("containers", "list", f'labels."io.kubernetes.pod.name"=={mirror_name}').stdout
        containers = listed.splitlines()[1:]
        assert containers, listed
        times = [_seconds(line) for line in lines]
        gaps = [round(b - a, 1) for a, b in itertools.pairwise(times)]
        hits = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
        print(
            f"over {elapsed:.0f} s: {len(lines)} failed mirror-pod creates in the kubelet's log, gaps {gaps} s; "
            f"{len(decisions)} reviews of {mirror_name} ({len(decisions) * 60 / elapsed:.1f} per minute); "
            f"cache lookups since the start: {hits}; containers on the node: {len(containers)}"
        )
        assert len(lines) >= 2  # it retries
        # Every failure is the webhook's denial; one that is not (the Service unreachable) would be a defect.
        assert all("denied the request" in line for line in lines), [line for line in lines if "denied" not in line]
    finally:
        remove_static(node, name)
