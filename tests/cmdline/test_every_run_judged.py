"""Issue 19, points 1, 2 and 7: every kube-apiserver that can run is judged, and an apiserver image whose program
cannot be read is never a pass. Each case through the engine, `check` and the webhook over HTTPS.

Rules followed: the kubelet starts init containers one by one and waits for each to exit
(pkg/kubelet/kuberuntime/kuberuntime_container.go computeInitContainerActions), so a plain init container running
kube-apiserver serves for the pod's life; ephemeral containers run beside the others. The release images were
published per architecture (kube-apiserver-amd64 ...; build/lib/release.sh). The flag types are the built
binary's (tests/e2e/test_flag_types_e2e.py confirms them against its `--v=1` FLAG lines).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.apiserver_client import ApiserverClient, admission_review
from tests.conftest import cli
from webhook.core.engine import evaluate
from webhook.core.policy import Policy

GOOD = [
    "--tls-cert-file=/pki/apiserver.crt",
    "--tls-private-key-file=/pki/apiserver.key",
    "--client-ca-file=/pki/ca.crt",
]
APISERVER_IMAGE = "registry.k8s.io/kube-apiserver:v1.30.0"
OTHER_IMAGE = "quay.io/example/tools:1.0"
UNREADABLE = "a program this reader cannot look into"


def pod(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kube-apiserver-cp-1", "namespace": "kube-system"},
        "spec": spec,
    }


def one(container: dict[str, Any], image: str = APISERVER_IMAGE) -> dict[str, Any]:
    return pod({"containers": [{"name": "kube-apiserver", "image": image, **container}]})


def failing(obj: dict[str, Any]) -> dict[str, str]:
    result = cli("check", "--format", "json", "-", stdin=json.dumps(obj))
    assert result.returncode in (0, 1), result.stderr
    return {f["control"]: f["detail"] for f in json.loads(result.stdout)["findings"]}


def engine_failing(obj: dict[str, Any]) -> dict[str, str]:
    return {f.key: f.detail for f in evaluate(obj, Policy()).findings}


# --- 19.1: init containers and ephemeral containers ------------------------------------------------------------

BAD = ["kube-apiserver", *GOOD[:2]]  # no client CA
CONTAINER_LISTS = {
    "plain-init-container": {
        "initContainers": [{"name": "setup", "image": APISERVER_IMAGE, "command": BAD}],
        "containers": [{"name": "main", "image": OTHER_IMAGE, "command": ["sleep", "infinity"]}],
    },
    "ephemeral-container": {
        "containers": [{"name": "main", "image": OTHER_IMAGE, "command": ["sleep", "infinity"]}],
        "ephemeralContainers": [{"name": "debug", "image": APISERVER_IMAGE, "command": BAD}],
    },
}


@pytest.mark.parametrize("case", sorted(CONTAINER_LISTS))
def test_apiservers_in_every_container_list_are_judged(case: str, enforce_client: ApiserverClient) -> None:
    obj = pod(CONTAINER_LISTS[case])
    assert engine_failing(obj)["client-ca-file"] == "--client-ca-file is not set"
    assert failing(obj)["client-ca-file"] == "--client-ca-file is not set"
    answer = enforce_client.review(admission_review(obj))
    assert answer["allowed"] is False and "client-ca-file" in answer["auditAnnotations"]


def test_a_compliant_init_container_passes_and_a_pre_pull_echo_is_not_an_apiserver() -> None:
    """The shared corpus's hypershift pod pre-pulls the hyperkube image with `echo ...; exit 0`: readable, and it
    runs no kube-apiserver, so it is not judged (no false fail)."""
    obj = pod(
        {
            "initContainers": [
                {"name": "pre-pull", "image": "hyperkube", "command": ["/bin/sh", "-c", "echo 'pulled'; exit 0"]},
                {"name": "setup", "image": APISERVER_IMAGE, "command": ["kube-apiserver", *GOOD]},
            ],
            "containers": [{"name": "main", "image": OTHER_IMAGE, "command": ["sleep", "infinity"]}],
        }
    )
    verdict = evaluate(obj, Policy())
    assert verdict.containers == ("setup",)
    assert not {"tls-cert-and-key", "client-ca-file"} & {f.key for f in verdict.findings}


# --- 19.2: an apiserver image whose program cannot be read -----------------------------------------------------

UNREADABLE_PROGRAMS: dict[str, tuple[list[str], str]] = {
    # name: (command, what the finding names)
    "sh-script-file": (["sh", "/start.sh"], "/start.sh"),
    "sh-c-script-file": (["sh", "-c", "/start.sh"], "/start.sh"),
    "tini": (["tini", "--", "/start.sh"], "/start.sh"),
    "go-runner": (["/go-runner", "/start.sh"], "/start.sh"),
    "exec-a": (["sh", "-c", "exec -a kube-apiserver /start.sh"], "/start.sh"),
    "eval": (["sh", "-c", "eval /start.sh"], "/start.sh"),
    "command-p": (["sh", "-c", "command -p /start.sh"], "/start.sh"),
    "env-S-escapes": (["env", "-S", "/start.sh\\_--v=2"], "env -S"),
    "variable-program": (["sh", "-c", 'exec "$BIN" --v=2'], "$BIN"),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE_PROGRAMS))
@pytest.mark.parametrize(
    "image",
    [APISERVER_IMAGE, "gcr.io/google_containers/kube-apiserver-amd64:v1.8.1", "k8s.gcr.io/hyperkube-arm64:v1.9.0"],
)
def test_an_apiserver_image_whose_program_cannot_be_read_fails(case: str, image: str) -> None:
    command, names = UNREADABLE_PROGRAMS[case]
    obj = one({"command": command, "args": GOOD}, image)
    for found in (engine_failing(obj), failing(obj)):
        for control in ("tls-cert-and-key", "client-ca-file"):
            assert found[control].startswith("could not read the command line: "), (case, found)
            assert names in found[control] and UNREADABLE in found[control]


@pytest.mark.parametrize("case", ["tini", "exec-a", "variable-program"])
def test_an_unreadable_apiserver_image_is_denied_by_the_webhook(case: str, enforce_client: ApiserverClient) -> None:
    command, names = UNREADABLE_PROGRAMS[case]
    answer = enforce_client.review(admission_review(one({"command": command, "args": GOOD})))
    assert answer["allowed"] is False
    assert "could not read the command line" in answer["status"]["message"] and names in answer["status"]["message"]


READ_THROUGH: dict[str, Callable[[str], list[str]]] = {
    # the same wrappers, now followed to kube-apiserver (given its flags as one string): judged in any image
    "exec-a": lambda flags: ["sh", "-c", f"exec -a apiserver kube-apiserver {flags}"],
    "eval": lambda flags: ["sh", "-c", f"eval 'kube-apiserver {flags}'"],
    "command-p": lambda flags: ["sh", "-c", f"command -p kube-apiserver {flags}"],
    "env-S": lambda flags: ["env", "-S", f"kube-apiserver {flags}"],
    "env-options": lambda flags: ["env", "-i", "A=1", "-u", "B", "kube-apiserver", *flags.split()],
    "busybox-applet": lambda flags: ["busybox", "timeout", "10", "kube-apiserver", *flags.split()],
}


@pytest.mark.parametrize("case", sorted(READ_THROUGH))
def test_wrappers_are_followed_to_the_apiserver_in_any_image(case: str) -> None:
    bad = one({"command": READ_THROUGH[case](" ".join(GOOD[:2]))}, OTHER_IMAGE)
    assert failing(bad)["client-ca-file"] == "--client-ca-file is not set", case
    good = one({"command": READ_THROUGH[case](" ".join(GOOD))}, OTHER_IMAGE)
    assert not {"tls-cert-and-key", "client-ca-file"} & set(failing(good)), case


def test_an_apiserver_image_running_something_readable_that_is_not_an_apiserver_passes() -> None:
    for command in (["sh", "-c", "sleep infinity"], ["/hyperkube", "controller-manager", "--v=2"]):
        image = "k8s.gcr.io/hyperkube-amd64:v1.9.0"
        assert evaluate(one({"command": command}, image), Policy()).containers == ()


def test_an_arch_suffixed_image_without_command_runs_its_entrypoint() -> None:
    obj = one({"args": GOOD}, "gcr.io/google_containers/kube-apiserver-amd64:v1.8.1")
    verdict = evaluate(obj, Policy())
    assert verdict.containers == ("kube-apiserver",)
    assert not {"tls-cert-and-key", "client-ca-file"} & {f.key for f in verdict.findings}


# --- 19.7: pflag's types ----------------------------------------------------------------------------------------


def test_allow_metric_labels_manifest_takes_the_next_word() -> None:
    """The real kube-apiserver: `--allow-metric-labels-manifest --client-ca-file=/x` -> "failed to read allow list
    manifest: open --client-ca-file=/x" (v1.37.2), so no client CA is set."""
    obj = one({"command": ["kube-apiserver", *GOOD[:2], "--allow-metric-labels-manifest", "--client-ca-file=/x"]})
    assert failing(obj)["client-ca-file"] == "--client-ca-file is not set"
    assert engine_failing(obj)["client-ca-file"] == "--client-ca-file is not set"


def test_emulation_forward_compatible_flags_are_booleans() -> None:
    """kube-apiserver v1.37.2 --v=1 prints FLAG: --client-ca-file="/pki/ca.crt" after a bare
    --emulation-forward-compatible: a boolean never takes the next word."""
    for flag in ("--emulation-forward-compatible", "--runtime-config-emulation-forward-compatible"):
        obj = one({"command": ["kube-apiserver", *GOOD[:2], flag, GOOD[2]]})
        assert "client-ca-file" not in failing(obj), flag
