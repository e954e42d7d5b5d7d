"""The object under review cannot exempt itself (issue 20 point 4). A name glob or a label selector matches what
whoever submits the object writes, so each applies only inside the namespaces the policy names with it; on UPDATE
the old object's labels decide; a policy without those namespaces is refused, naming the field. Namespace
exemptions stay: namespaces are the cluster admin's. Through the real `serve` over HTTPS and the real `check`."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.admission.test_http import COMPLIANT, NO_TLS, apiserver_pod, hosted_apiserver
from tests.apiserver_client import ApiserverClient, admission_review
from tests.conftest import ServerFactory, cli

# README's example policy before this change: its exemptions matched in every namespace.
README_BEFORE = """\
mode: enforce
exemptions:
  namespaces: [clusters-sandbox]
  names: ["kube-apiserver-lab-*"]
  labelSelectors:
    - matchLabels: {env: lab}
    - matchExpressions: [{key: tier, operator: In, values: [test]}]
"""
SCOPED = """\
mode: enforce
exemptions:
  namespaces: [clusters-sandbox]
  names:
    - {pattern: "kube-apiserver-lab-*", namespaces: [lab]}
  labelSelectors:
    - {namespaces: [lab], matchLabels: {env: lab}}
    - {namespaces: [lab], matchExpressions: [{key: tier, operator: In, values: [test]}]}
"""


def _pod(*flags: str, namespace: str = "kube-system", **kwargs: Any) -> dict[str, Any]:
    pod = apiserver_pod(*flags, **kwargs)
    pod["metadata"]["namespace"] = namespace
    return pod


def _labelled(obj: dict[str, Any], **labels: str) -> dict[str, Any]:
    changed = copy.deepcopy(obj)
    changed["metadata"].setdefault("labels", {}).update(labels)
    return changed


@pytest.fixture
def scoped(server_factory: ServerFactory, tmp_path_factory: pytest.TempPathFactory) -> ApiserverClient:
    config = tmp_path_factory.mktemp("scoped") / "policy.yaml"
    config.write_text(SCOPED)
    return server_factory("--config", str(config)).client()


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        (README_BEFORE, "exemptions.names[0]"),
        ("exemptions:\n  labelSelectors: [{matchLabels: {env: lab}}]\n", "exemptions.labelSelectors[0].namespaces"),
        ("exemptions:\n  names: [{pattern: 'kas-lab-*'}]\n", "exemptions.names[0].namespaces"),
        ("exemptions:\n  names: [{pattern: 'kas-lab-*', namespaces: []}]\n", "exemptions.names[0].namespaces"),
        ("exemptions:\n  names: [{pattern: 'kas-lab-*', namespaces: ['*']}]\n", "exemptions.names[0].namespaces"),
        ("exemptions:\n  names: [{pattern: '[a-z]*', namespaces: [lab]}]\n", "exemptions.names[0].pattern"),
    ],
)
def test_a_name_or_label_exemption_without_its_namespaces_stops_serve_and_check(
    tmp_path: Path, policy: str, field: str
) -> None:
    config = tmp_path / "policy.yaml"
    config.write_text(policy)
    pod = tmp_path / "pod.yaml"
    pod.write_text(yaml.safe_dump(_pod(*COMPLIANT)))
    for args in (("check", "--config", str(config), str(pod)), ("serve", "--config", str(config), "--port", "1")):
        result = cli(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert field in result.stderr and str(config) in result.stderr and "Traceback" not in result.stderr


def test_labels_and_names_the_submitter_writes_exempt_nothing_outside_their_namespaces(
    scoped: ApiserverClient,
) -> None:
    """Issue 20's reproduction: labelling a bad Deployment `env: lab` or naming a pod `kube-apiserver-lab-x`."""
    deployment = _labelled(hosted_apiserver("Deployment", *NO_TLS), env="lab")
    assert scoped.review(admission_review(deployment))["allowed"] is False
    template_labelled = hosted_apiserver("Deployment", *NO_TLS)
    template_labelled["spec"]["template"]["metadata"]["labels"]["tier"] = "test"
    assert scoped.review(admission_review(template_labelled))["allowed"] is False
    named = _pod(*NO_TLS, name="kube-apiserver-lab-x")
    assert scoped.review(admission_review(named))["allowed"] is False


def test_inside_their_namespaces_they_still_exempt(scoped: ApiserverClient) -> None:
    named = _pod(*NO_TLS, name="kube-apiserver-lab-x", namespace="lab")
    answer = scoped.review(admission_review(named, namespace="lab"))
    assert answer["allowed"] is True and "kube-apiserver-lab-*" in answer["auditAnnotations"]["exempt"]
    labelled = _labelled(hosted_apiserver("Deployment", *NO_TLS, namespace="lab"), env="lab")
    assert scoped.review(admission_review(labelled, namespace="lab"))["allowed"] is True
    sandbox = hosted_apiserver("Deployment", *NO_TLS, namespace="clusters-sandbox")
    assert scoped.review(admission_review(sandbox, namespace="clusters-sandbox"))["allowed"] is True


def test_on_update_the_old_objects_labels_decide(scoped: ApiserverClient) -> None:
    good = _pod(*COMPLIANT, namespace="lab")
    breaks_and_labels_itself = _labelled(_pod(*NO_TLS, namespace="lab"), env="lab")
    answer = scoped.review(admission_review(breaks_and_labels_itself, "UPDATE", "lab", old_object=good))
    assert answer["allowed"] is False
    assert "CIS 1.2.30" in answer["status"]["message"]
    # An object the admin's policy exempted stays exempt through the UPDATE that drops the label.
    was_exempt = _labelled(_pod(*COMPLIANT, namespace="lab"), env="lab")
    answer = scoped.review(admission_review(_pod(*NO_TLS, namespace="lab"), "UPDATE", "lab", old_object=was_exempt))
    assert answer["allowed"] is True and "labels match" in answer["auditAnnotations"]["exempt"]
