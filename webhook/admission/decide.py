"""From an admission request to an admission answer: what each mode does with the engine's findings."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from webhook.admission import review as admission
from webhook.admission.review import Request, Response
from webhook.core.engine import Verdict, evaluate
from webhook.core.policy import Mode, Policy
from webhook.core.workloads import POD_SPEC_PATHS


@dataclass(frozen=True)
class Decision:
    """What the webhook answers for one review, the verdict behind it (None when nothing was judged) and its outcome
    for logs and metrics.
    """

    response: Response
    verdict: Verdict | None
    outcome: str  # denied | warned | audited | clean | exempt | skipped | deleting

    @functools.cached_property
    def counted(self) -> tuple[tuple[str, str], ...]:
        """(control, mode) of each finding, for metrics and the decision log; worked out once per decision, which
        the verdict cache reuses."""
        return tuple((f.key, f.mode.value) for f in self.verdict.findings) if self.verdict is not None else ()


def _deleting(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def _already_failing(request: Request, verdict: Verdict, policy: Policy) -> set[tuple[str, str]]:
    """(container, control) pairs that the object failed before this UPDATE.

    An UPDATE is denied only for what it makes worse (Kyverno's `allowExistingViolations`): the controllers' own
    UPDATEs of an object that was admitted before the policy (the Deployment controller scaling an old ReplicaSet
    to zero, the garbage collector removing a finalizer) must go through, or a fixed rollout can never finish.
    """
    if request.operation != "UPDATE" or request.old_obj is None or not verdict.findings:
        return set()
    old = request.old_obj
    if not old.get("kind"):
        old = {**old, "kind": verdict.subject.kind}
    before = evaluate(old, policy, request.namespace, request.name)
    return {(f.container, f.key) for f in before.findings}


def denial_message(verdict: Verdict) -> str:
    """The message of a denial: one line naming the object and the count, then one line per control in enforce mode."""
    findings = verdict.by_mode(Mode.ENFORCE)
    head = (
        f"apiserver-tls-guard: {verdict.subject.describe()} fails {len(findings)} kube-apiserver TLS "
        f"control{'s' if len(findings) != 1 else ''} (CIS Kubernetes Benchmark):"
    )
    return "\n".join([head, *(f"- {f.message()}" for f in findings)])


def decide(request: Request, policy: Policy) -> Decision:
    """The answer to one review under `policy`. Pure: no I/O. Only CREATE and UPDATE of objects with a pod spec are
    judged; an UPDATE is denied only for what it makes worse; objects being deleted are admitted.
    """
    if request.operation not in ("CREATE", "UPDATE") or request.obj is None:
        return Decision(admission.allowed(request.uid), None, "skipped")
    obj = request.obj
    kind = str(obj.get("kind") or request.kind)
    if kind not in POD_SPEC_PATHS:
        return Decision(admission.allowed(request.uid), None, "skipped")
    if not obj.get("kind"):
        obj = {**obj, "kind": kind}
    if kind != "Pod" and not policy.judges_workloads_in(request.namespace):
        return Decision(admission.allowed(request.uid), None, "skipped")
    if _deleting(obj):
        # Finalizer removal and status updates of an object on its way out: blocking them only hangs the delete.
        return Decision(admission.allowed(request.uid), None, "deleting")
    verdict = evaluate(obj, policy, request.namespace, request.name)
    if not verdict.runs_apiserver:
        return Decision(admission.allowed(request.uid), verdict, "skipped")
    if verdict.exempt is not None:
        audit = {"exempt": verdict.exempt}
        return Decision(admission.allowed(request.uid, audit=audit), verdict, "exempt")
    existing = _already_failing(request, verdict, policy)
    if existing:
        # Existing violations warn instead of denying; findings the UPDATE introduces still deny.
        verdict = replace(
            verdict,
            findings=tuple(
                f._replace(mode=Mode.WARN) if f.mode is Mode.ENFORCE and (f.container, f.key) in existing else f
                for f in verdict.findings
            ),
        )
    audit = {}
    for f in verdict.findings:
        # Two containers failing one control: both stay in the control's annotation, neither overwrites the other.
        text = f"{f.mode.value}: {f.label}: container {f.container!r}: {f.detail}"
        audit[f.key] = f"{audit[f.key]}; {text}" if f.key in audit else text
    warnings = [f.warning() for f in verdict.by_mode(Mode.WARN)]
    if verdict.by_mode(Mode.ENFORCE):
        audit["verdict"] = "denied"
        response = admission.denied(request.uid, denial_message(verdict), warnings, audit)
        return Decision(response, verdict, "denied")
    outcome = "warned" if warnings else ("audited" if verdict.findings else "clean")
    audit["verdict"] = outcome
    return Decision(admission.allowed(request.uid, warnings, audit), verdict, outcome)
