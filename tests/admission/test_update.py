"""UPDATE semantics through the HTTPS endpoint: an UPDATE is denied only for what it makes worse.

Kyverno's `allowExistingViolations` is the model: the controllers' own UPDATEs of objects admitted before the
policy (scaling an old ReplicaSet to zero, removing a finalizer) must pass, or a fixed rollout never finishes.
The real Deployment controller and garbage collector prove the same in tests/e2e/test_hosted_e2e.py.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.admission.test_http import COMPLIANT, NO_TLS, SEEDS_MISSING, apiserver_pod, hosted_apiserver
from tests.apiserver_client import ApiserverClient, admission_review


def _with(obj: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    changed = copy.deepcopy(obj)
    changed["metadata"].update(metadata)
    return changed


def test_update_that_leaves_a_bad_command_line_alone_is_admitted_with_warnings(
    enforce_client: ApiserverClient,
) -> None:
    old = hosted_apiserver("ReplicaSet", *NO_TLS)
    scaled = copy.deepcopy(old)
    scaled["spec"]["replicas"] = 0
    answer = enforce_client.review(admission_review(scaled, "UPDATE", old_object=old))
    assert answer["allowed"] is True
    assert any("--tls-cert-file" in w or "CIS 1.2.30" in w for w in answer["warnings"])
    assert answer["auditAnnotations"]["tls-cert-and-key"].startswith("warn: ")


def test_update_that_makes_it_worse_is_denied_for_the_new_finding_only(enforce_client: ApiserverClient) -> None:
    old = apiserver_pod(*NO_TLS)
    worse = apiserver_pod(*SEEDS_MISSING)  # also drops --client-ca-file
    answer = enforce_client.review(admission_review(worse, "UPDATE", old_object=old))
    assert answer["allowed"] is False
    message = answer["status"]["message"]
    assert "CIS 1.2.31" in message and "CIS 1.2.30" not in message
    assert any("CIS 1.2.30" in w for w in answer.get("warnings", []))


def test_update_that_adds_a_bad_apiserver_container_is_denied(enforce_client: ApiserverClient) -> None:
    old = apiserver_pod(*COMPLIANT)
    new = copy.deepcopy(old)
    extra = copy.deepcopy(new["spec"]["containers"][0])
    extra["name"] = "second-apiserver"
    extra["command"] = ["kube-apiserver", *NO_TLS]
    new["spec"]["containers"].append(extra)
    answer = enforce_client.review(admission_review(new, "UPDATE", old_object=old))
    assert answer["allowed"] is False
    assert "second-apiserver" in answer["status"]["message"]


def test_update_of_an_object_being_deleted_is_admitted(enforce_client: ApiserverClient) -> None:
    """The garbage collector removes the foregroundDeletion finalizer from an object that is already going."""
    old = _with(hosted_apiserver("Deployment", *NO_TLS), finalizers=["foregroundDeletion"])
    going = _with(old, deletionTimestamp="2026-11-25T00:00:00Z", finalizers=[])
    answer = enforce_client.review(admission_review(going, "UPDATE", old_object=old))
    assert answer["allowed"] is True
    assert "warnings" not in answer


def test_create_with_the_same_bad_command_line_is_still_denied(enforce_client: ApiserverClient) -> None:
    answer = enforce_client.review(admission_review(hosted_apiserver("ReplicaSet", *NO_TLS)))
    assert answer["allowed"] is False


def test_two_containers_failing_one_control_both_stay_in_its_audit_annotation(
    enforce_client: ApiserverClient,
) -> None:
    pod = apiserver_pod(*NO_TLS)
    second = copy.deepcopy(pod["spec"]["containers"][0])
    second["name"] = "kube-apiserver-canary"
    pod["spec"]["containers"].append(second)
    answer = enforce_client.review(admission_review(pod))
    note = answer["auditAnnotations"]["tls-cert-and-key"]
    assert "container 'kube-apiserver'" in note and "container 'kube-apiserver-canary'" in note


def _opaque_extra_args(*flags: str) -> dict[str, Any]:
    """A pod whose command line ends in `$(EXTRA_ARGS)`, from a ConfigMap: unknown until the pod runs."""
    pod = apiserver_pod(*flags, "$(EXTRA_ARGS)")
    pod["spec"]["containers"][0]["env"] = [
        {"name": "EXTRA_ARGS", "valueFrom": {"configMapKeyRef": {"name": "apiserver-extra", "key": "args"}}}
    ]
    return pod


def test_an_update_that_writes_a_bad_value_over_an_unreadable_one_is_denied(enforce_client: ApiserverClient) -> None:
    """Issue 19 point 9: the old object failed authz-not-always-allow only as "could not read" ($(EXTRA_ARGS) might
    set --authorization-mode); that is not the failure --authorization-mode=AlwaysAllow is, so it excuses nothing."""
    flags = tuple(f for f in COMPLIANT if not f.startswith("--authorization-mode"))
    old = _opaque_extra_args(*flags)
    new = apiserver_pod(*flags, "--authorization-mode=AlwaysAllow")
    answer = enforce_client.review(admission_review(new, "UPDATE", old_object=old))
    assert answer["allowed"] is False
    assert "--authorization-mode=AlwaysAllow includes AlwaysAllow" in answer["status"]["message"]
    assert answer["auditAnnotations"]["authz-not-always-allow"].startswith("enforce: ")


def test_an_update_that_leaves_an_unreadable_command_line_unreadable_is_admitted_with_warnings(
    enforce_client: ApiserverClient,
) -> None:
    """The same kind of failure before and after (could not read, could not read): an existing violation."""
    old = _opaque_extra_args(*COMPLIANT)
    scaled = copy.deepcopy(old)
    scaled["metadata"]["labels"]["rollout"] = "2"
    answer = enforce_client.review(admission_review(scaled, "UPDATE", old_object=old))
    assert answer["allowed"] is True
    assert answer["auditAnnotations"]["verdict"] == "warned"
