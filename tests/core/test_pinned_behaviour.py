"""Behaviour that no test pinned before, each written to fail on a small, realistic bug (issue "Tests that catch
bugs"): list flags, shell corners, where the fix goes, selectors, manual controls under enforce, operations,
and the catalog's data against the shared CIS catalog."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.admission.test_http import COMPLIANT, apiserver_pod, without
from tests.apiserver_client import ApiserverClient, admission_review
from tests.conftest import SHARED
from webhook.cmdline.flags import parse_flags
from webhook.cmdline.locate import find_apiserver_args
from webhook.core.catalog import load_catalog
from webhook.core.engine import evaluate, where_to_fix
from webhook.core.policy import LabelSelector, load_policy
from webhook.core.workloads import Subject

CATALOG = load_catalog()


def test_a_list_flag_whose_last_occurrence_is_empty_keeps_what_came_before() -> None:
    """pflag stringSlice.Set: an empty value adds nothing, it does not reset the list."""
    flags = parse_flags(["--authorization-mode=Node,RBAC", "--authorization-mode="])
    assert flags.items("authorization-mode") == ["Node", "RBAC"]
    assert flags.is_set("authorization-mode")
    assert parse_flags(["--authorization-mode="]).items("authorization-mode") == []


def test_a_redirection_right_after_a_flag_is_not_its_value() -> None:
    argv = ["/bin/sh", "-c", "exec kube-apiserver --client-ca-file=/ca --tls-cert-file >/var/log/api.log 2>&1"]
    args = find_apiserver_args(argv)
    assert args == ["--client-ca-file=/ca", "--tls-cert-file"]
    assert parse_flags(args or []).value("tls-cert-file") == ""


def test_a_comment_on_the_apiserver_line_is_not_flags() -> None:
    args = find_apiserver_args(["/bin/sh", "-c", "exec kube-apiserver --client-ca-file=/ca # --tls-cert-file=/x"])
    assert args == ["--client-ca-file=/ca"]


def test_where_the_fix_goes_for_a_kube_system_pod_that_is_not_a_mirror_pod() -> None:
    static = Subject(kind="Pod", namespace="kube-system", name="kube-apiserver-cp-1")
    assert where_to_fix(static) == "edit /etc/kubernetes/manifests/kube-apiserver.yaml on every control-plane node"
    elsewhere = Subject(kind="Pod", namespace="clusters-a", name="kas-1")
    assert where_to_fix(elsewhere) == "edit the spec of Pod clusters-a/kas-1 (or the manifest it is made from)"


@pytest.mark.parametrize(
    ("expressions", "labels", "matches"),
    [
        ((("tier", "NotIn", ("test",)),), {"tier": "prod"}, True),
        ((("tier", "NotIn", ("test",)),), {"tier": "test"}, False),
        ((("tier", "NotIn", ("test",)),), {}, True),  # metav1: NotIn matches when the key is absent
        ((("tier", "Exists", ()),), {"tier": ""}, True),
        ((("tier", "Exists", ()),), {}, False),
        ((("tier", "DoesNotExist", ()),), {}, True),
    ],
)
def test_label_selector_operators_as_metav1(
    expressions: tuple[tuple[str, str, tuple[str, ...]], ...], labels: dict[str, str], matches: bool
) -> None:
    assert LabelSelector({}, expressions).matches(labels) is matches


def test_manual_controls_stay_at_warn_under_enforce(enforce_client: ApiserverClient) -> None:
    """tls-cipher-suites-strong is not scored: failing only it, a pod is admitted with a warning, not denied."""
    flags = [*without("tls-cipher-suites"), "--tls-cipher-suites=TLS_RSA_WITH_RC4_128_SHA"]
    verdict = evaluate(apiserver_pod(*flags), load_policy(None, mode="enforce"))
    assert {f.key for f in verdict.findings} == {"tls-cipher-suites-strong"}
    answer = enforce_client.review(admission_review(apiserver_pod(*flags)))
    assert answer["allowed"] is True
    assert answer["auditAnnotations"]["tls-cipher-suites-strong"].startswith("warn: ")
    assert any("CIS 1.2.35" in w for w in answer["warnings"])


def test_an_operation_that_is_not_known_is_a_bad_request(enforce_client: ApiserverClient) -> None:
    review = admission_review(apiserver_pod(*COMPLIANT))
    review["request"]["operation"] = "PATCH"
    result = enforce_client.post("/validate", json.dumps(review).encode())
    assert result.status == 400
    assert "request.operation must be one of CREATE, UPDATE, DELETE, CONNECT" in result.json()["error"]


@pytest.mark.skipif(not (SHARED / "cis-catalog.yaml").is_file(), reason=f"{SHARED} is absent")
def test_strong_cipher_lists_and_version_ranges_match_the_shared_catalog() -> None:
    shared = yaml.safe_load((SHARED / "cis-catalog.yaml").read_text())
    lists = {frozenset(v) for v in shared["strong_ciphers"].values() if isinstance(v, list)}
    ours = {frozenset(v) for v in CATALOG.cipher_lists.values()}
    assert ours == lists
    for benchmark, info in shared["benchmarks"].items():
        if benchmark not in CATALOG.benchmarks:
            continue
        span = str(info["kubernetes"]).split("-")
        low, high = (tuple(int(x) for x in span[0].split(".")), tuple(int(x) for x in span[-1].split(".")))
        assert CATALOG.kubernetes_for[benchmark] == (low, high), benchmark
