"""Availability of the chart's webhook in enforce mode (failurePolicy Fail) on the real node while reviews flow:
`kubectl rollout restart`, a replica deleted as a drain deletes it, and a replica killed outright. Every review is a
server-side dry-run create of a compliant kube-apiserver pod, which the webhook must allow; a review that fails
(the apiserver could not reach a webhook pod) is a pod a user could not create.

What keeps reviews whole: the Deployment's maxUnavailable 0 / maxSurge 1, readiness on /readyz, and the preStop
sleep (5 s) that lets the EndpointSlice controller and kube-proxy drop a terminating pod before it stops
listening. Nothing keeps them whole when a pod dies without notice: kube-proxy forwards to it until its readiness
probe fails (periodSeconds 5 x failureThreshold 2); the test counts what that costs.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from kubernetes import client

from tests.e2e.conftest import GOOD_FLAGS, apiserver_pod, unique, wait_for
from tests.e2e.node.chart import Release
from tests.e2e.node.node import Node
from webhook.kube import api_client

NAMESPACE = "guard-availability"
DEPLOYMENT = "apiserver-tls-guard"


@pytest.fixture(scope="module")
def release(node: Node) -> Iterator[Release]:
    installed = Release(node, NAMESPACE)
    installed.install("mode=enforce")
    yield installed
    installed.uninstall()


@dataclass
class Reviews:
    """A thread sending reviews back to back until stopped; failures keep their messages."""

    node: Node
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def __enter__(self) -> Reviews:
        api = client.CoreV1Api(api_client(str(self.node.kubeconfig), None))
        body = apiserver_pod("probe", GOOD_FLAGS)

        def loop() -> None:
            while not self.stopping.is_set():
                body["metadata"]["name"] = unique("probe")
                try:
                    api.create_namespaced_pod("kube-system", body, dry_run="All", _request_timeout=15)  # type: ignore[arg-type]
                except client.ApiException as err:
                    self.failures.append(f"{err.status}: {json.loads(err.body or '{}').get('message', err.body)}")
                self.sent += 1

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        assert self.thread is not None
        self.thread.join(30)


def ready_pods(release: Release) -> list[str]:
    names = []
    for pod in release.pods():
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        if conditions.get("Ready") == "True" and not pod["metadata"].get("deletionTimestamp"):
            names.append(pod["metadata"]["name"])
    return names


def report(what: str, reviews: Reviews, seconds: float) -> None:
    print(f"{what}: {reviews.sent} reviews in {seconds:.1f} s, {len(reviews.failures)} failed")
    for failure in reviews.failures[:3]:
        print(f"  {failure}")


def test_rollout_restart_fails_no_review(release: Release, node: Node) -> None:
    before = set(ready_pods(release))
    with Reviews(node) as reviews:
        time.sleep(2)
        started = time.monotonic()
        node.kubectl("rollout", "restart", f"deployment/{DEPLOYMENT}", "-n", NAMESPACE, check=True)
        node.kubectl("rollout", "status", f"deployment/{DEPLOYMENT}", "-n", NAMESPACE, "--timeout=180s",
                     check=True, timeout=200)  # fmt: skip
        wait_for(lambda: len(ready_pods(release)) == 2 and not before & set(ready_pods(release)), 60, "new pods")
        seconds = time.monotonic() - started
        time.sleep(6)  # the old pods' preStop and drain end inside this
    report("rollout restart", reviews, seconds)
    assert reviews.sent > 20
    assert reviews.failures == []


def test_a_deleted_replica_fails_no_review(release: Release, node: Node) -> None:
    victim = ready_pods(release)[0]
    with Reviews(node) as reviews:
        time.sleep(2)
        started = time.monotonic()
        node.kubectl("delete", "pod", victim, "-n", NAMESPACE, "--wait=true", check=True, timeout=90)
        wait_for(lambda: len(ready_pods(release)) == 2, 90, "a replacement pod")
        seconds = time.monotonic() - started
    report("one replica deleted (graceful, as a drain)", reviews, seconds)
    assert reviews.failures == []


def test_a_killed_replica_costs_reviews_until_readiness_drops_it(release: Release, node: Node) -> None:
    """SIGKILL of one webhook container: measured, not required to be zero (nothing can be, without notice)."""
    victim = ready_pods(release)[0]
    pod = json.loads(node.kubectl("get", "pod", victim, "-n", NAMESPACE, "-o", "json", check=True).stdout)
    [status] = pod["status"]["containerStatuses"]
    container_id = status["containerID"].split("://", 1)[1]

    def restarted_and_ready() -> bool:
        [now] = [p for p in release.pods() if p["metadata"]["name"] == victim]
        return bool(now["status"]["containerStatuses"][0]["restartCount"] > status["restartCount"]) and (
            victim in ready_pods(release)
        )

    with Reviews(node) as reviews:
        time.sleep(2)
        started = time.monotonic()
        node.ctr("task", "kill", "--signal", "SIGKILL", container_id)
        wait_for(restarted_and_ready, 120, "the killed container's restart")
        seconds = time.monotonic() - started
        time.sleep(2)
    report("one replica SIGKILLed", reviews, seconds)
    assert reviews.sent > 0
