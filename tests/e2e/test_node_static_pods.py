"""Static pods run by the real kubelet, with the chart installed in enforce mode: the kubelet creates each static
pod's mirror pod as `system:node:<node>` (NodeRestriction admits it), and that create is what the webhook judges.

- A compliant kube-apiserver static pod gets its mirror pod, judged clean.
- A non-compliant one still runs on the node (the kubelet never asks the API whether it may run a static pod:
  pkg/kubelet/config/file.go reads it from disk) while its mirror pod is denied and absent from the API. The
  kubelet retries the mirror pod at every sync of the pod (pkg/kubelet/kubelet.go, SyncPod, "Failed creating a
  mirror pod"); the test measures how often, and what that costs the webhook.
- A live policy change from enforce to warn (`helm upgrade --set mode=warn`) lets a denied mirror pod in, at the
  kubelet's next try: the test measures how long after the change.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import BAD_FLAGS, GOOD_FLAGS, unique, wait_for
from tests.e2e.node.apiservers import container_pid, flags, static_pod, write_pki
from tests.e2e.node.chart import Release, in_force
from tests.e2e.node.node import NODE_NAME, Node

NAMESPACE = "guard-static"
WINDOW = 75.0  # seconds of a denied mirror pod, long enough for the kubelet's one-minute resync
CACHE = "tlsguard_verdict_cache_lookups_total"
# klog's header: E1201 23:10:01.123456   12345 kubelet.go:1234] "Failed creating a mirror pod" ...
KLOG_TIME = re.compile(r"^[IWEF]\d{4} (\d\d:\d\d:\d\d\.\d{6})")
SWITCH_PORT = 16443  # the running static kube-apiserver's port, on the node's network


@pytest.fixture(scope="module")
def release(node: Node) -> Iterator[Release]:
    installed = Release(node, NAMESPACE)
    installed.install("mode=enforce")
    yield installed
    installed.uninstall()


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
    node.write_static_pod(name, static_pod(name, GOOD_FLAGS))
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
    node.write_static_pod(name, static_pod(name, BAD_FLAGS))
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


def kubelet_creates(node: Node, mirror_name: str) -> list[float]:
    """When the kubelet tried to create this mirror pod (its "Creating a mirror pod for static pod" lines)."""
    lines = node.log("kubelet").read_text(errors="replace").splitlines()
    wanted = f'pod="kube-system/{mirror_name}"'
    return [_seconds(line) for line in lines if "Creating a mirror pod for static pod" in line and wanted in line]


KUBEADM_POLL = 0.5  # kubeadm's KubernetesAPICallRetryInterval (cmd/kubeadm/app/constants/constants.go)
UPGRADE_TIMEOUT = 40.0  # kubeadm waits UpgradeManifestsTimeout, 5 minutes; the outcome is the same, sooner
UPGRADE_PORT = 16444


def mirror_hash(node: Node, mirror_name: str) -> str | None:
    """What kubeadm's getStaticPodSingleHash reads: the mirror pod's kubernetes.io/config.hash, or None (404)."""
    pod = mirror(node, mirror_name)
    return pod["metadata"]["annotations"]["kubernetes.io/config.hash"] if pod else None


def wait_hash_change(node: Node, mirror_name: str, before: str, timeout: float) -> tuple[str | None, float, int]:
    """kubeadm upgrade's WaitForStaticPodHashChange (cmd/kubeadm/app/util/apiclient/wait.go): poll the mirror pod
    every 0.5 s until its hash differs from `before`; a missing mirror pod is an error it keeps polling through.
    (the new hash or None on timeout, seconds waited, polls that found no mirror pod)."""
    started = time.monotonic()
    missing = 0
    while time.monotonic() - started < timeout:
        now = mirror_hash(node, mirror_name)
        if now is None:
            missing += 1
        elif now != before:
            return now, time.monotonic() - started, missing
        time.sleep(KUBEADM_POLL)
    return None, time.monotonic() - started, missing


def test_a_kubeadm_style_upgrade_waits_for_the_mirror_pod_and_rolls_back_a_denied_one(
    node: Node, release: Release, tmp_path: Path
) -> None:
    """What `kubeadm upgrade apply` does per component (cmd/kubeadm/app/phases/upgrade/staticpods.go,
    upgradeComponent), done here by hand on a running kube-apiserver static pod: move the new manifest into the
    manifests folder, wait for the mirror pod's config hash to change (WaitForStaticPodHashChange), and on timeout
    move the old manifest back (rollbackOldManifests). A compliant upgrade passes; a non-compliant one never gets
    a mirror pod in enforce mode, so the wait times out and the rollback restores the old apiserver."""
    pki_dir = tmp_path / "pki"
    write_pki(node, pki_dir)
    name = unique("kube-apiserver-upgrade")
    mirror_name = f"{name}-{NODE_NAME}"
    base = flags(name, compliant=True, port=UPGRADE_PORT)
    old = static_pod(name, base, pki_dir)
    node.write_static_pod(name, old)
    try:
        before = wait_for(lambda: mirror_hash(node, mirror_name), 60, f"the mirror pod {mirror_name}")
        # A compliant upgrade (one more flag, as a version bump changes the manifest): the hash changes.
        compliant = static_pod(name, [*base, "--v=1"], pki_dir)
        node.write_static_pod(name, compliant)
        upgraded, seconds, missing = wait_hash_change(node, mirror_name, before, UPGRADE_TIMEOUT)
        print(f"kubeadm-style upgrade, compliant manifest: mirror pod hash changed after {seconds:.1f} s "
              f"({missing} polls found no mirror pod)")  # fmt: skip
        assert upgraded is not None
        # A non-compliant one (the serving pair dropped): the kubelet deletes the old mirror pod, the new one is
        # denied, and kubeadm's Get finds nothing until its timeout.
        dropped = [f for f in base if not f.startswith(("--tls-cert-file", "--tls-private-key-file"))]
        node.write_static_pod(name, static_pod(name, [*dropped, "--v=1"], pki_dir))
        new_hash, seconds, missing = wait_hash_change(node, mirror_name, upgraded, UPGRADE_TIMEOUT)
        running = container_pid(node, mirror_name)
        records = kubelet_records(node, mirror_name)
        deleted = any(
            "Deleted mirror pod as it didn't match the static Pod" in line and f"kube-system/{mirror_name}" in line
            for line in node.log("kubelet").read_text(errors="replace").splitlines()
        )
        print(f"kubeadm-style upgrade, non-compliant manifest: no new mirror pod hash after {seconds:.0f} s "
              f"({missing} of the polls found no mirror pod); the kubelet deleted the old mirror pod: {deleted}; "
              f"{len(records)} denied creates; the non-compliant kube-apiserver ran meanwhile: "
              f"{running is not None}")  # fmt: skip
        assert new_hash is None
        assert missing > 0 and deleted and records
        assert all("denied the request" in r for r in records)
        # Rollback: the old manifest back in place; its mirror pod (compliant) is admitted again.
        started = time.monotonic()
        node.write_static_pod(name, compliant)
        restored = wait_for(lambda: mirror_hash(node, mirror_name) == upgraded, 120, "the rolled-back mirror pod")
        print(f"rollback: the previous mirror pod back after {time.monotonic() - started:.1f} s")
        assert restored
    finally:
        remove_static(node, name)


# Last in the module: it turns the module's release to warn mode.
def test_a_live_change_to_warn_lets_the_denied_mirror_pod_in(node: Node, release: Release, tmp_path: Path) -> None:
    """A non-compliant kube-apiserver that really runs (its etcd reached, a self-signed certificate), its mirror
    pod denied; then `helm upgrade --set mode=warn`. The kubelet retries a running pod's mirror pod only when it
    syncs the pod: on its container events, then every syncFrequency (1 min) stretched by a jitter of up to 50 %
    (pkg/kubelet/pod_workers.go, completeWork: wait.Jitter(resyncInterval, 0.5)). So the mirror pod appears at
    that next sync, up to 90 s after the last denial, not when the policy changes."""
    pki_dir = tmp_path / "pki"
    write_pki(node, pki_dir)
    name = unique("kube-apiserver-switch")
    mirror_name = f"{name}-{NODE_NAME}"
    node.write_static_pod(name, static_pod(name, flags(name, compliant=False, port=SWITCH_PORT), pki_dir))
    try:
        wait_for(lambda: kubelet_records(node, mirror_name), 60, "the kubelet's mirror-pod failure")
        time.sleep(3)  # the denials that follow the container's start (PLEG events) come within ~2 s
        denials = kubelet_records(node, mirror_name)
        assert all("denied the request" in line for line in denials), denials
        pid = wait_for(lambda: container_pid(node, mirror_name), 60, "the static kube-apiserver's process")
        started = time.monotonic()
        upgrade_seconds = release.upgrade("mode=warn")
        settled = in_force(node, "warn")
        pod = wait_for(lambda: mirror(node, mirror_name), 150, f"the mirror pod {mirror_name} after the switch")
        appeared = time.monotonic() - started
        creates = kubelet_creates(node, mirror_name)
        last_denial = _seconds(denials[-1])
        print(
            f"enforce -> warn: helm upgrade --wait {upgrade_seconds:.1f} s, warn answering every review "
            f"{settled:.1f} s later; the mirror pod appeared {appeared:.1f} s after the change, at the kubelet's "
            f"try {creates[-1] - last_denial:.1f} s after its last denial ({len(denials)} denied tries before)"
        )
        assert "kubernetes.io/config.mirror" in pod["metadata"]["annotations"]
        [decision] = [d for d in release.decisions(mirror_name) if d["verdict"] != "denied"]
        assert decision["verdict"] == "warned", decision
        # The same process ran throughout: the denial never stopped it, the switch never restarted it.
        assert container_pid(node, mirror_name) == pid
    finally:
        remove_static(node, name)
