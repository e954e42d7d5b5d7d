"""What kube-apiserver sends us, decided by the real kube-apiserver with the enforce overlay's configuration (served by
`url`, as tests/e2e/conftest.py explains): every fixture the engine denies is denied through it, whichever
container list or expansion runs the kube-apiserver; pods that only an expansion could make an apiserver fail
open while we are down; and the largest object still scanned stays inside kube-apiserver's CEL cost limit,
measured.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.admission.test_corpus import EXPECTED, corpus_objects
from tests.commands.test_prefilter import BAD, FORMS, OTHERS, PAUSE, as_workload, container, fixtures, with_spec
from tests.conftest import requires_shared
from tests.e2e.conftest import (
    WEBHOOK_CONFIG,
    Registered,
    RegisterFactory,
    as_kube_system_pod,
    overlay_config,
    unique,
    wait_for,
)
from webhook.commands import prefilter
from webhook.core.engine import evaluate
from webhook.core.policy import Mode, load_policy

POLICY = load_policy(None, mode="enforce")
HOSTED = "hosted-prefilter"
DENIED = 'admission webhook "{}" denied the request'


@pytest.fixture(scope="module")
def enforce(registered: RegisterFactory) -> Registered:
    guard = registered("enforce", "enforce")
    kubectl = guard.control_plane.kubectl
    kubectl("create", "namespace", HOSTED)
    kubectl("label", "namespace", HOSTED, "apiserver-tls-guard.io/hosted-control-plane=true", "--overwrite", check=True)
    return guard


def _named(obj: dict[str, Any], prefix: str, namespace: str = "kube-system") -> dict[str, Any]:
    obj = json.loads(json.dumps(obj))
    obj["metadata"] = {**obj.get("metadata", {}), "name": unique(prefix), "namespace": namespace}
    return obj


def _dry_run(guard: Registered, obj: dict[str, Any]) -> tuple[int, str]:
    result = guard.control_plane.kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(obj))
    return result.returncode, result.stderr


def _denies(obj: dict[str, Any]) -> bool:
    return bool(evaluate(obj, POLICY).by_mode(Mode.ENFORCE))


def _add_ephemeral(guard: Registered, obj: dict[str, Any]) -> tuple[int, str]:
    """Create the pod without its ephemeral containers (they cannot be set on create), then add them the way
    `kubectl debug` does: an UPDATE of the pods/ephemeralcontainers subresource."""
    ephemeral = obj["spec"].pop("ephemeralContainers")
    kubectl = guard.control_plane.kubectl
    kubectl("create", "-f", "-", stdin=json.dumps(obj), check=True)
    patch = json.dumps({"spec": {"ephemeralContainers": ephemeral}})
    result = kubectl("patch", "pod", obj["metadata"]["name"], "-n", obj["metadata"]["namespace"],
                     "--subresource=ephemeralcontainers", "--type=strategic", "-p", patch)  # fmt: skip
    return result.returncode, result.stderr


def _subjects() -> list[tuple[str, dict[str, Any]]]:
    subjects = list(fixtures())
    if EXPECTED:
        subjects += [(f"corpus: {name}", as_kube_system_pod(corpus_objects(name)[0], "x")) for name in sorted(EXPECTED)]
    return subjects


@requires_shared()
def test_every_pod_the_engine_denies_is_denied_through_kube_apiserver(enforce: Registered) -> None:
    denied, reached, rows = 0, 0, []
    for label, fixture in _subjects():
        obj = _named(fixture, "pre")
        name = obj["metadata"]["name"]
        engine_denies, engine_finds = _denies(obj), evaluate(obj, POLICY).runs_apiserver
        if "ephemeralContainers" in obj["spec"]:
            code, stderr = _add_ephemeral(enforce, obj)
        else:
            code, stderr = _dry_run(enforce, obj)
        sent = enforce.reached(name)
        rows.append((label, engine_finds, engine_denies, sent, code != 0))
        if engine_denies:
            assert code == 1 and any(DENIED.format(h) in stderr for h in (
                "pods.apiserver-tls-guard.io", "expansions.apiserver-tls-guard.io")), (label, stderr)  # fmt: skip
            denied += 1
        # Judged by the engine today, or not yet (plain init and ephemeral containers, unreadable apiserver
        # images): kube-apiserver sends it either way.
        assert sent, (label, stderr)
        reached += 1
    print("\n| fixture | engine finds | engine denies | sent | refused |\n|---|---|---|---|---|")
    print("\n".join(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} |" for r in rows))
    assert denied > 20 and reached == len(rows)


def test_every_workload_the_engine_denies_is_denied_through_kube_apiserver(enforce: Registered) -> None:
    for label, fixture in fixtures():
        if "ephemeralContainers" in fixture["spec"]:
            continue
        obj = _named(as_workload(fixture, "Deployment"), "wl", HOSTED)
        code, stderr = _dry_run(enforce, obj)
        assert enforce.reached(obj["metadata"]["name"]), label
        if _denies(obj):
            assert code == 1 and DENIED.format("workloads.apiserver-tls-guard.io") in stderr, (label, stderr)


def _loaded(text: int, quoted: bool, containers: int = 1) -> dict[str, Any]:
    """A kube-apiserver that only an expansion names, in each of `containers` containers, with `text` characters in
    all and as many items as the guard lets through: the expansion webhook (failurePolicy Ignore) must still
    evaluate it, or kube-apiserver would skip it silently. `quoted`: a quote in every item, so that the costlier
    unquoting path runs on each."""
    env = [{"name": "A", "value": "kube"}]
    command = ["/usr/local/bin/$(A)-apiserver", *BAD]
    items = prefilter.MAX_ITEMS - len(command) - len(env)
    fixed = sum(map(len, command)) + len("kube") + len(container()["image"])
    length = (text // containers - fixed) // items
    arg = ("'" if quoted else "x") + "x" * (length - 1)
    spec = [container(name=f"c{i}", command=command, args=[arg] * items, env=env) for i in range(containers)]
    return with_spec({"containers": spec})


def test_the_largest_object_still_scanned_is_inside_the_cost_limit(enforce: Registered) -> None:
    """Below the limits every text is scanned and the expansion webhook is reached; above, the first webhook
    sends the object unscanned. Either way kube-apiserver never gives up on the condition."""
    for quoted in (True, False):
        for containers in (1, prefilter.MAX_CONTAINERS):
            obj = _named(_loaded(prefilter.MAX_TEXT - 4096, quoted, containers), "cost")
            code, stderr = _dry_run(enforce, obj)
            assert code == 1 and DENIED.format("expansions.apiserver-tls-guard.io") in stderr, stderr[-2000:]
    big = _named(_loaded(prefilter.MAX_TEXT + 8192, quoted=True), "cost-big")
    code, stderr = _dry_run(enforce, big)
    assert code == 1 and DENIED.format("pods.apiserver-tls-guard.io") in stderr, stderr[-2000:]


def _cost_limit_reached(guard: Registered, size: int) -> bool:
    """Whether kube-apiserver gives up on the unguarded scan of a `size`-character object (failurePolicy Fail: it
    says so in the answer)."""
    code, stderr = _dry_run(guard, _named(_loaded(size, quoted=True), "probe"))
    return code == 1 and "cost limit exceeded" in stderr  # cel-go: "operation cancelled: actual cost limit exceeded"


@pytest.fixture
def unguarded(enforce: Registered) -> Iterator[Registered]:
    """A webhook configuration of its own whose condition is the expansion scan with the size guard lifted."""
    config = overlay_config("enforce", enforce.server, enforce.control_plane)
    [hook] = [w for w in config["webhooks"] if w["name"] == "expansions.apiserver-tls-guard.io"]
    expression = hook["matchConditions"][0]["expression"].replace(f"> {prefilter.MAX_TEXT}", "> 100000000")
    hook.update(name="probe.apiserver-tls-guard.io", failurePolicy="Fail")
    hook["matchConditions"][0]["expression"] = expression
    probe = {**config, "metadata": {"name": "cost-probe"}, "webhooks": [hook]}
    kubectl = enforce.control_plane.kubectl
    kubectl("apply", "-f", "-", stdin=json.dumps(probe), check=True)
    wait_for(lambda: _cost_limit_reached(enforce, 2_400_000), what="the cost probe to be in force")
    yield enforce
    kubectl("delete", "validatingwebhookconfiguration", "cost-probe")


def test_cost_of_a_scan_measured_on_kube_apiserver(unguarded: Registered) -> None:
    """The size at which kube-apiserver's per-expression limit (1,000,000) stops the unguarded scan, found by
    bisection: MAX_TEXT must stay well below it."""
    low, high = prefilter.MAX_TEXT, 2_400_000
    assert not _cost_limit_reached(unguarded, low)
    while high - low > 16_384:
        middle = (low + high) // 2
        low, high = (low, middle) if _cost_limit_reached(unguarded, middle) else (middle, high)
    print(f"\nthe unguarded scan hits kube-apiserver's cost limit at about {high} characters; "
          f"MAX_TEXT is {prefilter.MAX_TEXT} ({high / prefilter.MAX_TEXT:.1f}x margin)")  # fmt: skip
    assert high > 2 * prefilter.MAX_TEXT


def test_while_we_are_down_only_expansion_pods_fail_open(enforce: Registered) -> None:
    """The configuration pointed at a port nobody serves: pods that name kube-apiserver are refused
    (failurePolicy Fail), CNI-like pods with shell variables are admitted (the expansion webhook fails open), so
    the network a restarting webhook needs is never blocked by it."""
    config = overlay_config("enforce", enforce.server, enforce.control_plane)
    for hook in config["webhooks"]:
        hook["clientConfig"]["url"] = "https://127.0.0.1:9/validate"
    kubectl = enforce.control_plane.kubectl
    kubectl("apply", "-f", "-", stdin=json.dumps(config), check=True)
    try:
        named = FORMS["double-quotes-in-a-script"]
        wait_for(lambda: "failed calling webhook" in _dry_run(enforce, _named(named, "down"))[1], what="the outage")
        for label, other in OTHERS.items():
            code, stderr = _dry_run(enforce, _named(other, "other"))
            assert code == 0, (label, stderr)
        code, stderr = _dry_run(enforce, _named(FORMS["name-made-of-env-pieces"], "down"))
        assert code == 0 and "Warning" not in stderr  # the price of no deadlock: admitted while we are down
        for form in ("plain-init-container", "program-from-env", "backslash-in-a-script"):
            code, stderr = _dry_run(enforce, _named(FORMS[form], "down"))
            assert code == 1 and 'failed calling webhook "pods.apiserver-tls-guard.io"' in stderr, (form, stderr)
        # What the alerts on kube-apiserver's own view read (charts/apiserver-tls-guard/files/alerts.yaml).
        metrics = _apiserver_metrics(enforce)
        assert 'apiserver_admission_webhook_fail_open_count{name="expansions.apiserver-tls-guard.io"' in metrics
        assert re.search(r'apiserver_admission_webhook_rejection_count\{[^}]*error_type="calling_webhook_error"'
                         r'[^}]*name="pods.apiserver-tls-guard.io"', metrics)  # fmt: skip
        assert "apiserver_admission_webhook_admission_duration_seconds_bucket{" in metrics
    finally:
        restored = overlay_config("enforce", enforce.server, enforce.control_plane)
        kubectl("apply", "-f", "-", stdin=json.dumps(restored), check=True)
        time.sleep(1)
        kubectl("get", "validatingwebhookconfiguration", WEBHOOK_CONFIG, check=True)


def _apiserver_metrics(guard: Registered) -> str:
    apiserver = guard.control_plane.apiserver
    assert apiserver is not None
    with urllib.request.urlopen(f"{apiserver.url}/metrics", context=apiserver.admin_context(), timeout=10) as r:
        return str(r.read().decode())


def test_a_pause_pod_is_not_sent(enforce: Registered) -> None:
    obj = _named(with_spec({"containers": [PAUSE]}), "pause")
    code, stderr = _dry_run(enforce, obj)
    assert code == 0, stderr
    sentinel = _named(FORMS["program-from-env"], "sentinel")
    _dry_run(enforce, sentinel)
    assert enforce.reached(sentinel["metadata"]["name"]) and not enforce.reached(obj["metadata"]["name"])
