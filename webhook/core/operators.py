"""The operators a control's `check` names (`set`, `bool`, `list`, `ciphers`, ...), compiled once per control."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.cmdline.flags import Flags, parse_bool
from webhook.core.catalog import Catalog, Control


@dataclass(frozen=True)
class Context:
    """What a check may look at besides the flags."""

    catalog: Catalog
    benchmark: str
    kubernetes: tuple[int, int] | None


# What a finding quotes from the command line, at most: the command line is the submitter's, and a finding that
# echoed all of it (`--authorization-mode=Foo0,Foo1,...`, 2.9 MB) once made a 22.7 MB answer.
ECHO_ITEMS = 8
ECHO_CHARS = 64


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    tail = f"… ({len(text) - limit} more characters)"
    return text[: max(limit - len(tail), 0)] + tail


def echo(values: Iterable[str], sep: str = ", ", items: int = ECHO_ITEMS, chars: int = ECHO_CHARS) -> str:
    """The first `items` values, each clipped to `chars`, joined, then how many more there were."""
    shown: list[str] = []
    more = 0
    for value in values:
        if len(shown) < items:
            shown.append(clip(value, chars))
        else:
            more += 1
    return sep.join(shown) + (f"{sep}… and {more} more" if more else "")


def _spell(flags: list[str]) -> str:
    names = [f"--{f}" for f in flags]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# Each operator takes a control's `check` data and returns a checker: a closure over that data, built once per
# control, that says what is wrong with a command line (or None when it passes). The catalog names operators.
Checker = Callable[[Flags, Context], "str | None"]


def _op_set(check: Mapping[str, Any]) -> Checker:
    names = tuple(str(n) for n in check["flags"])

    def checker(flags: Flags, _: Context) -> str | None:
        for name in names:
            value = flags.value(name)
            if value is None or not value.strip():
                break
        else:
            return None  # every flag has a non-empty effective value
        missing = [n for n in names if flags.value(n) is None]
        # list flags: an empty repeat does not undo earlier values, so emptiness is is_set's call
        empty = [n for n in names if n not in missing and not flags.is_set(n)]
        if not missing and not empty:
            return None
        problems = []
        if missing:
            problems.append(f"{_spell(missing)} {'is' if len(missing) == 1 else 'are'} not set")
        if empty:
            problems.append(f"{_spell(empty)} {'is' if len(empty) == 1 else 'are'} empty")
        return "; ".join(problems)

    return checker


def _op_unset(check: Mapping[str, Any]) -> Checker:
    name = str(check["flag"])

    def checker(flags: Flags, _: Context) -> str | None:
        return None if flags.value(name) is None else f"--{name} is set"

    return checker


def _op_bool(check: Mapping[str, Any]) -> Checker:
    name, want, default = str(check["flag"]), bool(check["expect"]), bool(check["default"])

    def checker(flags: Flags, _: Context) -> str | None:
        raw = flags.value(name)
        if raw is None:
            return None if default == want else f"--{name} is not set (default {str(default).lower()})"
        value = parse_bool(raw)
        if value is None:
            shown = clip(raw, ECHO_CHARS)
            return f"--{name}={shown} is not a boolean (strconv.ParseBool), so kube-apiserver will not start"
        return None if value == want else f"--{name} is {str(value).lower()}"

    return checker


def _op_list(check: Mapping[str, Any]) -> Checker:
    name, default = str(check["flag"]), str(check["default"])
    includes, excludes = check.get("includes"), check.get("excludes")
    valid = frozenset(check.get("valid") or ())

    def checker(flags: Flags, _: Context) -> str | None:
        items = flags.items(name)
        if not items:
            return f"--{name} is not set (default {default})"
        raw = flags.raw_items(name)
        invalid = [item for item in raw if item not in valid] if valid else []
        if invalid:
            shown = echo(repr(clip(item, ECHO_CHARS)) for item in invalid)
            return f"--{name} has {shown}, which kube-apiserver refuses: it will not start"
        if includes is not None and includes not in items:
            return f"--{name}={echo(items, ',')} does not include {includes}"
        if excludes is not None and excludes in items:
            return f"--{name}={echo(items, ',')} includes {excludes}"
        return None

    return checker


def _op_ciphers(check: Mapping[str, Any]) -> Checker:
    name = str(check["flag"])
    aliases: Mapping[str, str] = check.get("aliases") or {}
    allowed_by_list: dict[int, frozenset[str]] = {}

    def allowed_for(ctx: Context) -> frozenset[str]:
        suites = ctx.catalog.cipher_lists[ctx.catalog.cipher_list_for[ctx.benchmark]]
        cached = allowed_by_list.get(id(suites))
        if cached is None:
            allowed = set(suites)
            allowed |= {alias for alias, target in aliases.items() if target in allowed}
            allowed |= {target for alias, target in aliases.items() if alias in allowed}
            cached = allowed_by_list[id(suites)] = frozenset(allowed)
        return cached

    def checker(flags: Flags, ctx: Context) -> str | None:
        items = flags.items(name)
        if not items:
            return f"--{name} is not set (Go's default list includes CBC and RSA key-exchange suites)"
        # pflag's StringSlice keeps spaces and empty items; component-base TLSCipherSuites then refuses the name.
        malformed = [item for item in flags.raw_items(name) if item != item.strip() or not item]
        if malformed:
            shown = echo(repr(clip(item, ECHO_CHARS)) for item in malformed)
            return (
                f"--{name} has {shown}: kube-apiserver will not start "
                '("Cipher suite ... not supported or doesn\'t exist")'
            )
        insecure = [suite for suite in items if suite in ctx.catalog.insecure_ciphers]
        if insecure:
            return f"--{name} has suites Go itself lists as insecure, whatever the benchmark says: {echo(insecure)}"
        allowed = allowed_for(ctx)
        weak = [suite for suite in items if suite not in allowed]
        return f"--{name} has suites outside the strong list: {echo(weak)}" if weak else None

    return checker


def _op_retired(check: Mapping[str, Any]) -> Checker:
    name = str(check["flag"])
    removed = tuple(int(p) for p in str(check["removed_in"]).split("."))[:2]

    def checker(flags: Flags, ctx: Context) -> str | None:
        if ctx.kubernetes is None or ctx.kubernetes < removed or flags.value(name) is None:
            return None
        running = f"{ctx.kubernetes[0]}.{ctx.kubernetes[1]}"
        return f"--{name} is set, but was removed in Kubernetes {removed[0]}.{removed[1]} and the image is {running}"

    return checker


OPERATORS: Mapping[str, Callable[[Mapping[str, Any]], Checker]] = {
    "set": _op_set,
    "unset": _op_unset,
    "bool": _op_bool,
    "list": _op_list,
    "ciphers": _op_ciphers,
    "retired": _op_retired,
}
_CHECKERS: dict[int, tuple[Control, Checker]] = {}


def passes_when(check: Mapping[str, Any]) -> str:
    """What a command line needs to pass this check, in one phrase (for `apiserver-tls-guard controls`)."""
    op = check["op"]
    if op == "set":
        names = [str(n) for n in check["flags"]]
        return f"{_spell(names)} {'is' if len(names) == 1 else 'are'} set, non-empty"
    if op == "unset":
        return f"--{check['flag']} is absent"
    if op == "bool":
        want = str(bool(check["expect"])).lower()
        default = str(bool(check["default"])).lower()
        return f"--{check['flag']} is {want} (unset means {default})"
    if op == "list":
        name = check["flag"]
        if check.get("includes") is not None:
            return f"--{name} includes {check['includes']} (unset means {check['default']})"
        return f"--{name} is set and excludes {check['excludes']} (unset means {check['default']})"
    if op == "ciphers":
        return f"--{check['flag']} is set, every suite in the benchmark's strong list"
    if op == "retired":
        return f"no --{check['flag']} on Kubernetes >= {check['removed_in']} (read from the image tag)"
    raise KeyError(op)


def checker_for(control: Control) -> Checker:
    """The control's compiled check; the control is kept with it so its id cannot be reused."""
    entry = _CHECKERS.get(id(control))
    if entry is None or entry[0] is not control:
        entry = _CHECKERS[id(control)] = (control, OPERATORS[control.check["op"]](control.check))
    return entry[1]


def run_check(control: Control, flags: Flags, ctx: Context) -> str | None:
    """What is wrong with these flags for this control, or None when it passes."""
    return checker_for(control)(flags, ctx)
