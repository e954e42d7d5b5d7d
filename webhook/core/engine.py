"""The engine: a pure function from a Kubernetes object and a policy to findings. No I/O; the one clock it reads is
the CPU-time budget for reading command lines (webhook/cmdline/budget.py), which turns a runaway read into
"could not read the command line"."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from webhook.cmdline.budget import Budget
from webhook.cmdline.flags import Flags
from webhook.cmdline.images import image_version
from webhook.cmdline.locate import ApiserverContainer, apiserver_containers
from webhook.core.catalog import Catalog, Control
from webhook.core.operators import Context
from webhook.core.policy import Mode, Policy
from webhook.core.workloads import PROCESS_KIND, Subject, pod_spec, subject_of

STATIC_MANIFEST = "/etc/kubernetes/manifests/kube-apiserver.yaml"
WARNING_LIMIT = 120  # kube-apiserver keeps warnings whole under its budget; see webhook-contract


class Finding(NamedTuple):
    """One failed control on one container. A NamedTuple: made on the admission hot path, it must be cheap."""

    key: str
    cis_id: str | None
    benchmark: str
    container: str
    detail: str
    consequence: str
    fix: str
    where: str
    mode: Mode
    hidden_by: str | None = None

    @property
    def label(self) -> str:
        if self.cis_id:
            return f"CIS {self.cis_id} (benchmark v{self.benchmark})"
        return f"{self.key} (not in CIS v{self.benchmark})"

    def message(self) -> str:
        text = f"{self.label}, container {self.container!r}: {self.detail}."
        if self.hidden_by:
            text += (
                f" The command line hands its settings to the file given by {self.hidden_by}, which this check"
                " cannot read, so it could not see the setting."
            )
        return f"{text} {self.consequence}. Fix: {self.where} and {self.fix}"

    def warning(self) -> str:
        ident = f"CIS {self.cis_id} v{self.benchmark}" if self.cis_id else self.key
        return shorten(f"{ident} {self.container}: {self.detail}")


def shorten(text: str, limit: int = WARNING_LIMIT) -> str:
    """One printable line of at most `limit` characters: kube-apiserver drops warnings with control chars."""
    # Character by character only when something is not printable: that loop cost 10 µs a warning, most of a
    # decision's message-building time, and almost every warning is printable already.
    flat = text if text.isprintable() else "".join(ch if ch.isprintable() else " " for ch in text)
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


@dataclass(frozen=True)
class Verdict:
    """What the engine found in one object: its subject, the kube-apiserver containers, the findings, and the exemption
    that applied.
    """

    subject: Subject
    containers: tuple[str, ...]
    findings: tuple[Finding, ...]
    exempt: str | None = None

    @property
    def runs_apiserver(self) -> bool:
        return bool(self.containers)

    def by_mode(self, mode: Mode) -> list[Finding]:
        return [f for f in self.findings if f.mode is mode]


def where_to_fix(subject: Subject) -> str:
    """Where a finding is fixed: the static manifest for kube-system pods and processes, the pod template for
    workloads.
    """
    if subject.kind == PROCESS_KIND:
        return f"edit the manifest or unit that starts this process ({STATIC_MANIFEST} on kubeadm nodes)"
    if subject.is_pod and (subject.mirror or subject.namespace in ("kube-system", "")):
        return f"edit {STATIC_MANIFEST} on every control-plane node"
    if subject.is_pod:
        return f"edit the spec of {subject.describe()} (or the manifest it is made from)"
    return f"edit the pod template of {subject.describe()}"


def _hider(control: Control, flags: Flags, catalog: Catalog) -> str | None:
    for name in (*catalog.config_file_flags, *control.hidden_by):
        if flags.is_set(name):
            return f"--{name}"
    return None


def judge_container(apiserver: ApiserverContainer, subject: Subject, policy: Policy) -> list[Finding]:
    """The findings of one kube-apiserver run under `policy`; a control whose flags cannot be read fails (no false
    pass).
    """
    kubernetes = image_version(apiserver.image)
    benchmark = policy.benchmark_for(kubernetes)
    ctx = Context(policy.catalog, benchmark, kubernetes)
    findings = []
    flags = apiserver.flags
    where = where_to_fix(subject)
    unsure = bool(flags.opaque or flags.has_unknown)
    for control, mode, check in policy.active_checks:
        blind = flags.unseen(control.flags) if unsure else None
        # A value we cannot see is not a pass.
        detail = f"could not read the command line: {blind}" if blind else check(flags, ctx)
        if detail is None:
            continue
        findings.append(
            Finding(
                key=control.key,
                cis_id=control.cis_id(benchmark),
                benchmark=benchmark,
                container=apiserver.name,
                detail=detail,
                consequence=control.consequence,
                fix=control.fix,
                where=where,
                mode=mode,
                hidden_by=_hider(control, flags, policy.catalog),
            )
        )
    return findings


def evaluate(obj: Mapping[str, Any], policy: Policy, namespace: str = "", name: str = "") -> Verdict:
    """Judge one object. Objects that hold no pod spec, or no kube-apiserver, get an empty verdict."""
    subject = subject_of(obj, namespace, name)
    spec = pod_spec(obj)
    # One budget for the whole object: what the submitter writes must not decide how long the guard works.
    apiservers = apiserver_containers(spec, Budget()) if spec is not None else []
    containers = tuple(a.name for a in apiservers)
    if not apiservers:
        return Verdict(subject, containers, ())
    reason = policy.exemptions.exempt(subject.namespace, subject.name, subject.labels)
    if reason is not None:
        return Verdict(subject, containers, (), exempt=reason)
    findings = [f for a in apiservers for f in judge_container(a, subject, policy)]
    return Verdict(subject, containers, tuple(findings))
