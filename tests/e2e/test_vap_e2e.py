"""The ValidatingAdmissionPolicies of `apiserver-tls-guard vap`, installed on the real kube-apiserver and compared
with the webhook's engine on every corpus manifest and every reader fixture: wherever the policies judge a
command line, each control has the same verdict; where they cannot read it, they say "needs the webhook" and never
pass silently. The table of the run is written to vap-differential.md in the test's temporary folder and printed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.admission.test_corpus import EXPECTED, corpus_objects
from tests.cmdline.test_false_pass import CASES, GOOD, SCRIPTS, pod
from tests.conftest import cli, requires_shared
from tests.e2e.conftest import as_kube_system_pod, unique
from tests.e2e.controlplane import ControlPlane
from webhook.core.engine import evaluate
from webhook.core.policy import load_policy

pytestmark = requires_shared()
POLICY = load_policy(None, mode="warn")
# Retired-flag controls need the Kubernetes version from the image tag: the policies leave them to the webhook.
VAP_KEYS = {c.key for c, _ in POLICY.active_controls if c.check["op"] != "retired"}
WARNING = re.compile(
    r"^Warning: Validation failed for ValidatingAdmissionPolicy '[^']+' with binding '[^']+': \[([a-z-]+)\]"
)


@pytest.fixture(scope="module")
def policies(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    result = cli("vap", "--mode", "warn")
    assert result.returncode == 0, result.stderr
    applied = control_plane.kubectl("apply", "-f", "-", stdin=result.stdout)
    assert applied.returncode == 0, applied.stderr
    probe = pod({"command": ["kube-apiserver", *GOOD[:2]]})  # fails client-ca-file
    deadline = time.monotonic() + 30
    while "[client-ca-file]" not in control_plane.kubectl("create", "--dry-run=server", "-f", "-",
                                                          stdin=json.dumps(probe)).stderr:  # fmt: skip
        assert time.monotonic() < deadline, "the policies never took effect"
        time.sleep(0.5)
    yield control_plane
    control_plane.kubectl("delete", "-f", "-", stdin=result.stdout)


def _vap_verdict(control_plane: ControlPlane, obj: dict[str, Any]) -> tuple[set[str], bool]:
    """(failing control keys, deferred to the webhook) as the real apiserver's warnings tell them."""
    result = control_plane.kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(obj))
    assert result.returncode == 0, result.stderr
    keys = {m[1] for line in result.stderr.splitlines() if (m := WARNING.match(line))}
    return keys - {"needs-webhook"}, "needs-webhook" in keys


def _webhook_verdict(obj: dict[str, Any]) -> set[str]:
    return {f.key for f in evaluate(obj, POLICY).findings} & VAP_KEYS


def _subjects() -> list[tuple[str, dict[str, Any]]]:
    subjects = []
    for name in sorted(EXPECTED):
        [obj] = corpus_objects(name)
        subjects.append((name, as_kube_system_pod(obj, unique("vap"))))
    for case, (container, _, _) in sorted(CASES.items()):
        subjects.append((f"reader: {case}", as_kube_system_pod(pod(container), unique("vap"))))
    for case, (argv, _) in sorted(SCRIPTS.items()):
        container = {"name": "kas", "image": "quay.io/example/cp:1", "command": argv}
        subjects.append((f"reader: {case}", as_kube_system_pod(pod(container), unique("vap"))))
    plain = {
        "plain: compliant": [*GOOD, "--kubelet-client-certificate=/c", "--kubelet-client-key=/k",
                             "--kubelet-certificate-authority=/ca", "--etcd-certfile=/c", "--etcd-keyfile=/k",
                             "--etcd-cafile=/ca", "--anonymous-auth=false", "--authorization-mode=Node,RBAC",
                             "--service-account-key-file=/sa",
                             "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
        "plain: empty values and repeats": ["--tls-cert-file=/c", "--tls-private-key-file=", "--client-ca-file=/a",
                                            "--client-ca-file=", "--authorization-mode=RBAC",
                                            "--authorization-mode=", "--anonymous-auth=False"],
        "plain: invalid values": ["--authorization-mode=alwaysallow", "--anonymous-auth=no",
                                  "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_RSA_WITH_RC4_128_SHA",
                                  "--token-auth-file=/t", "--service-account-lookup=false"],
    }  # fmt: skip
    for case, flags in plain.items():
        subjects.append(
            (case, as_kube_system_pod(pod({"command": ["/usr/local/bin/kube-apiserver", *flags]}), unique("vap")))
        )
    return subjects


def test_vap_and_webhook_agree_wherever_the_vap_judges(policies: ControlPlane, tmp_path: Path) -> None:
    rows = []
    differs = []
    for label, obj in _subjects():
        vap_fails, deferred = _vap_verdict(policies, obj)
        ours = _webhook_verdict(obj)
        if deferred and not vap_fails:
            rows.append((label, 0, 0, "deferred: needs the webhook"))
            continue
        same = sum(1 for key in VAP_KEYS if (key in vap_fails) == (key in ours))
        wrong = sorted(key for key in VAP_KEYS if (key in vap_fails) != (key in ours))
        rows.append((label, same, len(wrong), ", ".join(wrong) or ("+ deferred container" if deferred else "")))
        if wrong:
            differs.append((label, wrong, sorted(vap_fails), sorted(ours)))
    table = ["| manifest | controls: same | differ | note |", "|---|---|---|---|"]
    table += [f"| {label} | {same} | {wrong} | {note} |" for label, same, wrong, note in rows]
    (tmp_path / "vap-differential.md").write_text("\n".join(table) + "\n")
    print("\n" + "\n".join(table))
    assert differs == [], differs
    judged = [r for r in rows if not r[3].startswith("deferred")]
    assert len(judged) >= 10, "the policies must judge the plain command lines, not defer everything"


def test_every_deferred_command_line_is_flagged_never_passed(policies: ControlPlane) -> None:
    for case, (container, _, _) in CASES.items():
        if container["command"][0] in ("kube-apiserver",) and all(
            re.match(r"^--[a-z0-9-]+=[^$]*$", a) for a in container["command"][1:]
        ):
            continue  # plain: judged, not deferred
        _, deferred = _vap_verdict(policies, as_kube_system_pod(pod(container), unique("vap")))
        assert deferred, case


def test_generated_objects_are_valid_yaml_for_each_mode() -> None:
    for mode in ("enforce", "warn", "audit"):
        docs = list(yaml.safe_load_all(cli("vap", "--mode", mode).stdout))
        kinds = [d["kind"] for d in docs]
        assert kinds.count("ValidatingAdmissionPolicy") == kinds.count("ValidatingAdmissionPolicyBinding") >= 2
        actions = {d["metadata"]["name"]: d["spec"]["validationActions"] for d in docs if "policyName" in d["spec"]}
        expected = {"enforce": ["Deny", "Audit"], "warn": ["Warn"], "audit": ["Audit"]}[mode]
        assert actions[f"apiserver-tls-guard-{mode}"] == expected
        assert actions["apiserver-tls-guard-needs-webhook"] == ["Warn"]
        # Manual controls stay at warn under enforce, as in the webhook: their own policy, bound with Warn.
        assert set(actions) <= {f"apiserver-tls-guard-{m}" for m in ("enforce", "warn", "audit", "needs-webhook")}
