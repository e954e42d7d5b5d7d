"""Find the kube-apiserver in a pod spec and read its effective flags the way kube-apiserver would.

Three steps, each following the program that really does the work:
1. the kubelet joins `command` + `args` and expands `$(VAR)` from the container's `env`;
2. wrappers (`go-runner`, `flock`, `watch-termination ... --`, `sh -c`, `hyperkube apiserver`) are peeled off
   until the kube-apiserver binary and its own arguments are left;
3. those arguments are parsed with spf13/pflag's rules: `--flag=value`, `--flag value` for flags that take a
   value, bare booleans, single dash, last occurrence wins, list flags add up, `--` ends the flags.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from webhook import shell

APISERVER_BINARIES = frozenset({"kube-apiserver"})
HYPERKUBE_BINARIES = frozenset({"hyperkube"})
HYPERKUBE_SUBCOMMANDS = frozenset({"apiserver", "kube-apiserver"})
SHELLS = frozenset({"sh", "bash", "ash", "dash", "zsh", "ksh", "busybox"})
# Programs that run another program named after their own options (`go-runner --log-file=x kube-apiserver`).
WRAPPERS = frozenset(
    {
        "go-runner",
        "flock",
        "watch-termination",
        "timeout",
        "nice",
        "ionice",
        "env",
        "tini",
        "dumb-init",
        "setpriv",
        "chroot",
        "nsenter",
        "stdbuf",
        "su-exec",
        "gosu",
        "taskset",
        "catatonit",
        "chrt",
        "exec",
        "nohup",
        "setsid",
        "unshare",
        "capsh",
        "tini-static",
    }
)

# kube-apiserver's boolean flags (current and retired). pflag never takes the next word as their value:
# `--profiling false` means profiling=true followed by a stray positional argument.
BOOLEAN_FLAGS = frozenset(
    {
        "add-dir-header",
        "aggregator-reject-forwarding-redirect",
        "allow-metric-labels-manifest",
        "allow-privileged",
        "alsologtostderr",
        "anonymous-auth",
        "audit-log-compress",
        "audit-log-batch-throttle-enable",
        "audit-log-truncate-enabled",
        "audit-webhook-batch-throttle-enable",
        "audit-webhook-truncate-enabled",
        "contention-profiling",
        "disable-http2-serving",
        "enable-aggregator-routing",
        "enable-bootstrap-token-auth",
        "enable-garbage-collector",
        "enable-logs-handler",
        "enable-priority-and-fairness",
        "enable-swagger-ui",
        "encryption-provider-config-automatic-reload",
        "etcd-quorum-read",
        "help",
        "kubelet-https",
        "log-json-split-stream",
        "log-text-split-stream",
        "logtostderr",
        "one-output",
        "permit-address-sharing",
        "permit-port-sharing",
        "profiling",
        "service-account-extend-token-expiration",
        "service-account-lookup",
        "shutdown-send-retry-after",
        "skip-headers",
        "skip-log-headers",
        "watch-cache",
    }
)

# List flags: pflag's StringSlice appends on every occurrence (`--a=x,y --a=z` is [x y z]).
LIST_FLAGS = frozenset(
    {
        "tls-cipher-suites",
        "enable-admission-plugins",
        "disable-admission-plugins",
        "admission-control",
        "authorization-mode",
        "service-account-key-file",
        "service-account-issuer",
        "api-audiences",
        "tls-sni-cert-key",
        "cors-allowed-origins",
        "etcd-servers",
        "etcd-servers-overrides",
        "requestheader-allowed-names",
        "requestheader-username-headers",
        "requestheader-group-headers",
        "requestheader-extra-headers-prefix",
        "kubelet-preferred-address-types",
    }
)

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
    """Every occurrence of every flag, in order; reading follows pflag."""

    __slots__ = ("_index", "occurrences", "positional")

    def __init__(self, occurrences: Sequence[tuple[str, str]] = (), positional: Sequence[str] = ()) -> None:
        self.occurrences = tuple(occurrences)
        self.positional = tuple(positional)
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

    def names(self) -> set[str]:
        return set(self._index)


def parse_flags(argv: Sequence[str]) -> Flags:
    occurrences: list[tuple[str, str]] = []
    positional: list[str] = []
    i = 0
    n = len(argv)
    while i < n:
        token = argv[i]
        i += 1
        if token[:1] != "-" or token == "-":
            positional.append(token)
            continue
        if token == "--":
            positional.extend(argv[i:])
            break
        name, sep, value = token[2:].partition("=") if token[1] == "-" else token[1:].partition("=")
        if "_" in name:
            name = name.replace("_", "-")  # kube-apiserver normalises word separators: --tls_cert_file
        if not name:
            positional.append(token)
            continue
        if not sep:
            if name in BOOLEAN_FLAGS:
                value = "true"
            elif i < n and argv[i][:1] != "-":
                value = argv[i]
                i += 1
            else:
                value = ""
        occurrences.append((name, value))
    return Flags(occurrences, positional)


# --- kubelet $(VAR) expansion (k8s.io/kubernetes third_party/forked/golang/expansion) -------------------


def expand(text: str, env: Mapping[str, str | None]) -> str:
    """Expand `$(NAME)` as the kubelet does: `$$` is a literal `$`; unknown names stay as written.

    A variable whose value comes from `valueFrom` (fieldRef, secretKeyRef, ...) is unknown before the pod
    runs; it maps to None here and its reference is kept, so a flag set from it counts as set.
    """
    if "$" not in text:
        return text
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end < 0:
                out.append(text[i:])
                break
            name = text[i + 2 : end]
            value = env.get(name)
            out.append(value if value is not None else text[i : end + 1])
            i = end + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def container_env(container: Mapping[str, Any]) -> dict[str, str | None]:
    """The container's env as the kubelet resolves it for expansion, in order; later entries win."""
    env: dict[str, str | None] = {}
    for item in _list(container.get("env")):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            continue
        value = item.get("value")
        if isinstance(value, str):
            env[item["name"]] = expand(value, env)
        elif "valueFrom" in item:
            env[item["name"]] = None
        else:
            env[item["name"]] = ""
    return env


# --- locating kube-apiserver inside a container's argv -----------------------------------------------


def _basename(token: str) -> str:
    return posixpath.basename(token.rstrip("/"))


def _shell_script(argv: Sequence[str]) -> str | None:
    """The script of `sh [-opts] -c SCRIPT` / `bash -ec SCRIPT`, or None when not `-c` form."""
    i = 1
    saw_c = False
    while i < len(argv):
        token = argv[i]
        if token == "--":
            i += 1
            continue
        if token.startswith(("-", "+")) and len(token) > 1:
            if token in ("-o", "+o", "-O", "+O"):
                i += 2
                continue
            if token.startswith("-") and "c" in token[1:] and not token.startswith("--"):
                saw_c = True
            i += 1
            continue
        return token if saw_c else None
    return None


_PROGRAMS = APISERVER_BINARIES | HYPERKUBE_BINARIES | SHELLS | WRAPPERS


def find_apiserver_args(argv: Sequence[str], depth: int = 0) -> list[str] | None:
    """kube-apiserver's own arguments when `argv` runs it, directly or through wrappers; else None.

    The program is argv[0]. Only known wrappers (which exec the program named after their own options) are
    looked through, so `echo kube-apiserver` or a sidecar's `--bin=/usr/bin/kube-apiserver` never count.
    """
    if depth > 6 or not argv:
        return None
    program = _basename(argv[0])
    if program in APISERVER_BINARIES:
        return list(argv[1:])
    if program in HYPERKUBE_BINARIES:
        return list(argv[2:]) if len(argv) > 1 and argv[1] in HYPERKUBE_SUBCOMMANDS else None
    if program in SHELLS:
        rest = argv[1:] if program == "busybox" and len(argv) > 1 and argv[1] in SHELLS else argv
        script = _shell_script(rest)
        if script is None:
            return None
        for command in shell.simple_commands(script):
            found = find_apiserver_args(command, depth + 1)
            if found is not None:
                return found
        return None
    if program in WRAPPERS:
        for i in range(1, len(argv)):
            if argv[i].startswith("-"):
                continue
            found = find_apiserver_args(argv[i:], depth + 1)
            if found is not None:
                return found
    return None


@dataclass(frozen=True)
class ApiserverContainer:
    """One container that runs kube-apiserver, with its effective flags."""

    name: str
    image: str
    args: tuple[str, ...]
    flags: Flags = field(default_factory=Flags)
    via_image_entrypoint: bool = False


def _image_basename(image: str) -> str:
    # registry.k8s.io/kube-apiserver:v1.30.0@sha256:... -> kube-apiserver
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def _strings(value: Any) -> list[str] | None:
    if value is None:
        return []
    if not isinstance(value, list):
        return None
    return [item if isinstance(item, str) else str(item) for item in value]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def apiserver_of(container: Mapping[str, Any]) -> ApiserverContainer | None:
    command = _strings(container.get("command"))
    args = _strings(container.get("args"))
    if command is None or args is None:
        return None
    env = container_env(container)
    if command and _basename(expand(command[0], env)) not in _PROGRAMS:
        return None  # most containers of a pod: decided by their program alone, before expanding the rest
    command = [expand(item, env) for item in command]
    args = [expand(item, env) for item in args]
    image = container.get("image") if isinstance(container.get("image"), str) else ""
    name = container.get("name") if isinstance(container.get("name"), str) else ""
    assert isinstance(image, str) and isinstance(name, str)
    found = find_apiserver_args(command + args)
    via_entrypoint = False
    if found is None and not command:
        # No command: the image's ENTRYPOINT runs. The kube-apiserver image's entrypoint is the binary;
        # hyperkube's takes the subcommand as args[0].
        base = _image_basename(image)
        if base in APISERVER_BINARIES:
            found, via_entrypoint = args, True
        elif base in HYPERKUBE_BINARIES and args and args[0] in HYPERKUBE_SUBCOMMANDS:
            found, via_entrypoint = args[1:], True
    if found is None:
        return None
    return ApiserverContainer(name, image, tuple(found), parse_flags(found), via_entrypoint)


def apiserver_containers(pod_spec: Mapping[str, Any]) -> list[ApiserverContainer]:
    """Every app container of the pod that runs kube-apiserver (init containers never serve)."""
    found = []
    for container in _list(pod_spec.get("containers")):
        if isinstance(container, Mapping):
            apiserver = apiserver_of(container)
            if apiserver is not None:
                found.append(apiserver)
    return found


_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.\d+)?")


def image_version(image: str) -> tuple[int, int] | None:
    """(major, minor) from an image tag like `kube-apiserver:v1.28.3` or `hyperkube:v1.5.1_coreos.0`."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    _, _, tag = last.partition(":")
    match = _VERSION.match(tag)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2))
