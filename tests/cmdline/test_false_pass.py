"""No false pass: forms whose effective flags the reader cannot see, or that kube-apiserver reads otherwise than
they look, fail through `check` and through the webhook (HTTPS), each with its reason.

Rules followed (and read in their source): the kubelet's `$(VAR)` expansion (k8s.io/kubernetes
third_party/forked/golang/expansion: unknown references stay as written, valueFrom/envFrom only known at run
time); POSIX sh word expansion (`$VAR`, `"$@"`); spf13/pflag flag.go parseLongArg ('--flag arg' takes the next
item whatever it is) and parseSingleShortArg (a single dash is a cluster of shorthands).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.apiserver_client import ApiserverClient, admission_review
from tests.conftest import cli

GOOD = [
    "--tls-cert-file=/pki/apiserver.crt",
    "--tls-private-key-file=/pki/apiserver.key",
    "--client-ca-file=/pki/ca.crt",
]


def pod(container: dict[str, Any]) -> dict[str, Any]:
    base = {"name": "kube-apiserver", "image": "registry.k8s.io/kube-apiserver:v1.30.0"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kube-apiserver-cp-1", "namespace": "kube-system"},
        "spec": {"containers": [{**base, **container}]},
    }


def failing(obj: dict[str, Any]) -> dict[str, str]:
    """control -> detail, from `check` as a user runs it."""
    result = cli("check", "--format", "json", "-", stdin=json.dumps(obj))
    assert result.returncode in (0, 1), result.stderr
    return {f["control"]: f["detail"] for f in json.loads(result.stdout)["findings"]}


SECRET_ENV = [{"name": "EXTRA", "valueFrom": {"secretKeyRef": {"name": "apiserver-extra", "key": "args"}}}]

CASES: dict[str, tuple[dict[str, Any], str, str]] = {
    # name: (container, control that must fail, words its detail must carry)
    "secret-args-after-flags": (
        {"command": ["kube-apiserver", *GOOD, "$(EXTRA)"], "env": SECRET_ENV},
        "client-ca-file",
        "$(EXTRA) (content unknown before the pod runs) may set --client-ca-file",
    ),
    "envfrom-args": (
        {"command": ["kube-apiserver", *GOOD, "$(FROM_CONFIGMAP)"], "envFrom": [{"configMapRef": {"name": "x"}}]},
        "tls-cert-and-key",
        "$(FROM_CONFIGMAP)",
    ),
    "undefined-args": (
        {"command": ["kube-apiserver", *GOOD, "$(NOT_DEFINED)"]},
        "client-ca-file",
        "$(NOT_DEFINED)",
    ),
    "value-from-field": (
        {
            "command": ["kube-apiserver", *GOOD, "--authorization-mode=$(MODE)"],
            "env": [{"name": "MODE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['mode']"}}}],
        },
        "authz-not-always-allow",
        "--authorization-mode takes its value from $(MODE)",
    ),
    "shell-variable": (
        {"command": ["/bin/sh", "-c", "exec kube-apiserver " + " ".join(GOOD) + " $EXTRA"]},
        "client-ca-file",
        "$EXTRA",
    ),
    "shell-braced-variable-value": (
        {"command": ["/bin/sh", "-c", "exec kube-apiserver " + " ".join(GOOD[:2]) + " --client-ca-file=${CA}"]},
        "client-ca-file",
        "--client-ca-file takes its value from ${CA}",
    ),
    "custom-start-script-in-apiserver-image": (
        {"command": ["/start.sh"], "args": GOOD},
        "tls-cert-and-key",
        "/start.sh, a program this reader cannot look into,",
    ),
    "flag-value-swallows-the-next-flag": (
        {"command": ["kube-apiserver", *GOOD[:2], "--audit-log-path", "--client-ca-file=/pki/ca.crt"]},
        "client-ca-file",
        "--client-ca-file is not set",
    ),
    "single-dash-long-name": (
        {"command": ["kube-apiserver", "-tls-cert-file=/pki/apiserver.crt", *GOOD[1:]]},
        "tls-cert-and-key",
        "--tls-cert-file",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_unreadable_or_misleading_forms_fail_through_check(case: str) -> None:
    container, control, says = CASES[case]
    found = failing(pod(container))
    assert control in found, found
    assert says in found[control], found[control]


@pytest.mark.parametrize("case", sorted(CASES))
def test_unreadable_or_misleading_forms_are_denied_by_the_webhook(case: str, enforce_client: ApiserverClient) -> None:
    container, control, says = CASES[case]
    answer = enforce_client.review(admission_review(pod(container)))
    assert answer["allowed"] is False
    assert control in answer["auditAnnotations"]
    assert says in answer["status"]["message"]


def test_flags_given_after_an_unreadable_item_still_decide() -> None:
    container = {"command": ["kube-apiserver", "$(EXTRA)", *GOOD], "env": SECRET_ENV}
    found = failing(pod(container))
    assert "tls-cert-and-key" not in found and "client-ca-file" not in found
    assert "could not read the command line" in found["token-auth-file-unset"]  # passes when unset, else


def test_positional_parameters_of_the_script_are_read() -> None:
    """`sh -c 'exec kube-apiserver "$@"' sh --flags...`: the flags are the words after the script (POSIX 2.5.2)."""
    container = {"command": ["/bin/sh", "-c", 'exec kube-apiserver "$@"', "sh", *GOOD]}
    found = failing(pod(container))
    assert "tls-cert-and-key" not in found and "client-ca-file" not in found
    bad = failing(pod({"command": ["/bin/sh", "-c", 'exec kube-apiserver "$@"', "sh", *GOOD[:2]]}))
    assert bad["client-ca-file"] == "--client-ca-file is not set"


def test_the_same_forms_with_readable_values_pass() -> None:
    known = {"command": ["kube-apiserver", *GOOD[:2], "$(CA)"], "env": [{"name": "CA", "value": GOOD[2]}]}
    assert "client-ca-file" not in failing(pod(known))
    script = {"command": ["/bin/sh", "-c", "exec kube-apiserver " + " ".join(GOOD)]}
    assert not {"tls-cert-and-key", "client-ca-file"} & set(failing(pod(script)))


@pytest.mark.parametrize("cis_version", ["1.23", "1.9.0", "1.5.1", "2.0.1"])
def test_suites_go_calls_insecure_fail_under_every_benchmark(cis_version: str) -> None:
    """The v1.23-1.9.0 lists name 3DES and RSA key-exchange suites; Go's crypto/tls InsecureCipherSuites wins."""
    for suite in ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", "TLS_RSA_WITH_AES_128_GCM_SHA256"):
        obj = pod({"command": ["kube-apiserver", *GOOD, f"--tls-cipher-suites={suite}"]})
        result = cli("check", "--format", "json", "--cis-version", cis_version, "-", stdin=json.dumps(obj))
        found = {f["control"]: f["detail"] for f in json.loads(result.stdout)["findings"]}
        assert "Go itself lists as insecure" in found["tls-cipher-suites-strong"], (cis_version, suite)


def test_a_space_after_the_comma_stops_kube_apiserver() -> None:
    suites = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
    found = failing(pod({"command": ["kube-apiserver", *GOOD, f"--tls-cipher-suites={suites}"]}))
    assert "kube-apiserver will not start" in found["tls-cipher-suites-strong"]


SCRIPTS = {
    # name: (script argv, controls that must fail)
    "or-fallback-is-worse": (
        ["/bin/sh", "-c", f"kube-apiserver {' '.join(GOOD)} || exec kube-apiserver {' '.join(GOOD[:2])}"],
        {"client-ca-file"},
    ),
    "if-else-branch-is-worse": (
        ["/bin/bash", "-c", f"if [ -f /x ]; then exec kube-apiserver {' '.join(GOOD)}; "
         f"else exec kube-apiserver {' '.join(GOOD[2:])}; fi"],
        {"tls-cert-and-key"},
    ),
    "case-arm-is-worse": (
        ["/bin/sh", "-c", f"case $MODE in a) exec kube-apiserver {' '.join(GOOD)};; "
         f"*) exec kube-apiserver {' '.join(GOOD[:2])};; esac"],
        {"client-ca-file"},
    ),
    "function-runs-a-worse-one": (
        ["/bin/sh", "-c", f"run() {{ exec kube-apiserver {' '.join(GOOD[:2])}; }}; run"],
        {"client-ca-file"},
    ),
    "option-cluster-before-c": (
        ["/bin/bash", "-euo", "pipefail", "-c", f"exec kube-apiserver {' '.join(GOOD[:2])}"],
        {"client-ca-file"},
    ),
    "option-cluster-with-c-first": (
        ["/bin/bash", "-ceo", "pipefail", f"exec kube-apiserver {' '.join(GOOD[:2])}"],
        {"client-ca-file"},
    ),
    "exec-dollar-zero": (
        ["/bin/sh", "-c", 'exec "$0" "$@"', "kube-apiserver", *GOOD[:2]],
        {"client-ca-file"},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(SCRIPTS))
def test_every_apiserver_a_script_can_run_is_judged(case: str, enforce_client: ApiserverClient) -> None:
    argv, must_fail = SCRIPTS[case]
    container = {"name": "kas", "image": "quay.io/example/control-plane:1.0", "command": argv}  # not an apiserver image
    assert must_fail <= set(failing(pod(container)))
    answer = enforce_client.review(admission_review(pod(container)))
    assert answer["allowed"] is False and must_fail <= set(answer["auditAnnotations"])


def test_here_document_bodies_are_data_not_commands() -> None:
    script = (
        "cat <<EOF > /etc/motd\nkube-apiserver --anonymous-auth=true\nEOF\n"
        f"exec kube-apiserver {' '.join(GOOD)} --anonymous-auth=false"
    )
    container = {"name": "kas", "image": "quay.io/example/cp:1", "command": ["/bin/sh", "-c", script]}
    assert "anonymous-auth-disabled" not in failing(pod(container))


@pytest.mark.parametrize(
    ("flag", "control", "says"),
    [
        ("--authorization-mode=alwaysallow", "authz-not-always-allow", "'alwaysallow', which kube-apiserver refuses"),
        ("--authorization-mode=Node, RBAC", "authz-includes-rbac", "' RBAC', which kube-apiserver refuses"),
        ("--anonymous-auth=no", "anonymous-auth-disabled", "is not a boolean (strconv.ParseBool)"),
    ],
)
def test_values_kube_apiserver_refuses_at_start_fail_and_say_so(flag: str, control: str, says: str) -> None:
    """pkg/kubeapiserver/options/authorization.go: "authorization-mode %q is not a valid mode"; pflag's
    boolValue.Set is strconv.ParseBool."""
    found = failing(pod({"command": ["kube-apiserver", *GOOD, flag]}))
    assert says in found[control] and "will not start" in found[control]
