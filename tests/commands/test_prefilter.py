"""What kube-apiserver sends (webhook.commands.prefilter), evaluated with a CEL library on every fixture: whatever the
engine judges is sent, by the webhooks of the kustomize base (and so of the chart, which tests/e2e/test_chart_e2e.py
renders equal to it) and by the policies of `vap` and `static`. tests/e2e/test_prefilter_e2e.py proves the same
on the real kube-apiserver, which is the oracle for CEL's semantics and costs.

The CEL library lacks two functions kube-apiserver has; they are defined here as kube-apiserver defines them:
`replace` (cel-go ext/strings.go: every occurrence) and `sum` (k8s.io/apiserver pkg/cel/library/lists.go).
"""

from __future__ import annotations

import copy
from typing import Any

import cel
import pytest
import yaml

from release.match_conditions import CONDITIONS, disagreements
from tests.admission.test_corpus import EXPECTED, corpus_objects
from tests.cmdline.test_false_pass import CASES, GOOD, SCRIPTS, pod
from tests.conftest import ROOT, requires_shared
from webhook.commands import prefilter
from webhook.commands.vap import MATCH_CONDITIONS
from webhook.core.engine import evaluate
from webhook.core.policy import load_policy

POLICY = load_policy(None, mode="enforce")
IMAGE = "quay.io/example/control-plane:1.0"  # not an apiserver image: only the command line can tell
BAD = GOOD[:2]  # no --client-ca-file: every form below fails client-ca-file when the engine reads it


def container(**fields: Any) -> dict[str, Any]:
    return {"name": "kas", "image": IMAGE, **fields}


def with_spec(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kas", "namespace": "kube-system"}, "spec": spec}


PAUSE = {"name": "main", "image": "registry.k8s.io/pause:3.10", "command": ["/pause"]}

# The forms of issue 19 point 3, each one a real kube-apiserver run: name -> pod.
FORMS: dict[str, dict[str, Any]] = {
    "program-from-env": pod(
        container(command=["$(BIN)", *BAD], env=[{"name": "BIN", "value": "/usr/local/bin/kube-apiserver"}])
    ),
    "name-made-of-env-pieces": pod(
        container(command=["/usr/local/bin/$(A)-apiserver", *BAD], env=[{"name": "A", "value": "kube"}])
    ),
    "hyperkube-made-of-env-pieces": pod(
        container(command=["/hyper$(K)", "apiserver", *BAD], env=[{"name": "K", "value": "kube"}])
    ),
    "double-quotes-in-a-script": pod(container(command=["/bin/sh", "-c", f'exec kube-"apiserver" {" ".join(BAD)}'])),
    "single-quotes-in-a-script": pod(container(command=["/bin/sh", "-c", f"exec 'kube-api'server {' '.join(BAD)}"])),
    "backslash-in-a-script": pod(container(command=["/bin/sh", "-c", f"exec kube\\-apiserver {' '.join(BAD)}"])),
    "line-continuation-in-a-script": pod(
        container(command=["/bin/sh", "-c", f"exec kube-api\\\nserver {' '.join(BAD)}"])
    ),
    "shell-variable-pieces": pod(
        container(command=["/bin/sh", "-c", f"A=kube; exec /bin/$A-apiserver {' '.join(BAD)}"])
    ),
    "positional-parameter": pod(container(command=["/bin/sh", "-c", 'exec "$0" "$@"'], args=["kube-apiserver", *BAD])),
    "plain-init-container": with_spec(
        {"initContainers": [container(command=["kube-apiserver", *BAD])], "containers": [PAUSE]}
    ),
    "ephemeral-container": with_spec(
        {"containers": [PAUSE], "ephemeralContainers": [container(command=["kube-apiserver", *BAD])]}
    ),
    "apiserver-image-architecture-suffix": pod(
        container(image="registry.k8s.io/kube-apiserver-amd64:v1.30.0", command=["/bin/sh", "/start.sh"])
    ),
    "hyperkube-image-own-script": pod(container(image="k8s.gcr.io/hyperkube:v1.18.0", command=["/start.sh"])),
}  # fmt: skip

# Pods that have nothing to do with kube-apiserver, as kube-system holds them: never sent to the webhook whose
# failurePolicy is Fail in enforce mode (they would wait on us while we are down: the deadlock).
OTHERS: dict[str, dict[str, Any]] = {
    "coredns": pod({"name": "coredns", "image": "registry.k8s.io/coredns/coredns:v1.12.0",
                    "args": ["-conf", "/etc/coredns/Corefile"]}),
    "kube-proxy": pod({"name": "kube-proxy", "image": "registry.k8s.io/kube-proxy:v1.37.2",
                       "command": ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf",
                                   "--hostname-override=$(NODE_NAME)"],
                       "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}),
    # Cilium's mount-cgroup init container (its Helm chart), with its shell variables.
    "cilium-mount-cgroup": with_spec({"initContainers": [{
        "name": "mount-cgroup", "image": "quay.io/cilium/cilium:v1.17.0",
        "command": ["sh", "-ec", "cp /usr/bin/cilium-mount /hostbin/cilium-mount; "
                    "nsenter --cgroup=/hostproc/1/ns/cgroup --mount=/hostproc/1/ns/mnt "
                    '"${BIN_PATH}/cilium-mount" $CGROUP_ROOT; rm /hostbin/cilium-mount'],
        "env": [{"name": "CGROUP_ROOT", "value": "/run/cilium/cgroupv2"},
                {"name": "BIN_PATH", "value": "/opt/cni/bin"}],
    }], "containers": [{"name": "cilium-agent", "image": "quay.io/cilium/cilium:v1.17.0",
                        "command": ["cilium-agent"], "args": ["--config-dir=/tmp/cilium/config-map"]}]}),
    "our-own-webhook": pod({"name": "webhook", "image": "ghcr.io/x/apiserver-tls-guard:0.1.0",
                            "args": ["serve", "--namespace=$(POD_NAMESPACE)"]}),
}  # fmt: skip


def context(obj: dict[str, Any]) -> cel.Context:
    ctx = cel.Context({"object": obj})
    ctx.add_function("replace", lambda text, old, new: text.replace(old, new))
    ctx.add_function("sum", lambda values: sum(values))
    return ctx


def true(expression: str, obj: dict[str, Any]) -> bool:
    return bool(cel.evaluate(expression, context(obj)))


def _base() -> dict[str, list[dict[str, Any]]]:
    config = yaml.safe_load((ROOT / "manifests/base/validatingwebhookconfiguration.yaml").read_text())
    return {w["name"]: w["matchConditions"] for w in config["webhooks"]}


def sent_by(obj: dict[str, Any]) -> set[str]:
    """The webhooks of the kustomize base whose matchConditions all hold for the object."""
    pods = obj["kind"] == "Pod"
    return {
        name
        for name, conditions in _base().items()
        if (name != "workloads.apiserver-tls-guard.io") == pods and all(true(c["expression"], obj) for c in conditions)
    }


def policies_send(obj: dict[str, Any]) -> bool:
    return all(true(c["expression"], obj) for c in MATCH_CONDITIONS)


def as_workload(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    template = {"metadata": {"labels": {"app": "kas"}}, "spec": copy.deepcopy(obj["spec"])}
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": "kas"}}, "template": template}
    if kind == "CronJob":
        spec = {"schedule": "@daily", "jobTemplate": {"spec": {"template": template}}}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "kas", "namespace": "hosted"}, "spec": spec}


def fixtures() -> list[tuple[str, dict[str, Any]]]:
    found = [(f"issue 19: {name}", obj) for name, obj in FORMS.items()]
    found += [(f"reader: {name}", pod(c)) for name, (c, _, _) in CASES.items()]
    found += [(f"script: {name}", pod(container(command=argv))) for name, (argv, _) in SCRIPTS.items()]
    return found


def test_the_base_and_the_chart_hold_the_generated_conditions() -> None:
    assert disagreements() == []
    assert set(_base()) == set(CONDITIONS)


@pytest.mark.parametrize(("label", "obj"), fixtures(), ids=[label for label, _ in fixtures()])
def test_whatever_the_engine_judges_is_sent(label: str, obj: dict[str, Any]) -> None:
    """The engine judges it (today or after it reads more): kube-apiserver must send it, as a Pod and as every
    workload kind, to the webhooks and to the policies."""
    assert sent_by(obj), label
    assert policies_send(obj), label
    if "ephemeralContainers" in obj["spec"]:
        return  # pod templates cannot carry ephemeral containers
    for kind in ("Deployment", "StatefulSet", "CronJob"):
        workload = as_workload(obj, kind)
        assert sent_by(workload) == {"workloads.apiserver-tls-guard.io"}, (label, kind)
        assert policies_send(workload), (label, kind)


@requires_shared()
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_corpus_manifest_is_sent(name: str) -> None:
    [obj] = corpus_objects(name)
    assert sent_by(dict(obj)) and policies_send(dict(obj)), name


def test_every_fixture_the_engine_finds_is_sent() -> None:
    """The property, on the engine as it is: every object it finds a kube-apiserver in is sent."""
    judged = [label for label, obj in fixtures() if evaluate(obj, POLICY).runs_apiserver]
    assert len(judged) > 20
    assert [label for label, obj in fixtures() if evaluate(obj, POLICY).runs_apiserver and not sent_by(obj)] == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("program-from-env", {"pods.apiserver-tls-guard.io"}),  # the env value names it
        ("name-made-of-env-pieces", {"expansions.apiserver-tls-guard.io"}),
        ("hyperkube-made-of-env-pieces", {"expansions.apiserver-tls-guard.io"}),
        ("double-quotes-in-a-script", {"pods.apiserver-tls-guard.io"}),
        ("single-quotes-in-a-script", {"pods.apiserver-tls-guard.io"}),
        ("backslash-in-a-script", {"pods.apiserver-tls-guard.io"}),
        ("line-continuation-in-a-script", {"pods.apiserver-tls-guard.io"}),
        ("shell-variable-pieces", {"expansions.apiserver-tls-guard.io"}),
        ("plain-init-container", {"pods.apiserver-tls-guard.io"}),
        ("ephemeral-container", {"pods.apiserver-tls-guard.io"}),
        ("apiserver-image-architecture-suffix", {"pods.apiserver-tls-guard.io"}),
    ],
)
def test_each_form_goes_to_exactly_one_webhook(name: str, expected: set[str]) -> None:
    """Never reviewed twice: the expansion webhook takes only what the first does not."""
    assert sent_by(FORMS[name]) == expected


@pytest.mark.parametrize("name", sorted(OTHERS))
def test_other_pods_never_wait_on_us(name: str) -> None:
    """Not sent to the webhook that fails closed; those with expansions go to the one that fails open."""
    sent = sent_by(OTHERS[name])
    assert "pods.apiserver-tls-guard.io" not in sent
    assert sent <= {"expansions.apiserver-tls-guard.io"}
    if name == "coredns":
        assert sent == set() and not policies_send(OTHERS[name])


def _padded(text: int, **fields: Any) -> dict[str, Any]:
    return pod(container(command=["/bin/sh", "-c", "true # " + "x" * text], **fields))


def test_an_object_too_big_to_scan_is_sent_by_the_webhook_that_fails_closed() -> None:
    """Above the limits nothing is scanned (so the cost stays bounded) and the object is sent."""
    assert sent_by(_padded(prefilter.MAX_TEXT)) == {"pods.apiserver-tls-guard.io"}
    assert sent_by(_padded(prefilter.MAX_TEXT - 1000)) == set()
    many = with_spec({"containers": [dict(PAUSE, name=f"c{i}") for i in range(prefilter.MAX_CONTAINERS + 1)]})
    assert sent_by(many) == {"pods.apiserver-tls-guard.io"}
    items = pod(container(command=["/pause"], args=["x"] * prefilter.MAX_ITEMS))
    assert sent_by(items) == {"pods.apiserver-tls-guard.io"}
    assert policies_send(_padded(prefilter.MAX_TEXT)) and policies_send(many)


def test_subresource_and_every_container_list_are_in_the_rules() -> None:
    config = yaml.safe_load((ROOT / "manifests/base/validatingwebhookconfiguration.yaml").read_text())
    for hook in config["webhooks"]:
        if hook["name"] == "workloads.apiserver-tls-guard.io":
            continue
        assert hook["rules"][0]["resources"] == ["pods", "pods/ephemeralcontainers"]
        assert "UPDATE" in hook["rules"][0]["operations"]
    failure = {h["name"]: h["failurePolicy"] for h in config["webhooks"]}
    assert failure["expansions.apiserver-tls-guard.io"] == "Ignore"
