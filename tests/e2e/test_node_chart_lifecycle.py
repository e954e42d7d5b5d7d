"""Upgrade and uninstall of the chart on the real node, as an operator runs them (issue 24, "Done when"):

- `helm upgrade --atomic` to an image no node can pull: the new pod never gets Ready, helm times out and rolls
  back, and the release's webhook keeps answering in enforce mode throughout (maxUnavailable 0 keeps the old
  pods; failurePolicy Fail would turn any gap into a refused pod);
- `helm uninstall --wait` with its pre-delete hook and no fallback: the hook's Job (our image, its own
  ServiceAccount) removes the webhook configuration first, then the CA Secret, and helm deletes the Job on success.

The control-plane suite (tests/e2e/test_chart_lifecycle_e2e.py) proves the hook's API calls with the hook's
credentials where no kubelet runs; here the kubelet really runs the hook's pod.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import BAD_FLAGS, apiserver_pod, unique, wait_for
from tests.e2e.node.chart import CHART, WEBHOOK_CONFIG, Release, helm
from tests.e2e.node.image import published
from tests.e2e.node.node import Node
from tests.e2e.test_node_availability import Reviews, ready_pods

NAMESPACE = "guard-lifecycle"
SECRET = "apiserver-tls-guard-certs"
MISSING_TAG = "0.0.0-not-published"


@pytest.fixture(scope="module")
def release(node: Node) -> Iterator[Release]:
    installed = Release(node, NAMESPACE)
    installed.install("mode=enforce")
    yield installed
    if helm(node, "status", "guard", "--namespace", NAMESPACE).returncode == 0:  # a test failed before uninstall
        installed.uninstall()


def denied(node: Node) -> bool:
    body = json.dumps(apiserver_pod(unique("bad"), BAD_FLAGS))
    result = node.kubectl("create", "--dry-run=server", "-f", "-", stdin=body)
    return result.returncode != 0 and "denied the request" in result.stderr


def test_upgrade_atomic_to_an_image_that_cannot_be_pulled_rolls_back_and_never_stops_guarding(
    release: Release, node: Node
) -> None:
    with Reviews(node) as reviews:
        result = helm(node, "upgrade", "guard", str(CHART), "--namespace", NAMESPACE, "--reuse-values",
                      "--set", f"image.tag={MISSING_TAG}", "--atomic", "--timeout", "45s", timeout=240)  # fmt: skip
    assert result.returncode != 0, "helm upgrade to an image nobody can pull succeeded"
    assert "rolled back" in result.stderr, result.stderr
    history = json.loads(helm(node, "history", "guard", "--namespace", NAMESPACE, "-o", "json").stdout)
    assert [entry["status"] for entry in history][-2:] == ["failed", "deployed"], history
    assert history[-1]["description"].startswith("Rollback to 1"), history[-1]
    # The old pods served throughout: every review sent during the failed upgrade and its rollback was answered.
    print(f"helm upgrade --atomic (unpullable tag), rollback: {reviews.sent} reviews, {len(reviews.failures)} failed")
    assert reviews.sent > 0
    assert reviews.failures == [], reviews.failures[:3]

    # The failed revision's pod (ErrImagePull) is deleted by the rollback: only the release's own pods stay.
    def settled() -> list[dict[str, object]] | None:
        pods = release.pods()
        return pods if len(pods) == 2 and len(ready_pods(release)) == 2 else None

    pods = wait_for(settled, 60, "the rolled-back release's two Ready pods alone")
    assert {c["image"] for p in pods for c in p["spec"]["containers"]} == {published()}
    assert denied(node)


def test_uninstall_runs_its_pre_delete_hook_and_leaves_nothing_of_ours(release: Release, node: Node) -> None:
    result, seconds = release.uninstall_strictly()
    assert result.returncode == 0, f"helm uninstall failed:\n{result.stderr}\n{release.hook_logs()}"
    print(f"helm uninstall --wait with the pre-delete hook: {seconds:.1f} s")
    gone = node.kubectl("get", "validatingwebhookconfiguration", WEBHOOK_CONFIG)
    assert gone.returncode != 0 and "NotFound" in gone.stderr, gone.stdout
    secret = node.kubectl("get", "secret", SECRET, "-n", NAMESPACE)
    assert secret.returncode != 0 and "NotFound" in secret.stderr, secret.stdout
    jobs = node.kubectl("get", "jobs", "-n", NAMESPACE, "-o", "name")
    assert jobs.stdout.strip() == "", f"the hook's Job was left behind: {jobs.stdout}"
    # Nothing is guarded any more, and nothing is refused for want of a webhook (no failed-calling denials).
    body = json.dumps(apiserver_pod(unique("bad"), BAD_FLAGS))
    after = node.kubectl("create", "--dry-run=server", "-f", "-", stdin=body)
    assert after.returncode == 0, after.stderr
    node.kubectl("delete", "namespace", NAMESPACE, "--wait=false")
