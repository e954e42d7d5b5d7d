"""From an admission request to an admission answer: what each mode does with the engine's findings."""

from __future__ import annotations

from dataclasses import dataclass

from webhook.admission import review as admission
from webhook.admission.review import Request, Response
from webhook.core.engine import Verdict, evaluate
from webhook.core.policy import Mode, Policy
from webhook.core.workloads import POD_SPEC_PATHS


@dataclass(frozen=True)
class Decision:
    response: Response
    verdict: Verdict | None
    outcome: str  # denied | warned | audited | clean | exempt | skipped


def denial_message(verdict: Verdict) -> str:
    findings = verdict.by_mode(Mode.ENFORCE)
    head = (
        f"apiserver-tls-guard: {verdict.subject.describe()} fails {len(findings)} kube-apiserver TLS "
        f"control{'s' if len(findings) != 1 else ''} (CIS Kubernetes Benchmark):"
    )
    return "\n".join([head, *(f"- {f.message()}" for f in findings)])


def decide(request: Request, policy: Policy) -> Decision:
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
    verdict = evaluate(obj, policy, request.namespace, request.name)
    if not verdict.runs_apiserver:
        return Decision(admission.allowed(request.uid), verdict, "skipped")
    if verdict.exempt is not None:
        audit = {"exempt": verdict.exempt}
        return Decision(admission.allowed(request.uid, audit=audit), verdict, "exempt")
    audit = {f.key: f"{f.mode.value}: {f.label}: {f.detail}" for f in verdict.findings}
    warnings = [f.warning() for f in verdict.by_mode(Mode.WARN)]
    if verdict.by_mode(Mode.ENFORCE):
        audit["verdict"] = "denied"
        response = admission.denied(request.uid, denial_message(verdict), warnings, audit)
        return Decision(response, verdict, "denied")
    outcome = "warned" if warnings else ("audited" if verdict.findings else "clean")
    audit["verdict"] = outcome
    return Decision(admission.allowed(request.uid, warnings, audit), verdict, outcome)
