"""From an admission request to an admission answer: what each mode does with the engine's findings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from webhook.admission import review as admission
from webhook.admission.review import MESSAGE_LIMIT, Request, Response
from webhook.core.engine import Finding, Verdict, evaluate
from webhook.core.operators import clip
from webhook.core.policy import Mode, Policy
from webhook.core.workloads import POD_SPEC_PATHS, subject_of

# How the engine words a finding whose value it cannot see (engine.judge_container: "could not read the command
# line: ..."). Such a finding on the old object is not the same failure as a concrete one on the new object.
UNREAD = "could not read"
# One line of a denial or one container's part of an audit annotation, at most; the whole of each is bounded in
# review.py (MESSAGE_LIMIT, ANNOTATION_LIMIT).
LINE_LIMIT = 1024
ERROR_TEXT = "apiserver-tls-guard could not evaluate this object; see the webhook's log"


@dataclass(frozen=True)
class Decision:
    """What the webhook answers for one review, the verdict behind it (None when nothing was judged) and its outcome
    for logs and metrics.
    """

    response: Response
    verdict: Verdict | None
    outcome: str  # denied | warned | audited | clean | exempt | skipped | deleting
    # (control, mode) of each finding, for metrics and the decision log; worked out once per decision, which the
    # verdict cache reuses.
    counted: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.counted and self.verdict is not None and self.verdict.findings:
            object.__setattr__(self, "counted", tuple((f.key, f.mode.value) for f in self.verdict.findings))

    def slim(self) -> Decision:
        """What the verdict cache keeps: the outcome and the counted findings, not the texts (the cache holds the
        serialized answer already) nor the verdict."""
        return Decision(Response(self.response.uid, self.response.allowed), None, self.outcome, self.counted)


def _deleting(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def _unread(finding: Finding) -> bool:
    return finding.detail.startswith(UNREAD)


def _with_kind(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    return obj if obj.get("kind") else {**obj, "kind": kind}


def _already_failing(request: Request, verdict: Verdict, policy: Policy) -> set[tuple[str, str, bool]]:
    """(container, control, could-not-read) of each failure the object had before this UPDATE.

    An UPDATE is denied only for what it makes worse (Kyverno's `allowExistingViolations`): the controllers' own
    UPDATEs of an object that was admitted before the policy (the Deployment controller scaling an old ReplicaSet
    to zero, the garbage collector removing a finalizer) must go through, or a fixed rollout can never finish.
    A control the old object failed because its value could not be read (`$(EXTRA_ARGS)`) is not the same failure
    as a value read and wrong (`--authorization-mode=AlwaysAllow`): the UPDATE that writes the bad value is judged.
    """
    if request.operation != "UPDATE" or request.old_obj is None or not verdict.findings:
        return set()
    old = _with_kind(request.old_obj, verdict.subject.kind)
    before = evaluate(old, policy, request.namespace, request.name)
    return {(f.container, f.key, _unread(f)) for f in before.findings}


def denial_message(verdict: Verdict) -> str:
    """The message of a denial: one line naming the object and the count, then one line per control in enforce mode,
    as many as fit in MESSAGE_LIMIT."""
    findings = verdict.by_mode(Mode.ENFORCE)
    head = (
        f"apiserver-tls-guard: {verdict.subject.describe()} fails {len(findings)} kube-apiserver TLS "
        f"control{'s' if len(findings) != 1 else ''} (CIS Kubernetes Benchmark):"
    )
    lines = [clip(head, LINE_LIMIT)]
    used = len(lines[0])
    for i, f in enumerate(findings):
        line = f"- {clip(f.message(), LINE_LIMIT)}"
        if used + len(line) + 1 > MESSAGE_LIMIT - 80:  # room for the last line
            lines.append(f"- … and {len(findings) - i} more findings (the audit annotations name each control)")
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(lines)


def _audit(findings: tuple[Finding, ...]) -> dict[str, str]:
    """One annotation per control; two containers failing one control both stay in it, up to LINE_LIMIT (review.py
    cuts each annotation to ANNOTATION_LIMIT)."""
    audit: dict[str, str] = {}
    for f in findings:
        text = clip(f"{f.mode.value}: {f.label}: container {f.container!r}: {f.detail}", LINE_LIMIT)
        before = audit.get(f.key)
        if before is None:
            audit[f.key] = text
        elif len(before) < LINE_LIMIT:
            audit[f.key] = f"{before}; {text}"
    return audit


def _judged_object(request: Request, policy: Policy) -> tuple[Mapping[str, Any] | None, str]:
    """The object to judge (with its kind), or None and the outcome that says why there is none."""
    if request.operation not in ("CREATE", "UPDATE") or request.obj is None:
        return None, "skipped"
    kind = str(request.obj.get("kind") or request.kind)
    if kind not in POD_SPEC_PATHS:
        return None, "skipped"
    obj = _with_kind(request.obj, kind)
    if kind != "Pod" and not policy.judges_workloads_in(request.namespace):
        return None, "skipped"
    if _deleting(obj):
        # Finalizer removal and status updates of an object on its way out: blocking them only hangs the delete.
        return None, "deleting"
    return obj, ""


def _exemption(request: Request, obj: Mapping[str, Any], policy: Policy) -> str | None:
    """Why the object is exempt, from the object as it was when this is an UPDATE: the labels that decide are the
    ones the object had, not the ones this request writes (it could label itself into an exemption)."""
    before = _with_kind(request.old_obj, str(obj["kind"])) if request.old_obj is not None else obj
    who = subject_of(before, request.namespace, request.name)
    return policy.exemptions.exempt(who.namespace, who.name, who.labels)


def decide(request: Request, policy: Policy) -> Decision:
    """The answer to one review under `policy`. Pure: no I/O. Only CREATE and UPDATE of objects with a pod spec are
    judged; an UPDATE is denied only for what it makes worse; objects being deleted are admitted.
    """
    obj, outcome = _judged_object(request, policy)
    if obj is None:
        return Decision(admission.allowed(request.uid), None, outcome)
    update = request.operation == "UPDATE" and request.old_obj is not None and policy.exemptions.by_object
    # On UPDATE the engine judges without the exemptions on what the submitter writes; the old object decides them.
    verdict = evaluate(obj, policy.without_object_exemptions if update else policy, request.namespace, request.name)
    if not verdict.runs_apiserver:
        return Decision(admission.allowed(request.uid), verdict, "skipped")
    if verdict.exempt is None and update:
        reason = _exemption(request, obj, policy)
        if reason is not None:
            verdict = replace(verdict, findings=(), exempt=reason)
    if verdict.exempt is not None:
        audit = {"exempt": verdict.exempt}
        return Decision(admission.allowed(request.uid, audit=audit), verdict, "exempt")
    existing = _already_failing(request, verdict, policy)
    if existing:
        # Existing violations warn instead of denying; findings the UPDATE introduces still deny.
        verdict = replace(
            verdict,
            findings=tuple(
                f._replace(mode=Mode.WARN)
                if f.mode is Mode.ENFORCE and (f.container, f.key, _unread(f)) in existing
                else f
                for f in verdict.findings
            ),
        )
    audit = _audit(verdict.findings)
    warnings = [f.warning() for f in verdict.by_mode(Mode.WARN)]
    if verdict.by_mode(Mode.ENFORCE):
        audit["verdict"] = "denied"
        response = admission.denied(request.uid, denial_message(verdict), warnings, audit)
        return Decision(response, verdict, "denied")
    outcome = "warned" if warnings else ("audited" if verdict.findings else "clean")
    audit["verdict"] = outcome
    return Decision(admission.allowed(request.uid, warnings, audit), verdict, outcome)


def error_response(request: Request, policy: Policy) -> tuple[Response, str]:
    """The answer when judging raised, and its outcome ("error"): fail closed. Denied when any control that would
    judge this object is in enforce mode (the per-control modes, not only the global one), a warning otherwise;
    objects the webhook never judges (other kinds, DELETE, objects being deleted) and exempt ones are admitted as
    they would have been. Whatever part of this raises too counts as not exempt."""
    uid = request.uid
    try:
        obj, _ = _judged_object(request, policy)
        if obj is None:
            return admission.allowed(uid, audit={"verdict": "error"}), "error"
        reason = _exemption(request, obj, policy)
    except Exception:  # the object that made judging fail may make this fail too: then nothing exempts it
        reason = None
    if reason is not None:
        return admission.allowed(uid, audit={"exempt": reason, "verdict": "error"}), "error"
    if any(mode is Mode.ENFORCE for _, mode in policy.active_controls):
        return admission.denied(uid, ERROR_TEXT, audit={"verdict": "error"}), "error"
    return admission.allowed(uid, [ERROR_TEXT], audit={"verdict": "error"}), "error"
