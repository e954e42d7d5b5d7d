"""The CIS catalog: controls loaded from `controls.yaml`, keyed by stable name, with their id per benchmark."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from webhook.core import yaml_text


class CatalogError(ValueError):
    """The catalog data is inconsistent; raised at load time, never while judging."""


@dataclass(frozen=True)
class Control:
    """One control of the catalog: its stable key, its id per benchmark (None where a benchmark lacks it), whether it
    is scored, its check as data, and the texts of its findings.
    """

    key: str
    title: str
    ids: Mapping[str, str | None]
    scored: bool
    check: Mapping[str, Any]
    consequence: str
    fix: str
    short: str
    hidden_by: tuple[str, ...] = ()
    samples_pass: tuple[tuple[str, ...], ...] = ()
    samples_fail: tuple[tuple[str, ...], ...] = ()

    def cis_id(self, benchmark: str) -> str | None:
        return self.ids.get(benchmark)

    @property
    def flags(self) -> tuple[str, ...]:
        check = self.check
        names = check.get("flags") or [check["flag"]]
        return tuple(str(name) for name in names)


@dataclass(frozen=True)
class Catalog:
    """Every control, the benchmarks and their Kubernetes versions, the strong-cipher lists, and the flags that hand
    settings to a file.
    """

    benchmarks: tuple[str, ...]
    default_benchmark: str
    controls: tuple[Control, ...]
    cipher_lists: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # benchmark -> name of its strong-cipher list
    cipher_list_for: Mapping[str, str] = field(default_factory=dict)
    # benchmark -> (lowest, highest) Kubernetes minor it targets, as kube-bench maps them
    kubernetes_for: Mapping[str, tuple[tuple[int, int], tuple[int, int]]] = field(default_factory=dict)
    config_file_flags: tuple[str, ...] = ()
    # suites that fail whatever the benchmark's list says (Go's crypto/tls InsecureCipherSuites)
    insecure_ciphers: frozenset[str] = frozenset()

    def control(self, key: str) -> Control:
        for control in self.controls:
            if control.key == key:
                return control
        raise KeyError(key)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(control.key for control in self.controls)

    def newest(self) -> str:
        return self.benchmarks[-1]


def _minor(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def _control(raw: Mapping[str, Any], benchmarks: tuple[str, ...]) -> Control:
    try:
        ids = {str(b): (None if v is None else str(v)) for b, v in (raw.get("ids") or {}).items()}
        unknown = set(ids) - set(benchmarks)
        if unknown:
            raise CatalogError(f"{raw['key']}: ids for unknown benchmarks {sorted(unknown)}")
        samples = raw.get("samples") or {}
        return Control(
            key=str(raw["key"]),
            title=str(raw["title"]),
            ids=ids,
            scored=bool(raw["scored"]),
            check=dict(raw["check"]),
            consequence=" ".join(str(raw["consequence"]).split()),
            fix=str(raw["fix"]),
            short=str(raw["short"]),
            hidden_by=tuple(str(f) for f in raw.get("hidden_by") or ()),
            samples_pass=tuple(tuple(str(a) for a in s) for s in samples.get("pass") or ()),
            samples_fail=tuple(tuple(str(a) for a in s) for s in samples.get("fail") or ()),
        )
    except KeyError as missing:
        raise CatalogError(f"control {raw.get('key', '?')}: missing field {missing}") from None


def parse_catalog(data: Mapping[str, Any]) -> Catalog:
    """A Catalog from the YAML data; CatalogError for anything malformed."""
    benchmarks = tuple(str(b) for b in data["benchmarks"])
    controls = tuple(_control(raw, benchmarks) for raw in data["controls"])
    keys = [c.key for c in controls]
    if len(set(keys)) != len(keys):
        raise CatalogError("duplicate control keys")
    ciphers = data.get("strong_ciphers") or {}
    lists = {str(name): tuple(str(s) for s in suites) for name, suites in (ciphers.get("lists") or {}).items()}
    list_for = {str(b): str(name) for b, name in (ciphers.get("by_benchmark") or {}).items()}
    kube = {
        str(b): (_minor(str(span).split("-")[0]), _minor(str(span).split("-")[-1]))
        for b, span in (data.get("kubernetes_versions") or {}).items()
    }
    default = str(data.get("default_benchmark") or benchmarks[0])
    if default not in benchmarks:
        raise CatalogError(f"default benchmark {default} is not listed")
    return Catalog(
        benchmarks=benchmarks,
        default_benchmark=default,
        controls=controls,
        cipher_lists=lists,
        cipher_list_for=list_for,
        kubernetes_for=kube,
        config_file_flags=tuple(str(f) for f in data.get("config_file_flags") or ()),
        insecure_ciphers=frozenset(str(s) for s in data.get("insecure_ciphers") or ()),
    )


@functools.cache
def load_catalog() -> Catalog:
    """The shipped catalog (controls.yaml), parsed once."""
    text = resources.files("webhook.core").joinpath("controls.yaml").read_text(encoding="utf-8")
    return parse_catalog(yaml_text.safe_load(text))
