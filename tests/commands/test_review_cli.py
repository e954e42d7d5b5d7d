"""`apiserver-tls-guard review`, run as a user runs it against the real server (the README demo)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, RunningServer, cli
from webhook.commands.review import ReviewError, verify_answer

EXAMPLES = ROOT / "manifests" / "examples"


def _review(server: RunningServer, *args: str) -> tuple[int, str, str]:
    result = cli("review", "--server", f"https://127.0.0.1:{server.port}", "--ca", str(server.certs / "ca.crt"), *args)
    return result.returncode, result.stdout, result.stderr


def test_demo_denial_in_enforce_mode(enforce_server: RunningServer) -> None:
    code, out, err = _review(enforce_server, str(EXAMPLES / "kube-apiserver-self-signed.yaml"))
    assert code == 1
    # kubectl prints a denial on stderr and nothing on stdout (issue 24, item 13).
    assert out == ""
    assert err.startswith('Error from server (Forbidden): admission webhook "pods.apiserver-tls-guard.io" denied')
    assert "CIS 1.2.30 (benchmark v1.5.1)" in err and "CIS 1.2.31" not in err


def test_demo_warning_in_warn_mode_and_dry_run(warn_server: RunningServer) -> None:
    code, out, err = _review(warn_server, "--dry-run", str(EXAMPLES / "kube-apiserver-self-signed.yaml"))
    assert code == 0
    # kubectl's warning handler writes on stderr; the object's line goes to stdout.
    assert err.splitlines() == [
        "Warning: CIS 1.2.30 v1.5.1 kube-apiserver: --tls-cert-file and --tls-private-key-file are not set"
    ]
    assert out.splitlines() == ["pod/kube-apiserver-cp-1 admitted"]


def test_compliant_example_is_admitted(enforce_server: RunningServer) -> None:
    code, out, _ = _review(enforce_server, str(EXAMPLES / "kube-apiserver-compliant.yaml"))
    assert (code, out.strip()) == (0, "pod/kube-apiserver-cp-1 admitted")


def test_wrong_ca_is_a_failed_call_not_a_verdict(enforce_server: RunningServer, tmp_path: Path) -> None:
    other = tmp_path / "other"
    cli("certs", "--out", str(other))
    result = cli(
        "review",
        "--server",
        f"https://127.0.0.1:{enforce_server.port}",
        "--ca",
        str(other / "ca.crt"),
        str(EXAMPLES / "kube-apiserver-compliant.yaml"),
    )
    assert result.returncode == 2 and "failed calling webhook" in result.stderr


def test_a_missing_ca_file_is_named(enforce_server: RunningServer, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.crt"
    code, _, err = _review_with_ca(enforce_server, missing)
    assert code == 2 and str(missing) in err and "no such file" in err and "Traceback" not in err


def test_a_ca_file_that_is_not_pem_is_named(enforce_server: RunningServer, tmp_path: Path) -> None:
    garbage = tmp_path / "ca.crt"
    garbage.write_text("not a certificate\n")
    code, _, err = _review_with_ca(enforce_server, garbage)
    assert code == 2 and str(garbage) in err and "PEM" in err


def _review_with_ca(server: RunningServer, ca: Path) -> tuple[int, str, str]:
    result = cli(
        "review",
        "--server",
        f"https://127.0.0.1:{server.port}",
        "--ca",
        str(ca),
        str(EXAMPLES / "kube-apiserver-compliant.yaml"),
    )
    return result.returncode, result.stdout, result.stderr


def test_unreadable_manifest_is_a_clear_error(enforce_server: RunningServer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Pod\n  metadata: [\n")
    code, _, err = _review(enforce_server, str(bad))
    assert code == 2 and "not valid YAML" in err and "Traceback" not in err


V1 = "admission.k8s.io/v1"


def _answer(api_version: str = V1, kind: str = "AdmissionReview", **response: object) -> dict[str, object]:
    return {"apiVersion": api_version, "kind": kind, "response": {"uid": "u", "allowed": True, **response}}


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (_answer(kind="Other"), "kind"),
        (_answer(api_version="admission.k8s.io/v1beta1"), "apiVersion"),
        (_answer(uid="x"), "uid"),
        (_answer(allowed="yes"), "boolean"),
        (_answer(patch="W10="), "patch"),
    ],
)
def test_review_judges_answers_as_kube_apiserver_does(answer: dict[str, object], says: str) -> None:
    review = {"apiVersion": "admission.k8s.io/v1", "request": {"uid": "u"}}
    with pytest.raises(ReviewError, match=f"received invalid webhook response.*{says}"):
        verify_answer(json.dumps(answer).encode(), review)


def test_a_manifest_is_read_as_check_reads_it(enforce_server: RunningServer, tmp_path: Path) -> None:
    # The same bounded, UTF-8 read as `check` (webhook/offline/files.py read_manifest), and the file named once.
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"kind: Pod\nmetadata: {name: caf\xe9}\n")
    code, _, err = _review(enforce_server, str(latin1))
    assert code == 2 and err.strip() == f"apiserver-tls-guard: {latin1}: not UTF-8 text"
    big = tmp_path / "big.yaml"
    with big.open("wb") as stream:
        stream.truncate(100 * 1000 * 1000)
    code, _, err = _review(enforce_server, str(big))
    assert code == 2 and f"{big}: refused: larger than 16 MiB" in err
