"""Every corpus manifest created as a kube-system Pod through real kubectl and the real kube-apiserver, with our
overlays registered: enforce denies with our message as kubectl prints it; warn prints `Warning:` lines (also on
`kubectl apply --dry-run=server`); audit mode leaves `<webhook>/<control>` annotations in the real audit log.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.admission.test_corpus import EXPECTED, corpus_objects, judged_keys
from tests.conftest import CORPUS, corpus_cases, requires_shared
from tests.e2e.conftest import Registered, RegisterFactory, as_kube_system_pod, audit_events, unique, wait_for
from webhook.core.catalog import load_catalog

pytestmark = requires_shared()
CATALOG = load_catalog()
SCORED = {c.key for c in CATALOG.controls if c.scored}
POD_WEBHOOK = "pods.apiserver-tls-guard.io"
CORPUS_FILES = corpus_cases(sorted(EXPECTED))


def _pod(name: str) -> tuple[dict[str, Any], set[str]]:
    [obj] = corpus_objects(name)
    expected = EXPECTED[name]
    want_fail = {k for k in judged_keys(expected) if expected[k] == "fail"}
    return as_kube_system_pod(obj, unique("corpus")), want_fail


def _our_warnings(stderr: str) -> list[str]:
    """kubectl's `Warning:` lines that are ours (the apiserver adds its own, e.g. for deprecated annotations)."""
    prefixes = ("Warning: CIS ", *(f"Warning: {key} " for key in CATALOG.keys))
    return [line for line in stderr.splitlines() if line.startswith(prefixes)]


def test_the_corpus_is_here() -> None:
    assert CORPUS.is_dir() and len(EXPECTED) >= 20


@pytest.fixture(scope="module")
def enforce(registered: RegisterFactory) -> Registered:
    return registered("enforce", "enforce")


def _our_annotations(registered: Registered, pod_name: str) -> dict[str, str]:
    """Our annotations on the create's audit event, keyed by control (denied requests are audited too)."""

    def annotated() -> dict[str, str]:
        for event in audit_events(registered.control_plane, pod_name):
            if event["verb"] == "create" and event["stage"] == "ResponseComplete" and event.get("annotations"):
                return dict(event["annotations"])
        return {}

    annotations = wait_for(annotated, what=f"the audit event of {pod_name}")
    return {k.split("/", 1)[1]: v for k, v in annotations.items() if k.startswith(f"{POD_WEBHOOK}/")}


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_enforce_denies_the_failing_corpus_pods(name: str, enforce: Registered) -> None:
    pod, want_fail = _pod(name)
    pod_name = pod["metadata"]["name"]
    result = enforce.control_plane.kubectl("create", "-f", "-", stdin=json.dumps(pod))
    ours = _our_annotations(enforce, pod_name)
    assert set(ours) & set(judged_keys(EXPECTED[name])) == want_fail
    if want_fail & SCORED:
        assert result.returncode == 1, result.stdout
        assert f'admission webhook "{POD_WEBHOOK}" denied the request: apiserver-tls-guard:' in result.stderr
        for key in want_fail & SCORED:
            assert f"CIS {CATALOG.control(key).cis_id('1.5.1')} (benchmark v1.5.1)" in result.stderr, key
        assert ours["verdict"] == "denied"
    # Controls outside the corpus's keys (Node authorizer, admission plugins, ...) may deny the others; whatever
    # the answer, kubectl's exit status and our verdict agree.
    assert (result.returncode != 0) == (ours["verdict"] == "denied"), result.stderr
    if result.returncode == 0:
        enforce.control_plane.kubectl("delete", "pod", "-n", "kube-system", pod_name, "--wait=false")
    assert enforce.reached(pod_name), "the apiserver never sent this apiserver pod to the webhook"


@pytest.fixture(scope="module")
def warn(registered: RegisterFactory, enforce: Registered) -> Registered:
    return registered("warn", "warn")  # after enforce: the module's configuration is replaced, not added


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_warn_prints_kubectl_warnings_on_dry_run_and_create(name: str, warn: Registered) -> None:
    pod, want_fail = _pod(name)
    manifest = json.dumps(pod)
    dry = warn.control_plane.kubectl("apply", "--dry-run=server", "-f", "-", stdin=manifest)
    real = warn.control_plane.kubectl("create", "-f", "-", stdin=manifest)
    for result in (dry, real):
        assert result.returncode == 0, result.stderr
        warnings = _our_warnings(result.stderr)
        assert len(warnings) >= len(want_fail), result.stderr
        for key in want_fail:
            cis_id = CATALOG.control(key).cis_id("1.5.1")
            assert any((f"CIS {cis_id} " if cis_id else key) in w for w in warnings), (key, result.stderr)
        if not want_fail:
            assert warnings == []
    warn.control_plane.kubectl("delete", "pod", "-n", "kube-system", pod["metadata"]["name"], "--wait=false")


@pytest.fixture(scope="module")
def audit(registered: RegisterFactory, warn: Registered) -> Registered:
    return registered("enforce", "audit")  # the enforce overlay (failurePolicy Fail) with an audit-mode policy


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_audit_mode_annotates_the_real_audit_log(name: str, audit: Registered) -> None:
    pod, want_fail = _pod(name)
    pod_name = pod["metadata"]["name"]
    result = audit.control_plane.kubectl("create", "-f", "-", stdin=json.dumps(pod))
    assert result.returncode == 0, result.stderr
    assert _our_warnings(result.stderr) == []

    ours = _our_annotations(audit, pod_name)
    assert (set(ours) - {"verdict"}) & set(judged_keys(EXPECTED[name])) == want_fail
    audit.control_plane.kubectl("delete", "pod", "-n", "kube-system", pod_name, "--wait=false")
