"""kube-apiserver's flags read with spf13/pflag's rules.

`--flag=value`, `--flag value` for flags that take a value, bare booleans, single dash, last occurrence wins,
list flags add up, `--` ends the flags.
"""

from __future__ import annotations

from collections.abc import Sequence

from webhook.cmdline import apiserver_flags as generated
from webhook.cmdline.expand import UNKNOWN, visible

# Flags of earlier releases that the built binary no longer has, each a boolean there (klog's, removed in
# v1.26; --etcd-quorum-read, --kubelet-https, --enable-swagger-ui): old manifests still carry them.
RETIRED_BOOLEAN_FLAGS = frozenset(
    {
        "add-dir-header",
        "alsologtostderr",
        "enable-swagger-ui",
        "etcd-quorum-read",
        "kubelet-https",
        "logtostderr",
        "one-output",
        "skip-headers",
        "skip-log-headers",
    }
)
# pflag never takes the next word as a boolean's value: `--profiling false` means profiling=true followed by a
# stray positional argument. The current flags' types come from the built binary (apiserver_flags.py).
BOOLEAN_FLAGS = generated.BOOLEAN_FLAGS | RETIRED_BOOLEAN_FLAGS
# List flags: pflag's StringSlice/StringArray append on every occurrence (`--a=x,y --a=z` is [x y z]).
LIST_FLAGS = generated.LIST_FLAGS

TRUE_WORDS = frozenset({"1", "t", "T", "TRUE", "true", "True"})
FALSE_WORDS = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_bool(value: str | None) -> bool | None:
    """pflag/strconv.ParseBool: None for anything it would reject."""
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    return None


class Flags:
    """Every occurrence of every flag, in order; reading follows pflag.

    `opaque` lists the argv items whose content cannot be read (`$(EXTRA_ARGS)` from a Secret, `$EXTRA` in a
    script), each with the number of occurrences read before it: such an item may set or override any flag given
    before it (last wins) and add to any list flag.
    """

    __slots__ = ("_index", "_last", "has_unknown", "occurrences", "opaque", "positional")

    def __init__(
        self,
        occurrences: Sequence[tuple[str, str]] = (),
        positional: Sequence[str] = (),
        opaque: Sequence[tuple[int, str]] = (),
    ) -> None:
        self.occurrences = tuple(occurrences)
        self.positional = tuple(positional)
        self.opaque = tuple(opaque)
        self._last = {name: i for i, (name, _) in enumerate(self.occurrences)}
        self.has_unknown = any(UNKNOWN in value for _, value in self.occurrences)
        # Every control reads several flags: index once instead of rescanning the command line per lookup.
        index: dict[str, list[str]] = {}
        for flag, value in self.occurrences:
            if flag in index:
                index[flag].append(value)
            else:
                index[flag] = [value]
        self._index = index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Flags) and (self.occurrences, self.positional) == (other.occurrences, other.positional)

    def __hash__(self) -> int:
        return hash((self.occurrences, self.positional))

    def __repr__(self) -> str:
        return f"Flags(occurrences={self.occurrences!r}, positional={self.positional!r})"

    def value(self, name: str) -> str | None:
        """The effective value of a single-value flag (last one wins), None when absent."""
        values = self._index.get(name)
        return values[-1] if values else None

    def is_set(self, name: str) -> bool:
        """Present with a non-empty value: `--client-ca-file=` leaves client-cert authentication off."""
        values = self._index.get(name)
        if not values:
            return False
        if name in LIST_FLAGS:
            return any(item.strip() for value in values for item in value.split(","))
        return values[-1].strip() != ""

    def items(self, name: str) -> list[str]:
        """The effective value of a list flag: every occurrence, split on commas, empty items dropped."""
        out: list[str] = []
        for value in self._index.get(name) or ():
            for item in value.split(","):
                item = item.strip()
                if item:
                    out.append(item)
        return out

    def raw_items(self, name: str) -> list[str]:
        """A list flag's items as pflag's StringSlice keeps them (encoding/csv: spaces kept, `a,,b` has an empty
        item); an empty value adds nothing."""
        return [item for value in self._index.get(name) or () if value for item in value.split(",")]

    def names(self) -> set[str]:
        return set(self._index)

    def unseen(self, names: Sequence[str]) -> str | None:
        """Why the effective value of one of these flags cannot be known, or None when all can be read."""
        for name in names:
            for index, reference in reversed(self.opaque):
                if name in LIST_FLAGS or self._last.get(name, -1) < index:
                    said = visible(reference)
                    if said.endswith(","):  # the reader's own note: "/start.sh, a program it cannot look into,"
                        return f"{said} may set --{name}"
                    return f"{said} (content unknown before the pod runs) may set --{name}"
            values = self._index.get(name) or ()
            for value in values if name in LIST_FLAGS else values[-1:]:
                if UNKNOWN in value:
                    ref = value.split(UNKNOWN)[1]
                    return f"--{name} takes its value from {ref}, which cannot be read before the pod runs"
        return None


# The shorthands kube-apiserver registers: klog's -v (takes a value) and cobra's -h.
SHORTHANDS_WITH_VALUE = frozenset({"v"})
SHORTHANDS_BOOLEAN = frozenset({"h"})


def parse_flags(argv: Sequence[str]) -> Flags:
    """spf13/pflag's FlagSet.Parse (flag.go parseLongArg/parseShortArg), for kube-apiserver's flags."""
    occurrences: list[tuple[str, str]] = []
    positional: list[str] = []
    opaque: list[tuple[int, str]] = []
    i = 0
    n = len(argv)
    while i < n:
        token = argv[i]
        i += 1
        if token[:1] == UNKNOWN or (UNKNOWN in token and UNKNOWN in token.partition("=")[0]):
            # `$(EXTRA_ARGS)` as an item of its own, or inside a flag's name: any flags at all.
            opaque.append((len(occurrences), token.split(UNKNOWN)[1] if token[:1] == UNKNOWN else visible(token)))
            continue
        if token[:1] != "-" or token == "-":
            positional.append(token)
            continue
        if token == "--":
            positional.extend(argv[i:])
            break
        if token[1] != "-":
            # A single dash is a cluster of one-letter shorthands (`-v=2`, `-v2`); pflag refuses an unknown one,
            # so `-tls-cert-file=x` sets nothing and kube-apiserver exits with "unknown shorthand flag: 't'".
            letter, rest = token[1], token[2:]
            if letter in SHORTHANDS_WITH_VALUE:
                value = rest[1:] if rest.startswith("=") else rest
                if not value and i < n:
                    value, i = argv[i], i + 1
                occurrences.append((letter, value))
            elif letter not in SHORTHANDS_BOOLEAN:
                positional.append(token)
            continue
        name, sep, value = token[2:].partition("=")
        if "_" in name:
            name = name.replace("_", "-")  # kube-apiserver normalises word separators: --tls_cert_file
        if not name:
            positional.append(token)
            continue
        if not sep:
            if name in BOOLEAN_FLAGS:
                value = "true"
            elif i < n:
                # pflag takes the next item as the value whatever it looks like: `--audit-log-path
                # --client-ca-file=/x` sets the audit log path to "--client-ca-file=/x" and no client CA.
                value = argv[i]
                i += 1
            else:
                value = ""  # "flag needs an argument": kube-apiserver does not start
        occurrences.append((name, value))
    return Flags(occurrences, positional, opaque)
