"""Right answers: every manifest of ../shared/corpus created as a kube-system Pod through the real kube-apiserver
with one engine in enforce mode; per seed control, the engine's verdict is "fail" when its denial names the control
and "pass" otherwise, compared with the corpus's expected.json.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Any

from tests.admission.test_corpus import EXPECTED, corpus_objects
from tests.cmdline.test_false_pass import CASES, SCRIPTS, pod
from tests.e2e.conftest import as_kube_system_pod, audit_events, unique, wait_for
from tests.e2e.controlplane import ControlPlane

# The two seed controls, as expected.json keys them, and the CIS id (v1.5.1) every engine's denial names: the
# peers' policies say "CIS 1.2.30: ...", ours and our VAP "CIS 1.2.30 (benchmark v1.5.1): ...".
SEED = {"tls-cert-and-key": "CIS 1.2.30", "client-ca-file": "CIS 1.2.31"}
DEFERRED = "needs-webhook"  # our VAP's Warn for command lines CEL cannot read


@dataclass
class Answer:
    name: str
    control: str
    expected: str
    got: str
    deferred: bool  # a "this needs the webhook" warning came with it (our VAP only)
    denied: bool  # the create was refused, whichever controls the denial named

    @property
    def right(self) -> bool:
        return self.got == self.expected


def judge(stderr: str, returncode: int, audited: list[str]) -> tuple[dict[str, str], bool]:
    """Per seed control, "fail" when a denial line (not a `Warning:` line) or an audit annotation of the denied
    create names it; and whether it was deferred."""
    lines = stderr.splitlines()
    denial = [line for line in lines if not line.startswith("Warning:")] + audited if returncode != 0 else []
    got = {key: "fail" if _names(denial, cis) else "pass" for key, cis in SEED.items()}
    deferred = any(line.startswith("Warning:") and DEFERRED in line for line in lines)
    return got, deferred


def _names(lines: list[str], cis: str) -> bool:
    """Whether a line names the control: "CIS 1.2.3:" or "CIS 1.2.3 (", never the prefix of "CIS 1.2.30"."""
    return any(f"{cis}:" in line or f"{cis} (" in line for line in lines)


def _audited(plane: ControlPlane, name: str, result: subprocess.CompletedProcess[str]) -> list[str]:
    """The annotations of a denied create's audit event. kube-apiserver's denial names only the first failed
    validation of a ValidatingAdmissionPolicy (k8s.io/apiserver pkg/admission/plugin/policy/validating/
    dispatcher.go: `deniedDecisions[0]`); its `validation.policy.admission.k8s.io/validation_failure` annotation
    lists them all, so a policy with both controls is judged on both."""
    if result.returncode == 0:
        return []

    def annotations() -> list[str]:
        for event in audit_events(plane, name):
            if event["verb"] == "create" and event["stage"] == "ResponseComplete":
                return [f"{k}={v}" for k, v in (event.get("annotations") or {}).items()] or ["(none)"]
        return []

    return list(wait_for(annotations, 15, f"the audit event of {name}"))


Subject = tuple[str, dict[str, Any], dict[str, str]]  # name, pod, seed control -> expected verdict


def corpus_subjects() -> list[Subject]:
    out = []
    for name in sorted(EXPECTED):
        [obj] = corpus_objects(name)
        out.append((name, as_kube_system_pod(obj, unique("peers")), {k: EXPECTED[name][k] for k in SEED}))
    return out


def fixture_subjects() -> list[Subject]:
    """The project's own false-pass fixtures (tests/cmdline/test_false_pass.py): command lines whose value for a
    seed control cannot be known from the pod spec or whose shell runs a worse command line, so that control must
    not pass. Only those controls are judged; these cases were written for the product, so they say where string
    matching fails rather than score the peers on the corpus."""
    out = []
    for case, (container, key, _) in sorted(CASES.items()):
        if key in SEED:
            out.append((f"reader: {case}", as_kube_system_pod(pod(container), unique("peers")), {key: "fail"}))
    for case, (argv, keys) in sorted(SCRIPTS.items()):
        container = {"name": "kube-apiserver", "image": "registry.k8s.io/kube-apiserver:v1.30.0", "command": argv}
        judged = {k: "fail" for k in keys if k in SEED}
        if judged:
            out.append((f"script: {case}", as_kube_system_pod(pod(container), unique("peers")), judged))
    return out


def run(plane: ControlPlane, subjects: list[Subject]) -> list[Answer]:
    answers = []
    for name, obj, expected in subjects:
        obj = {**obj, "metadata": {**obj["metadata"], "name": unique("peers")}}
        result = plane.kubectl("create", "-f", "-", stdin=json.dumps(obj))
        if result.returncode == 0:
            plane.kubectl("delete", "pod", "-n", "kube-system", obj["metadata"]["name"], "--wait=false")
        elif "denied" not in result.stderr and "Forbidden" not in result.stderr:
            raise RuntimeError(f"{name}: the create failed, not by a policy: {result.stderr}")
        got, deferred = judge(result.stderr, result.returncode, _audited(plane, obj["metadata"]["name"], result))
        for key, want in expected.items():
            answers.append(Answer(name, key, want, got[key], deferred, result.returncode != 0))
    return answers


def refused(answers: list[Answer]) -> tuple[int, int]:
    """Per file rather than per control: (files failing a seed control whose pod was refused, files failing a seed
    control). An engine whose denial names one failing control of two still refuses the pod: kube-apiserver reports
    only the first denial of the webhooks it calls in parallel (k8s.io/apiserver pkg/admission/plugin/webhook/
    validating/dispatcher.go), so the per-control count alone would blame the engine for what kube-apiserver hides.
    Files passing both are left out: ours also refuses a pod for the controls outside the seed two."""
    files: dict[str, list[Answer]] = {}
    for a in answers:
        files.setdefault(a.name, []).append(a)
    failing = [mine for mine in files.values() if any(a.expected == "fail" for a in mine)]
    return sum(mine[0].denied for mine in failing), len(failing)


def table(results: dict[str, list[Answer]]) -> str:
    """One Markdown table: a row per corpus file, a column per engine and seed control; ✓ right, ✗ wrong."""
    engines = list(results)
    head = ["file", *(f"{e} {SEED[k].removeprefix('CIS ')}" for e in engines for k in SEED)]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_file: dict[str, dict[tuple[str, str], Answer]] = {}
    for engine, answers in results.items():
        for a in answers:
            by_file.setdefault(a.name, {})[(engine, a.control)] = a
    for name in sorted(by_file):
        cells = [name[:38]]
        for engine in engines:
            for key in SEED:
                found = by_file[name].get((engine, key))
                if found is None:
                    cells.append("n/a")
                else:
                    cells.append(f"{'✓' if found.right else '✗'} {found.got}{' (deferred)' if found.deferred else ''}")
        rows.append("| " + " | ".join(cells) + " |")
    totals = ["**right**"]
    for engine in engines:
        for key in SEED:
            answers = [a for a in results[engine] if a.control == key]
            totals.append(f"**{sum(a.right for a in answers)}/{len(answers)}**")
    rows.append("| " + " | ".join(totals) + " |")
    return "\n".join(rows)


def wrong(results: dict[str, list[Answer]]) -> dict[str, list[str]]:
    """Per engine, the corpus files it got wrong on either seed control, with what it said."""
    out: dict[str, list[str]] = {}
    for engine, answers in results.items():
        out[engine] = [f"{a.name} {a.control}: said {a.got}, expected {a.expected}" for a in answers if not a.right]
    return out
