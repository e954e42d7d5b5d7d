"""`apiserver-tls-guard vap`: the catalog and a policy as ValidatingAdmissionPolicies, for clusters that want no
webhook at all (CEL, in-process: no certificates, no network hop, nothing to be down).

What CEL reads and what it leaves to the webhook. A CEL expression sees the pod spec, not a shell, the kubelet or
pflag. The policies judge a container only when its command line is plain: `kube-apiserver` (any path) as the
first item of `command` + `args`, and every other item of the form `--flag=value` with no `$` in it. Anything
else that could run a kube-apiserver (webhook.commands.prefilter: a shell script, a wrapper, hyperkube, an image
entrypoint, `--flag value`, `$(VAR)` or any expansion that could make the name) is not passed silently: a
separate policy, bound with Warn, says "this command line needs the webhook".
Controls that depend on the Kubernetes version read from the image tag (retired flags) are left to the webhook.

Modes become bindings: the controls in enforce mode are one policy bound with Deny, warn with Warn, audit with
Audit. UPDATEs that leave every command line as it was, and objects being deleted, are not judged (the webhook's
rule, README "UPDATEs"), so the controllers that roll out a fix are never blocked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from webhook.cmdline.flags import FALSE_WORDS, TRUE_WORDS
from webhook.commands import prefilter
from webhook.core.catalog import Control
from webhook.core.policy import Mode, Policy

NAME = "apiserver-tls-guard"
DEFERRED_KEY = "needs-webhook"

_SPEC = prefilter.ANY_SPEC
_OLD_SPEC = _SPEC.replace("object.", "oldObject.")


def _containers(spec: str) -> str:
    # Every container list: a plain init container running kube-apiserver never exits (it serves while the pod
    # stays in Init), and ephemeral containers run beside the others.
    return prefilter.containers(spec)


_ARGV = "((has(c.command) ? c.command : []) + (has(c.args) ? c.args : []))"
_MAY_RUN = prefilter.container_may_run()


def _lit(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid CEL string literal


def _values(flag: str) -> str:
    """Every value given to --flag in the argv `a`, in order (CEL reads only the --flag=value form)."""
    prefix = f"--{flag}="
    return f"a.filter(x, x.startsWith({_lit(prefix)})).map(x, x.substring({len(prefix)}))"


def _last(flag: str) -> str:
    return f"{_values(flag)}[size({_values(flag)}) - 1]"


def _check(control: Control, allowed_ciphers: Sequence[str], insecure: Sequence[str]) -> str | None:
    """A CEL expression over one container's argv `a` that is true when the control passes; None: webhook only."""
    check = control.check
    op = check["op"]
    if op == "set":
        return " && ".join(
            f"(size({_values(f)}) > 0 && {_last(f)}.trim() != '')" for f in (str(n) for n in check["flags"])
        )
    if op == "unset":
        return f"size({_values(str(check['flag']))}) == 0"
    if op == "bool":
        flag, want, default = str(check["flag"]), bool(check["expect"]), bool(check["default"])
        words = sorted(TRUE_WORDS if want else FALSE_WORDS)
        return f"(size({_values(flag)}) == 0 ? {str(default == want).lower()} : {_last(flag)} in {json.dumps(words)})"
    if op == "list":
        flag = str(check["flag"])
        values = _values(flag)
        parts = [f"{values}.exists(v, v.split(',').exists(m, m != ''))"]  # unset or empty: the default applies
        valid = check.get("valid")
        if valid:
            parts.append(f"{values}.all(v, v == '' || v.split(',').all(m, m in {json.dumps(list(valid))}))")
        if check.get("includes"):
            parts.append(f"{values}.exists(v, v.split(',').exists(m, m == {_lit(str(check['includes']))}))")
        if check.get("excludes"):
            parts.append(f"!{values}.exists(v, v.split(',').exists(m, m == {_lit(str(check['excludes']))}))")
        return " && ".join(parts)
    if op == "ciphers":
        flag = str(check["flag"])
        values = _values(flag)
        good = sorted(set(allowed_ciphers) - set(insecure))
        return (
            f"{values}.exists(v, v != '') && {values}.all(v, v == '' || v.split(',').all(s, s in {json.dumps(good)}))"
        )
    return None  # retired flags: the Kubernetes version comes from the image tag, which the webhook reads


def _allowed_ciphers(control: Control, policy: Policy, benchmark: str) -> list[str]:
    catalog = policy.catalog
    suites = set(catalog.cipher_lists[catalog.cipher_list_for[benchmark]])
    aliases: Mapping[str, str] = control.check.get("aliases") or {}
    suites |= {alias for alias, target in aliases.items() if target in suites}
    suites |= {target for alias, target in aliases.items() if alias in suites}
    return sorted(suites)


def _message(control: Control, benchmark: str) -> str:
    cis = control.cis_id(benchmark)
    label = f"CIS {cis} (benchmark v{benchmark})" if cis else f"{control.key} (not in CIS v{benchmark})"
    return f"[{control.key}] {label}: {control.title}. {control.consequence}. Fix: {control.fix}"


_VARIABLES = [
    {"name": "spec", "expression": _SPEC},
    # Too big to scan within the cost limit: never judged here, always "needs the webhook".
    {"name": "too_big", "expression": prefilter.too_big("variables.spec")},
    {"name": "argvs", "expression": f"{_containers('variables.spec')}.map(c, {_ARGV})"},
    {
        "name": "direct",
        "expression": (
            "variables.argvs.filter(a, size(a) > 0 && (a[0] == 'kube-apiserver' || a[0].endsWith('/kube-apiserver')))"
        ),
    },
    # Plain enough for CEL: every item after the program is --flag=value, with no $ (kubelet or shell expansion).
    {
        "name": "readable",
        "expression": "variables.direct.filter(a, a.all(x, x == a[0] || x.matches('^--[a-z0-9-]+=[^$]*$')))",
    },
    {
        "name": "unchanged",
        "expression": (
            "request.operation == 'UPDATE' && "
            f"{_containers('(' + _OLD_SPEC + ')')}.map(c, {_ARGV}) == variables.argvs"
        ),
    },
]  # fmt: skip

MATCH_CONDITIONS = [
    {"name": "not-being-deleted", "expression": "!has(object.metadata.deletionTimestamp)"},
    *prefilter.any_conditions(),
]

RESOURCE_RULES = [
    {
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"],
        # An ephemeral container is added through its own subresource (kubectl debug), an UPDATE of the Pod.
        "resources": ["pods", "pods/ephemeralcontainers"],
    },
    {
        "apiGroups": ["apps"],
        "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"],
    },
    {
        "apiGroups": ["batch"],
        "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["jobs", "cronjobs"],
    },
]  # fmt: skip

_ACTIONS = {Mode.ENFORCE: "Deny", Mode.WARN: "Warn", Mode.AUDIT: "Audit"}


def _policy(name: str, validations: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": NAME}},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": RESOURCE_RULES,
                "namespaceSelector": {
                    "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [NAME]}]
                },
            },
            "matchConditions": MATCH_CONDITIONS,
            "variables": _VARIABLES,
            "validations": validations,
        },
    }


def _binding(policy_name: str, action: str) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": policy_name, "labels": {"app.kubernetes.io/name": NAME}},
        "spec": {"policyName": policy_name, "validationActions": [action] if action != "Deny" else ["Deny", "Audit"]},
    }


def generate(policy: Policy) -> list[dict[str, Any]]:
    """The policies and bindings for this policy's modes, in the order to apply them."""
    benchmark = policy.benchmark_for(None)
    insecure = sorted(policy.catalog.insecure_ciphers)
    groups: dict[Mode, list[dict[str, Any]]] = {}
    for control, mode in policy.active_controls:
        if mode not in _ACTIONS:
            continue
        allowed = _allowed_ciphers(control, policy, benchmark) if control.check["op"] == "ciphers" else []
        expression = _check(control, allowed, insecure)
        if expression is None:
            continue
        groups.setdefault(mode, []).append(
            {
                "expression": f"variables.unchanged || variables.readable.all(a, {expression})",
                "messageExpression": _lit(_message(control, benchmark)),
                "reason": "Forbidden",
            }
        )
    objects: list[dict[str, Any]] = []
    for mode, validations in groups.items():
        name = f"{NAME}-{mode.value}"
        objects += [_policy(name, validations), _binding(name, _ACTIONS[mode])]
    deferred = {
        "expression": f"variables.unchanged || (!variables.too_big && {_containers('variables.spec')}"
        f".filter(c, {_MAY_RUN}).size() == variables.readable.size())",
        "messageExpression": _lit(
            f"[{DEFERRED_KEY}] a kube-apiserver command line here is not one CEL can read (a shell script, a "
            "wrapper, hyperkube, $(VAR) or another expansion that could name it, --flag value, or the image's "
            "entrypoint): apiserver-tls-guard's webhook or `apiserver-tls-guard check` judges it"
        ),
    }
    name = f"{NAME}-needs-webhook"
    objects += [_policy(name, [deferred]), _binding(name, "Warn")]
    return objects
