"""Conformance: every manifest in ../shared/corpus gets the verdict in expected.json, through the HTTPS endpoint.

The verdict for a control is read from the answer kube-apiserver would get: every finding is recorded under its
control key in auditAnnotations; enforce mode must deny exactly when a scored control fails, warn mode must allow
with one warning per finding. Both with and without dryRun.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.apiserver_client import ApiserverClient, admission_review
from tests.conftest import CORPUS, corpus_cases, requires_shared
from webhook.core.catalog import load_catalog
from webhook.offline.documents import load_documents

pytestmark = requires_shared()


def _expected() -> dict[str, dict[str, str]]:
    if not CORPUS.is_dir():
        return {}
    data: dict[str, dict[str, str]] = json.loads((CORPUS / "expected.json").read_text())
    return data


EXPECTED = _expected()
CATALOG = load_catalog()


def corpus_objects(name: str) -> list[dict[str, Any]]:
    docs = load_documents((CORPUS / name).read_text(), name)
    return [dict(d.obj) for d in docs]


def judged_keys(expected: dict[str, str]) -> list[str]:
    return [key for key in expected if key in CATALOG.keys]


@pytest.mark.parametrize("name", corpus_cases(sorted(EXPECTED)))
@pytest.mark.parametrize("dry_run", [False, True])
def test_corpus_verdicts_through_the_webhook(
    name: str, dry_run: bool, enforce_client: ApiserverClient, warn_client: ApiserverClient
) -> None:
    expected = EXPECTED[name]
    keys = judged_keys(expected)
    assert {"tls-cert-and-key", "client-ca-file"} <= set(keys)
    [obj] = corpus_objects(name)
    scored = {c.key for c in CATALOG.controls if c.scored}
    want_fail = {k for k in keys if expected[k] == "fail"}

    denied = enforce_client.review(admission_review(obj, dry_run=dry_run))
    got_fail = {k for k in denied.get("auditAnnotations", {}) if k in keys}
    assert got_fail == want_fail, name
    if want_fail & scored:
        assert denied["allowed"] is False, name
        for key in want_fail & scored:
            cis_id = CATALOG.control(key).cis_id("1.5.1")
            assert f"CIS {cis_id} (benchmark v1.5.1)" in denied["status"]["message"]

    warned = warn_client.review(admission_review(obj, dry_run=dry_run))
    assert warned["allowed"] is True
    got_warn = {k for k in warned.get("auditAnnotations", {}) if k in keys}
    assert got_warn == want_fail, name
    assert len(warned.get("warnings", [])) >= len(want_fail)


def test_every_corpus_file_is_covered() -> None:
    files = {p.name for p in Path(CORPUS).iterdir() if p.suffix in (".yaml", ".json") and p.name != "expected.json"}
    assert files == set(EXPECTED)
