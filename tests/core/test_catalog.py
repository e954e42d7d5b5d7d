"""The catalog: every control's own samples pass and fail as written, and its ids agree with the shared research."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import SHARED
from webhook.cmdline.flags import parse_flags
from webhook.core.catalog import CatalogError, Control, load_catalog, parse_catalog
from webhook.core.operators import OPERATORS, Context, run_check

CATALOG = load_catalog()


def _ctx(benchmark: str = "1.5.1", kubernetes: tuple[int, int] | None = (1, 30)) -> Context:
    return Context(CATALOG, benchmark, kubernetes)


def _samples(kind: str) -> list[tuple[str, tuple[str, ...]]]:
    out = []
    for control in CATALOG.controls:
        for sample in control.samples_pass if kind == "pass" else control.samples_fail:
            out.append((control.key, sample))
    return out


@pytest.mark.parametrize(("key", "args"), _samples("pass"))
def test_passing_samples_pass(key: str, args: tuple[str, ...]) -> None:
    assert run_check(CATALOG.control(key), parse_flags(args), _ctx()) is None


@pytest.mark.parametrize(("key", "args"), _samples("fail"))
def test_failing_samples_fail(key: str, args: tuple[str, ...]) -> None:
    assert run_check(CATALOG.control(key), parse_flags(args), _ctx()) is not None


@pytest.mark.parametrize("control", CATALOG.controls, ids=lambda c: c.key)
def test_every_control_is_complete(control: Control) -> None:
    assert control.samples_pass and control.samples_fail, "each control carries its own samples"
    assert control.check["op"] in OPERATORS
    assert control.consequence and control.fix and control.short
    assert len(control.short) < 80


SHARED_CATALOG = SHARED / "cis-catalog.yaml"


@pytest.mark.skipif(not SHARED_CATALOG.is_file(), reason=f"{SHARED} is absent: cannot cross-check CIS ids")
def test_ids_match_the_shared_research() -> None:
    data = yaml.safe_load(Path(SHARED_CATALOG).read_text())
    research = {c["key"]: c for c in data["controls"] + data.get("removed_controls", [])}
    for control in CATALOG.controls:
        if control.key not in research:
            continue
        want = {b: (None if i is None else str(i)) for b, i in research[control.key]["ids"].items()}
        got = {b: control.ids.get(b) for b in want}
        assert got == want, control.key
        assert control.scored == bool(research[control.key]["scored"]), control.key


def test_seed_ids_by_hand() -> None:
    tls = CATALOG.control("tls-cert-and-key")
    ca = CATALOG.control("client-ca-file")
    assert (tls.cis_id("1.5.1"), ca.cis_id("1.5.1")) == ("1.2.30", "1.2.31")
    assert (tls.cis_id("1.20"), ca.cis_id("1.20")) == ("1.2.29", "1.2.30")
    assert (tls.cis_id("2.0.1"), ca.cis_id("2.0.1")) == ("1.2.24", "1.2.25")
    assert CATALOG.default_benchmark == "1.5.1"


def test_broken_catalog_is_refused_at_load() -> None:
    with pytest.raises(CatalogError):
        parse_catalog({"benchmarks": ["1.5.1"], "controls": [{"key": "x", "ids": {"9.9": "1"}}]})
    with pytest.raises(CatalogError):
        parse_catalog({"benchmarks": ["1.5.1"], "controls": [{"key": "x"}]})


def test_samples_have_no_stray_words() -> None:
    # A YAML flow list splits "--a=x,y" at the comma unless quoted; a stray word means the sample is not what it says.
    for control in CATALOG.controls:
        for sample in control.samples_pass + control.samples_fail:
            assert parse_flags(sample).positional == (), (control.key, sample)
