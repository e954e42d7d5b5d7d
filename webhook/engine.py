"""The engine: a pure function from a Kubernetes object and a policy to findings. No I/O, no clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from webhook.catalog import Catalog, Control
from webhook.cmdline import ApiserverContainer, Flags, apiserver_containers, image_version, parse_bool
from webhook.policy import Mode, Policy
from webhook.workloads import Subject, pod_spec, subject_of

STATIC_MANIFEST = "/etc/kubernetes/manifests/kube-apiserver.yaml"
WARNING_LIMIT = 120  # kube-apiserver keeps warnings whole under its budget; see webhook-contract


@dataclass(frozen=True)
class Context:
    """What a check may look at besides the flags."""

    catalog: Catalog
    benchmark: str
    kubernetes: tuple[int, int] | None


def _spell(flags: list[str]) -> str:
    names = [f"--{f}" for f in flags]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# Each operator takes a control's `check` data and returns a checker: a closure over that data, built once per
# control, that says what is wrong with a command line (or None when it passes). The catalog names operators.
Checker = Callable[[Flags, Context], "str | None"]


def _op_set(check: Mapping[str, Any]) -> Checker:
    names = tuple(str(n) for n in check["flags"])

    def checker(flags: Flags, _: Context) -> str | None:
        for name in names:
            value = flags.value(name)
            if value is None or not value.strip():
                break
        else:
            return None  # every flag has a non-empty effective value
        missing = [n for n in names if flags.value(n) is None]
        # list flags: an empty repeat does not undo earlier values, so emptiness is is_set's call
        empty = [n for n in names if n not in missing and not flags.is_set(n)]
        if not missing and not empty:
            return None
        problems = []
        if missing:
            problems.append(f"{_spell(missing)} {'is' if len(missing) == 1 else 'are'} not set")
        if empty:
            problems.append(f"{_spell(empty)} {'is' if len(empty) == 1 else 'are'} empty")
        return "; ".join(problems)

    return checker


def _op_unset(check: Mapping[str, Any]) -> Checker:
    name = str(check["flag"])

    def checker(flags: Flags, _: Context) -> str | None:
        return None if flags.value(name) is None else f"--{name} is set"

    return checker


def _op_bool(check: Mapping[str, Any]) -> Checker:
    name, want, default = str(check["flag"]), bool(check["expect"]), bool(check["default"])

    def checker(flags: Flags, _: Context) -> str | None:
        raw = flags.value(name)
        if raw is None:
            return None if default == want else f"--{name} is not set (default {str(default).lower()})"
        value = parse_bool(raw)
        if value is None:
            return f"--{name}={raw} is not a boolean kube-apiserver accepts"
        return None if value == want else f"--{name} is {str(value).lower()}"

    return checker


def _op_list(check: Mapping[str, Any]) -> Checker:
    name, default = str(check["flag"]), str(check["default"])
    includes, excludes = check.get("includes"), check.get("excludes")

    def checker(flags: Flags, _: Context) -> str | None:
        items = flags.items(name)
        if not items:
            return f"--{name} is not set (default {default})"
        if includes is not None and includes not in items:
            return f"--{name}={','.join(items)} does not include {includes}"
        if excludes is not None and excludes in items:
            return f"--{name}={','.join(items)} includes {excludes}"
        return None

    return checker


def _op_ciphers(check: Mapping[str, Any]) -> Checker:
    name = str(check["flag"])
    aliases: Mapping[str, str] = check.get("aliases") or {}
    allowed_by_list: dict[int, frozenset[str]] = {}

    def allowed_for(ctx: Context) -> frozenset[str]:
        suites = ctx.catalog.cipher_lists[ctx.catalog.cipher_list_for[ctx.benchmark]]
        cached = allowed_by_list.get(id(suites))
        if cached is None:
            allowed = set(suites)
            allowed |= {alias for alias, target in aliases.items() if target in allowed}
            allowed |= {target for alias, target in aliases.items() if alias in allowed}
            cached = allowed_by_list[id(suites)] = frozenset(allowed)
        return cached

    def checker(flags: Flags, ctx: Context) -> str | None:
        items = flags.items(name)
        if not items:
            return f"--{name} is not set (Go's default list includes CBC and RSA key-exchange suites)"
        allowed = allowed_for(ctx)
        weak = [suite for suite in items if suite not in allowed]
        return f"--{name} has suites outside the strong list: {', '.join(weak)}" if weak else None

    return checker


def _op_retired(check: Mapping[str, Any]) -> Checker:
    name = str(check["flag"])
    removed = tuple(int(p) for p in str(check["removed_in"]).split("."))[:2]

    def checker(flags: Flags, ctx: Context) -> str | None:
        if ctx.kubernetes is None or ctx.kubernetes < removed or flags.value(name) is None:
            return None
        running = f"{ctx.kubernetes[0]}.{ctx.kubernetes[1]}"
        return f"--{name} is set, but was removed in Kubernetes {removed[0]}.{removed[1]} and the image is {running}"

    return checker


OPERATORS: Mapping[str, Callable[[Mapping[str, Any]], Checker]] = {
    "set": _op_set,
    "unset": _op_unset,
    "bool": _op_bool,
    "list": _op_list,
    "ciphers": _op_ciphers,
    "retired": _op_retired,
}
_CHECKERS: dict[int, tuple[Control, Checker]] = {}


def checker_for(control: Control) -> Checker:
    """The control's compiled check; the control is kept with it so its id cannot be reused."""
    entry = _CHECKERS.get(id(control))
    if entry is None or entry[0] is not control:
        entry = _CHECKERS[id(control)] = (control, OPERATORS[control.check["op"]](control.check))
    return entry[1]


def run_check(control: Control, flags: Flags, ctx: Context) -> str | None:
    """What is wrong with these flags for this control, or None when it passes."""
    return checker_for(control)(flags, ctx)


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
    flat = "".join(ch if ch.isprintable() else " " for ch in text)
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


@dataclass(frozen=True)
class Verdict:
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
    if subject.kind == "Process":
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
    kubernetes = image_version(apiserver.image)
    benchmark = policy.benchmark_for(kubernetes)
    ctx = Context(policy.catalog, benchmark, kubernetes)
    findings = []
    flags = apiserver.flags
    where = where_to_fix(subject)
    for control, mode in policy.active_controls:
        detail = checker_for(control)(flags, ctx)
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
    apiservers = apiserver_containers(spec) if spec is not None else []
    containers = tuple(a.name for a in apiservers)
    if not apiservers:
        return Verdict(subject, containers, ())
    reason = policy.exemptions.exempt(subject.namespace, subject.name, subject.labels)
    if reason is not None:
        return Verdict(subject, containers, (), exempt=reason)
    findings = [f for a in apiservers for f in judge_container(a, subject, policy)]
    return Verdict(subject, containers, tuple(findings))
