"""An error while judging fails closed: denied whenever a control that would judge the object enforces, whatever
the global mode says; warned otherwise. Through the real server process with its failpoint
(APISERVER_TLS_GUARD_FAILPOINT=decide makes judging raise), as issue 20 reproduced it: `mode: warn` with the seed
controls set to enforce answered "allowed, could not evaluate"."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.admission.test_http import COMPLIANT, apiserver_pod
from tests.apiserver_client import admission_review
from tests.conftest import RunningServer, start_server, stop_server
from webhook.core.catalog import load_catalog

SEEDS_ENFORCED = "mode: warn\ncontrols:\n  tls-cert-and-key: {mode: enforce}\n  client-ca-file: {mode: enforce}\n"
NOTHING_ENFORCED = "mode: enforce\ncontrols:\n" + "".join(f"  {key}: {{mode: warn}}\n" for key in load_catalog().keys)
EXEMPT_LAB = SEEDS_ENFORCED + "exemptions:\n  namespaces: [lab]\n"


@pytest.fixture
def failing_server(
    certs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[RunningServer]:
    monkeypatch.setenv("APISERVER_TLS_GUARD_FAILPOINT", "decide")
    config = tmp_path / "policy.yaml"
    config.write_text(request.param)
    server = start_server(certs_dir, tmp_path, "--config", str(config))
    yield server
    stop_server(server)


def _errors(server: RunningServer, answer: str) -> float:
    client = server.client()
    text = client.get("/metrics").body.decode()
    client.close()
    line = f'tlsguard_evaluation_errors_total{{answer="{answer}"}} '
    return sum(float(row.split()[-1]) for row in text.splitlines() if row.startswith(line))


@pytest.mark.parametrize("failing_server", [SEEDS_ENFORCED], indirect=True)
def test_an_error_denies_when_a_control_enforces_though_the_global_mode_warns(failing_server: RunningServer) -> None:
    client = failing_server.client()
    review = admission_review(apiserver_pod(*COMPLIANT))
    answer = client.review(review)
    client.close()
    assert answer["allowed"] is False
    assert "could not evaluate this object" in answer["status"]["message"]
    assert answer["auditAnnotations"]["verdict"] == "error"
    assert _errors(failing_server, "denied") == 1
    lines = [json.loads(line) for line in failing_server.log_text().splitlines() if line.startswith("{")]
    [error] = [line for line in lines if line["msg"] == "could not evaluate"]
    assert error["uid"] == review["request"]["uid"] and error["allowed"] is False
    [decision] = [line for line in lines if line["msg"] == "decision"]
    assert decision["verdict"] == "error"


@pytest.mark.parametrize("failing_server", [NOTHING_ENFORCED], indirect=True)
def test_an_error_warns_when_no_control_enforces_though_the_global_mode_enforces(
    failing_server: RunningServer,
) -> None:
    client = failing_server.client()
    answer = client.review(admission_review(apiserver_pod(*COMPLIANT)))
    client.close()
    assert answer["allowed"] is True
    assert any("could not evaluate this object" in w for w in answer["warnings"])
    assert _errors(failing_server, "allowed") == 1


@pytest.mark.parametrize("failing_server", [EXEMPT_LAB], indirect=True)
def test_an_error_on_what_the_webhook_never_judges_admits_it(failing_server: RunningServer) -> None:
    client = failing_server.client()
    exempt = apiserver_pod(*COMPLIANT)
    exempt["metadata"]["namespace"] = "lab"
    assert client.review(admission_review(exempt, namespace="lab"))["allowed"] is True
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "kube-system"}}
    assert client.review(admission_review(configmap))["allowed"] is True
    assert client.review(admission_review(apiserver_pod(*COMPLIANT), operation="DELETE"))["allowed"] is True
    # The same server still denies what it judges.
    assert client.review(admission_review(apiserver_pod(*COMPLIANT)))["allowed"] is False
    client.close()
