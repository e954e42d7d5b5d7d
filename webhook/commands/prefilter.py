"""What kube-apiserver sends us: the CEL `matchConditions` of the webhooks (kustomize base, chart, static guardrail)
and of the ValidatingAdmissionPolicies, written once here.

A pre-filter that is narrower than the engine is a false pass nobody sees: kube-apiserver never sends the object,
so nothing judges it. These conditions are therefore a superset of what the engine (webhook.cmdline.locate) can
find, built from where a kube-apiserver's name can come from:

- the text of `command`, `args`, the `value` of each `env` entry (the kubelet's `$(VAR)` expands from them) and
  the image, of every container list: containers, initContainers (a plain init container running kube-apiserver
  never exits, so it serves for the pod's life: kubelet `computeInitContainerActions`) and ephemeralContainers;
- once the shell's quoting is undone: quotes and backslashes inside a word (`kube-"apiserver"`, `kube\\-apiserver`,
  backslash-newline) are deleted before looking for `kube-apiserver` or `hyperkube` (POSIX XCU 2.2);
- an expansion can make any name (`$(BIN)` with BIN in env, `/usr/local/bin/$(A)-apiserver`, `/hyper$(K)`, a
  shell's `$VAR`, `${p:-w}`, `$(cmd)`, backticks): any `$` or backtick in command, args or env values.

The third kind is common in pods that have nothing to do with kube-apiserver (CNI and DNS scripts use `$VAR`), so
for Pods it has its own webhook with failurePolicy Ignore: while our webhook is down, such pods never wait on it
(no deadlock, README "failurePolicy"), and kube-apiserver counts and annotates every request it let through.

Cost. kube-apiserver stops a condition at 1,000,000 cost units (k8s.io/apiserver pkg/apis/cel/config.go
PerCallLimit; 2,500,000 for all of one webhook's conditions) and then applies the failurePolicy: with Ignore, an
object padded until the scan is too dear would be skipped. So an object too big to scan cheaply is sent by the
first webhook without scanning: more than MAX_CONTAINERS containers, a container with more than MAX_ITEMS
command, args and env entries, or more than MAX_TEXT characters in all (sizes cost O(1); `sum` is one pass, and
each character scanned costs 0.1: cel-go interpreter/runtimecost.go, k8s.io/apiserver pkg/cel/library/cost.go).
tests/e2e/test_prefilter_e2e.py measures the real cost of the largest object still scanned.
"""

from __future__ import annotations

from typing import Any

NAMES = ("kube-apiserver", "hyperkube")
MAX_CONTAINERS = 32
MAX_ITEMS = 512
MAX_TEXT = 131072

POD_SPEC = "object.spec"
TEMPLATE_SPEC = "(object.kind == 'CronJob' ? object.spec.jobTemplate.spec.template.spec : object.spec.template.spec)"
# What ValidatingAdmissionPolicies see: pods and workloads through one policy.
ANY_SPEC = f"(object.kind == 'Pod' ? object.spec : {TEMPLATE_SPEC})"


def containers(spec: str) -> str:
    """Every container list of a pod spec, as one CEL list."""
    return (
        f"({spec}.containers + (has({spec}.initContainers) ? {spec}.initContainers : [])"
        f" + (has({spec}.ephemeralContainers) ? {spec}.ephemeralContainers : []))"
    )


# The texts of container `c` that the kubelet or a shell may turn into a program name.
_TEXTS = (
    "((has(c.command) ? c.command : []) + (has(c.args) ? c.args : [])"
    " + (has(c.env) ? c.env.map(e, has(e.value) ? e.value : '') : []))"
)
_IMAGE = "(has(c.image) ? c.image : '')"
_ITEMS = "(has(c.command) ? size(c.command) : 0) + (has(c.args) ? size(c.args) : 0) + (has(c.env) ? size(c.env) : 0)"


def _lit(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def _contains_name(var: str) -> str:
    return " || ".join(f"{var}.contains({_lit(name)})" for name in NAMES)


# Quotes and backslashes are only deleted (the costlier path) in a text that holds one; `[x].exists(t, …)` binds
# the unquoted text once, so it is made once.
_UNQUOTED = "s" + "".join(f".replace({_lit(old)}, '')" for old in ("\\\n", "\\", '"', "'"))
_NAMES_IN_S = (
    f"{_contains_name('s')} || ((s.contains('\\\\') || s.contains('\"') || s.contains(\"'\"))"
    f" && [{_UNQUOTED}].exists(u, {_contains_name('u')}))"
)


def _guards(cs: str) -> tuple[str, str]:
    """(too many containers or entries, too much text in `ts`): each costs O(1) or one pass over sizes."""
    return (
        f"size({cs}) > {MAX_CONTAINERS} || {cs}.exists(c, {_ITEMS} > {MAX_ITEMS})",
        f"ts.map(t, t.map(s, size(s)).sum()).sum() > {MAX_TEXT}",
    )


def _scan(spec: str, body: str, *, big: bool) -> str:
    """`body` over `ts` (for each container of `spec`, its texts and image); an object too big to scan is sent
    (`big`) or not. `[x].exists(v, …)` binds x to v once, so each list is made once."""
    many, long = _guards("cs")
    texts = f"cs.map(c, {_TEXTS} + [{_IMAGE}])"
    if big:
        return f"[{containers(spec)}].exists(cs, {many} || [{texts}].exists(ts, {long} || {body}))"
    return f"[{containers(spec)}].exists(cs, !({many}) && [{texts}].exists(ts, !({long}) && {body}))"


_EXPANSION_IN_S = "s.contains('$') || s.contains('`')"
_NAMED = f"ts.exists(t, t.exists(s, {_NAMES_IN_S}))"
_MAY_RUN = f"ts.exists(t, t.exists(s, {_NAMES_IN_S} || {_EXPANSION_IN_S}))"


def too_big(spec: str) -> str:
    """True when `spec` is too big to scan within kube-apiserver's cost limit (such an object is sent)."""
    many, long = _guards("cs")
    return f"[{containers(spec)}].exists(cs, {many} || [cs.map(c, {_TEXTS} + [{_IMAGE}])].exists(ts, {long}))"


def container_may_run() -> str:
    """Whether container `c` could run kube-apiserver: it names it (quotes undone) or holds an expansion."""
    return f"({_TEXTS} + [{_IMAGE}]).exists(s, {_NAMES_IN_S} || {_EXPANSION_IN_S})"


def pod_conditions() -> list[dict[str, Any]]:
    """The Pod webhook whose failurePolicy follows the mode: pods that name kube-apiserver, or too big to scan."""
    return [{"name": "names-kube-apiserver", "expression": _scan(POD_SPEC, _NAMED, big=True)}]


def expansion_conditions() -> list[dict[str, Any]]:
    """The Pod webhook with failurePolicy Ignore: the rest, where only an expansion could make the name."""
    body = f"!{_NAMED} && ts.exists(t, t.exists(s, {_EXPANSION_IN_S}))"
    return [{"name": "expands-variables", "expression": _scan(POD_SPEC, body, big=False)}]


def workload_conditions() -> list[dict[str, Any]]:
    """The workload webhook (opted-in namespaces only): everything that could run kube-apiserver."""
    return [{"name": "runs-kube-apiserver", "expression": _scan(TEMPLATE_SPEC, _MAY_RUN, big=True)}]


def any_conditions() -> list[dict[str, Any]]:
    """Pods and workloads through one condition (policies and the static node-local webhook)."""
    return [{"name": "runs-kube-apiserver", "expression": _scan(ANY_SPEC, _MAY_RUN, big=True)}]
