"""The operator's configuration: modes, benchmark, exemptions. Read once at start, never from the judged object."""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
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
    """Objects not judged; only from the policy file. Namespaces are the cluster admin's, so a namespace exempts every
    object in it. A name glob and a label selector match what whoever submits the object writes, so each applies only
    inside the namespaces the policy names with it: elsewhere a pod could name or label itself out of the guard.
    """

    namespaces: frozenset[str] = frozenset()
    names: tuple[tuple[str, frozenset[str]], ...] = ()  # (glob on metadata.name, the namespaces it applies in)
    selectors: tuple[tuple[LabelSelector, frozenset[str]], ...] = ()  # (selector, the namespaces it applies in)

    @property
    def by_object(self) -> bool:
        """Whether any exemption matches on what the object itself says (its name or labels)."""
        return bool(self.names or self.selectors)

    def without_object(self) -> Exemptions:
        """Only the namespace exemptions."""
        return Exemptions(namespaces=self.namespaces)

    def exempt(self, namespace: str, name: str, labels: Mapping[str, str]) -> str | None:
        """Why the object is exempt, or None."""
        if namespace in self.namespaces:
            return f"namespace {namespace} is exempt"
        for pattern, where in self.names:
            if name and namespace in where and fnmatch.fnmatchcase(name, pattern):
                return f"name matches exemption {pattern!r} in namespace {namespace}"
        for selector, where in self.selectors:
            if namespace in where and selector.matches(labels):
                return f"labels match an exemption selector in namespace {namespace}"
        return None


# Object names are DNS-1123 subdomains (apimachinery validation.IsDNS1123Subdomain: lowercase letters, digits,
# '-' and '.'); namespaces are DNS-1123 labels (IsDNS1123Label: no '.', at most 63).
NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-."
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# A name pattern must fix this many characters of the name (a literal, or a class that admits one character):
# `*`, `?*`, `[a-z]*`, `[!x]*`, `*[a-z0-9]*` fix none and match all or nearly all names (tests/core/
# test_exemptions.py measures it on generated names).
MIN_FIXED_CHARACTERS = 3


def glob_parts(pattern: str) -> list[str]:
    """The pattern cut into what fnmatch matches one at a time: `*`, `?`, a `[...]` class, or one literal character.
    The same scan as fnmatch.translate (CPython Lib/fnmatch.py): a `[` with no closing `]` is a literal, and a `]`
    right after `[` or `[!` belongs to the class."""
    parts: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j < n:
                parts.append(pattern[i - 1 : j + 1])
                i = j + 1
                continue
        parts.append(c)
    return parts


def name_pattern_problem(pattern: str) -> str | None:
    """What makes a name glob unusable as an exemption, or None: it matches no valid object name, or it fixes fewer
    than MIN_FIXED_CHARACTERS characters and so matches (nearly) every name."""
    fixed = 0
    for part in glob_parts(pattern):
        if part == "*":
            continue
        # Which name characters this part admits, asked of fnmatch itself so its class rules are the ones applied.
        admits = sum(1 for ch in NAME_ALPHABET if fnmatch.fnmatchcase(ch, part))
        if admits == 0:
            return f"{pattern!r} can never match an object name (lowercase letters, digits, '-' and '.')"
        fixed += admits == 1
    if fixed < MIN_FIXED_CHARACTERS:
        return (
            f"{pattern!r} would exempt every pod in its namespaces, or nearly: a name pattern must fix at least "
            f"{MIN_FIXED_CHARACTERS} characters (e.g. 'kube-apiserver-lab-*'); to exempt a whole namespace, list it "
            "under exemptions.namespaces"
        )
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
    def without_object_exemptions(self) -> Policy:
        """This policy with only its namespace exemptions: an UPDATE is judged with it, and the old object decides
        the name and label exemptions (the new one could write itself into them)."""
        return replace(self, exemptions=self.exemptions.without_object())

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


def _list(value: Any, where: str, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of {what}, got {value!r}")
    return value


_SCOPE_WHY = (
    "the name and labels are written by whoever submits the object, so this exemption applies only inside the "
    "namespaces named with it"
)


def _scope(raw: Mapping[str, Any], where: str) -> frozenset[str]:
    """The namespaces a name or label exemption applies in: required, exact names (a glob would reopen every
    namespace)."""
    value = raw.get("namespaces")
    if value is None or value == []:
        raise ConfigError(f"{where}.namespaces: required: {_SCOPE_WHY}")
    names = _strings(value, f"{where}.namespaces", "namespaces")
    for name in names:
        if len(name) > 63 or not _DNS1123_LABEL.match(name):
            raise ConfigError(f"{where}.namespaces: {name!r} is not a namespace name (DNS-1123 label; no globs)")
    return frozenset(names)


def _name_exemption(raw: Any, where: str) -> tuple[str, frozenset[str]]:
    # The old shape (a bare glob): say first what else is wrong with the pattern, then what it lacks.
    problem = name_pattern_problem(raw) if isinstance(raw, str) else None
    if problem is not None:
        raise ConfigError(f"{where}: {problem}")
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{where}: expected {{pattern: <glob>, namespaces: [<namespace>, ...]}}, got {raw!r}: {_SCOPE_WHY}"
        )
    _keys(raw, {"pattern", "namespaces"}, where)
    pattern = raw.get("pattern")
    if not isinstance(pattern, str) or not pattern.strip():
        raise ConfigError(f"{where}.pattern: expected a glob on metadata.name (a non-empty string), got {pattern!r}")
    problem = name_pattern_problem(pattern)
    if problem is not None:
        raise ConfigError(f"{where}.pattern: {problem}")
    return pattern, _scope(raw, where)


def _selector_exemption(raw: Any, where: str) -> tuple[LabelSelector, frozenset[str]]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: a label selector is a mapping with namespaces and matchLabels/matchExpressions")
    _keys(raw, {"namespaces", "matchLabels", "matchExpressions"}, where)
    selector = _selector({k: v for k, v in raw.items() if k != "namespaces"}, where)
    return selector, _scope(raw, where)


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
    names = tuple(
        _name_exemption(raw, f"{source}: exemptions.names[{i}]")
        for i, raw in enumerate(_list(ex.get("names"), f"{source}: exemptions.names", "name patterns"))
    )
    selectors = tuple(
        _selector_exemption(raw, f"{source}: exemptions.labelSelectors[{i}]")
        for i, raw in enumerate(
            _list(ex.get("labelSelectors"), f"{source}: exemptions.labelSelectors", "label selectors")
        )
    )
    exemptions = Exemptions(
        namespaces=frozenset(_strings(ex.get("namespaces"), f"{source}: exemptions.namespaces", "namespaces")),
        names=names,
        selectors=selectors,
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
