"""The operator's configuration: modes, benchmark, exemptions. Read once at start, never from the judged object."""

from __future__ import annotations

import fnmatch
import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from webhook.core import yaml_text
from webhook.core.catalog import Catalog, Control, load_catalog
from webhook.core.operators import Checker, checker_for


class Mode(StrEnum):
    """What a finding does: enforce denies, warn admits with a warning, audit only annotates, off skips the control."""

    ENFORCE = "enforce"
    WARN = "warn"
    AUDIT = "audit"
    OFF = "off"

    @property
    def strength(self) -> int:
        return {Mode.OFF: 0, Mode.AUDIT: 1, Mode.WARN: 2, Mode.ENFORCE: 3}[self]


GLOBAL_MODES = (Mode.ENFORCE, Mode.WARN, Mode.AUDIT)
AUTO = "auto"


class ConfigError(ValueError):
    """The configuration file is unusable; the message says where and why."""


@dataclass(frozen=True)
class LabelSelector:
    """metav1.LabelSelector: matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist)."""

    match_labels: Mapping[str, str] = field(default_factory=dict)
    expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for key, operator, values in self.expressions:
            present = key in labels
            if operator == "In" and not (present and labels[key] in values):
                return False
            if operator == "NotIn" and present and labels[key] in values:
                return False
            if operator == "Exists" and not present:
                return False
            if operator == "DoesNotExist" and present:
                return False
        return True


@dataclass(frozen=True)
class Exemptions:
    """Objects not judged: by namespace, name glob or label selector; only from the policy file."""

    namespaces: frozenset[str] = frozenset()
    names: tuple[str, ...] = ()  # glob patterns on metadata.name
    selectors: tuple[LabelSelector, ...] = ()

    def exempt(self, namespace: str, name: str, labels: Mapping[str, str]) -> str | None:
        """Why the object is exempt, or None."""
        if namespace in self.namespaces:
            return f"namespace {namespace} is exempt"
        for pattern in self.names:
            if name and fnmatch.fnmatchcase(name, pattern):
                return f"name matches exemption {pattern!r}"
        for selector in self.selectors:
            if selector.matches(labels):
                return "labels match an exemption selector"
        return None


@dataclass(frozen=True)
class Policy:
    """The operator's policy: global mode, benchmark (or auto), per-control modes, exemptions, workload
    namespaces."""

    mode: Mode = Mode.ENFORCE
    cis_version: str = ""  # "" = the catalog's default benchmark; "auto" = from the image tag
    control_modes: Mapping[str, Mode] = field(default_factory=dict)
    exemptions: Exemptions = field(default_factory=Exemptions)
    catalog: Catalog = field(default_factory=load_catalog)
    # Namespaces (globs) whose Deployments, StatefulSets, ... are judged; empty: wherever the webhook is sent them.
    workload_namespaces: tuple[str, ...] = ()

    def judges_workloads_in(self, namespace: str) -> bool:
        return not self.workload_namespaces or any(
            fnmatch.fnmatchcase(namespace, pattern) for pattern in self.workload_namespaces
        )

    @functools.cached_property
    def active_controls(self) -> tuple[tuple[Control, Mode], ...]:
        """Every control that is not off, with its mode; worked out once per policy, not per review."""
        pairs = ((control, self.mode_for(control)) for control in self.catalog.controls)
        return tuple((control, mode) for control, mode in pairs if mode is not Mode.OFF)

    @functools.cached_property
    def active_checks(self) -> tuple[tuple[Control, Mode, Checker], ...]:
        """`active_controls` with each control's compiled check: the engine's loop, without a lookup per control."""
        return tuple((control, mode, checker_for(control)) for control, mode in self.active_controls)

    def mode_for(self, control: Control) -> Mode:
        """A control's own setting wins; otherwise the global mode, capped at warn for manual controls."""
        if control.key in self.control_modes:
            return self.control_modes[control.key]
        if not control.scored and self.mode is Mode.ENFORCE:
            return Mode.WARN
        return self.mode

    def benchmark_for(self, kubernetes: tuple[int, int] | None) -> str:
        """The benchmark whose ids are shown: the configured one, or under `auto` the one for this version."""
        if self.cis_version and self.cis_version != AUTO:
            return self.cis_version
        if not self.cis_version:
            return self.catalog.default_benchmark
        return benchmark_for_kubernetes(self.catalog, kubernetes)


def benchmark_for_kubernetes(catalog: Catalog, kubernetes: tuple[int, int] | None) -> str:
    """kube-bench's version_mapping: the newest benchmark whose range covers the version, else the newest."""
    if kubernetes is None:
        return catalog.newest()
    chosen = None
    for benchmark in catalog.benchmarks:
        span = catalog.kubernetes_for.get(benchmark)
        if span and span[0] <= kubernetes <= span[1]:
            chosen = benchmark
    if chosen is not None:
        return chosen
    oldest = min((span[0], b) for b, span in catalog.kubernetes_for.items()) if catalog.kubernetes_for else None
    if oldest is not None and kubernetes < oldest[0]:
        return oldest[1]
    return catalog.newest()


def _mode(value: Any, where: str, allowed: tuple[Mode, ...]) -> Mode:
    names = ", ".join(m.value for m in allowed)
    if value is False:  # YAML 1.1 reads an unquoted `off` as false
        value = "off"
    try:
        mode = Mode(str(value).lower())
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not a mode ({names})") from None
    if mode not in allowed:
        raise ConfigError(f"{where}: {value!r} is not a mode ({names})")
    return mode


def _strings(value: Any, where: str, what: str) -> tuple[str, ...]:
    """A list of non-empty strings, or a ConfigError naming the field: `names: "lab-*"` must never be read as
    the five one-letter patterns l, a, b, -, * (the last of which exempts every pod)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: expected a list of {what} (non-empty strings), got {value!r}")
    return tuple(value)


def _keys(raw: Mapping[str, Any], known: set[str], where: str) -> None:
    extra = set(raw) - known
    if extra:
        raise ConfigError(f"{where}: unknown keys {sorted(map(str, extra))} (known: {sorted(known)})")


def _selector(raw: Any, where: str) -> LabelSelector:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: a label selector is a mapping with matchLabels/matchExpressions")
    _keys(raw, {"matchLabels", "matchExpressions"}, where)
    labels = raw.get("matchLabels") or {}
    if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
        raise ConfigError(f"{where}.matchLabels: must be a mapping of label to string value")
    raw_expressions = raw.get("matchExpressions") or []
    if not isinstance(raw_expressions, list):
        raise ConfigError(f"{where}.matchExpressions: must be a list")
    expressions = []
    for i, expr in enumerate(raw_expressions):
        at = f"{where}.matchExpressions[{i}]"
        if not isinstance(expr, Mapping) or "key" not in expr or "operator" not in expr:
            raise ConfigError(f"{at}: needs key and operator")
        _keys(expr, {"key", "operator", "values"}, at)
        operator = str(expr["operator"])
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ConfigError(f"{at}: operator {operator!r} is not In, NotIn, Exists or DoesNotExist")
        values = _strings(expr.get("values"), f"{at}.values", "label values")
        if operator in ("In", "NotIn") and not values:
            raise ConfigError(f"{at}: {operator} needs values (metav1.LabelSelector validation)")
        expressions.append((str(expr["key"]), operator, values))
    if not labels and not expressions:
        # An empty selector matches every object: as an exemption it would switch the guard off.
        raise ConfigError(f"{where}: an empty selector would exempt every pod; give matchLabels or matchExpressions")
    return LabelSelector({str(k): str(v) for k, v in labels.items()}, tuple(expressions))


def parse_policy(data: Mapping[str, Any], catalog: Catalog | None = None, source: str = "config") -> Policy:
    """A Policy from the file's data, checked field by field; ConfigError names the file, the field and what was
    expected.
    """
    catalog = catalog or load_catalog()
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping")
    known = {"mode", "cisVersion", "controls", "exemptions", "workloadNamespaces"}
    extra = set(data) - known
    if extra:
        raise ConfigError(f"{source}: unknown keys {sorted(extra)} (known: {sorted(known)})")
    mode = _mode(data.get("mode", "enforce"), f"{source}: mode", GLOBAL_MODES)
    cis = str(data.get("cisVersion") or "")
    if cis and cis != AUTO and cis not in catalog.benchmarks:
        raise ConfigError(f"{source}: cisVersion {cis!r} is not one of auto, {', '.join(catalog.benchmarks)}")
    control_modes: dict[str, Mode] = {}
    controls = data.get("controls") or {}
    if not isinstance(controls, Mapping):
        raise ConfigError(f"{source}: controls must map a control key to its settings")
    for key, settings in controls.items():
        if key not in catalog.keys:
            raise ConfigError(f"{source}: controls.{key}: no such control (known: {', '.join(catalog.keys)})")
        if isinstance(settings, Mapping):
            _keys(settings, {"mode"}, f"{source}: controls.{key}")
        raw_mode = settings.get("mode") if isinstance(settings, Mapping) else settings
        control_modes[str(key)] = _mode(raw_mode, f"{source}: controls.{key}.mode", (*GLOBAL_MODES, Mode.OFF))
    ex = data.get("exemptions") or {}
    if not isinstance(ex, Mapping):
        raise ConfigError(f"{source}: exemptions must be a mapping")
    _keys(ex, {"namespaces", "names", "labelSelectors"}, f"{source}: exemptions")
    names = _strings(ex.get("names"), f"{source}: exemptions.names", "name patterns")
    for pattern in names:
        if not pattern.strip("*?"):
            raise ConfigError(f"{source}: exemptions.names: {pattern!r} would exempt every pod")
    selectors = ex.get("labelSelectors")
    if selectors is not None and not isinstance(selectors, list):
        raise ConfigError(f"{source}: exemptions.labelSelectors: expected a list of label selectors")
    exemptions = Exemptions(
        namespaces=frozenset(_strings(ex.get("namespaces"), f"{source}: exemptions.namespaces", "namespaces")),
        names=names,
        selectors=tuple(
            _selector(s, f"{source}: exemptions.labelSelectors[{i}]") for i, s in enumerate(selectors or ())
        ),
    )
    workload_namespaces = _strings(
        data.get("workloadNamespaces"), f"{source}: workloadNamespaces", "namespaces (globs allowed)"
    )
    return Policy(mode, cis, control_modes, exemptions, catalog, workload_namespaces)


@dataclass
class PolicyInForce:
    """The policy the webhook answers with now, and the hash it is known by; swapped whole when the file changes,
    so a review never sees half of an old policy and half of a new one."""

    policy: Policy
    digest: str


def policy_digest(path: str | Path | None, overrides: Mapping[str, Any], content: bytes | None = None) -> str:
    """A short hash of what the policy is made from: the file's bytes (`content` when already read) and the
    command-line settings."""
    if content is None:
        content = Path(path).read_bytes() if path is not None else b""
    settings = repr(sorted((k, v) for k, v in overrides.items() if v is not None)).encode()
    return hashlib.sha256(content + b"\0" + settings).hexdigest()[:16]


def load_policy(path: str | Path | None, **overrides: Any) -> Policy:
    """The policy from a YAML file (or the defaults), with command-line settings applied on top."""
    return load_in_force(path, overrides).policy


def load_in_force(path: str | Path | None, overrides: Mapping[str, Any]) -> PolicyInForce:
    """The policy and its hash from one read of the file: read twice, a ConfigMap swapped in between would pair
    the old policy with the new hash, and the reloader would then never apply the new file."""
    if path is None:
        return PolicyInForce(policy_from_bytes(None, "config", **overrides), policy_digest(None, overrides))
    try:
        content = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    return PolicyInForce(policy_from_bytes(content, str(path), **overrides), policy_digest(path, overrides, content))


def policy_from_bytes(content: bytes | None, source: str, **overrides: Any) -> Policy:
    """The policy from a file's bytes (None: the defaults), so that what is parsed is exactly what is hashed."""
    data: dict[str, Any] = {}
    if content is not None:
        try:
            loaded = yaml_text.safe_load(content.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise ConfigError(f"{source}: not UTF-8 text (byte {err.start}: {content[err.start]:#04x})") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{source}: not valid YAML: {err}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{source}: the top level must be a mapping")
        data = dict(loaded or {})
    for key, value in overrides.items():
        if value is not None:
            data[key] = value
    return parse_policy(data, source=source)
