"""Find the kube-apiserver in a pod spec and its effective flags.

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

from webhook.cmdline import shell
from webhook.cmdline.expand import container_env, expand, unknown, visible
from webhook.cmdline.flags import Flags, parse_flags
from webhook.cmdline.images import image_name

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


def _basename(token: str) -> str:
    return posixpath.basename(token.rstrip("/"))


def _shell_script(argv: Sequence[str]) -> tuple[str, list[str]] | None:
    """The script of `sh [-opts] -c SCRIPT [$0 $1 ...]` / `bash -ec SCRIPT`, and the words after it (the
    script's `$0`, `$1`, ...), or None when not `-c` form."""
    i = 1
    saw_c = False
    while i < len(argv):
        token = argv[i]
        if token == "--":
            i += 1
            continue
        if token.startswith(("-", "+")) and len(token) > 1 and not token.startswith("--"):
            # A cluster of one-letter options (`-euo pipefail`, `-ceo pipefail`): each `o`/`O` takes the next
            # argument as its option name (bash's set -o), so that word is not the script.
            letters = token[1:]
            saw_c = saw_c or (token[0] == "-" and "c" in letters)
            i += 1 + letters.count("o") + letters.count("O")
            continue
        if token.startswith("--"):
            i += 1  # bash's long options (--norc, --login) take no argument
            continue
        return (token, list(argv[i + 1 :])) if saw_c else None
    return None


# A word the shell expands at run time: `$VAR`, `${VAR}`, `$(cmd)`, backticks (quotes are gone by now).
_SHELL_EXPANSION = re.compile(r"\$[A-Za-z_{(]|`")
_POSITIONAL = re.compile(r"\$(?:\{(\d+)\}|(\d))")


def _shell_words(words: Sequence[str], params: Sequence[str]) -> list[str]:
    """A simple command's words as the shell would pass them, as far as they can be known: `"$@"` and `$*` are
    the words after the script, `$1` the first of them; any other expansion's content is unknown (POSIX sh 2.6)."""
    out: list[str] = []
    for word in words:
        if word in ("$@", "${@}", "$*", "${*}"):
            out.extend(params[1:])
            continue
        word = _POSITIONAL.sub(lambda m: params[int(m[1] or m[2])] if int(m[1] or m[2]) < len(params) else "", word)
        match = _SHELL_EXPANSION.search(word)
        if match is None:
            out.append(word)
        elif "=" in word[: match.start()]:
            head, _, tail = word.partition("=")
            out.append(f"{head}={unknown(tail)}")  # --flag=$VALUE: the value is unknown
        else:
            out.append(unknown(word))  # $EXTRA: any words at all
    return out


_PROGRAMS = APISERVER_BINARIES | HYPERKUBE_BINARIES | SHELLS | WRAPPERS


def all_apiserver_args(argv: Sequence[str], depth: int = 0) -> list[list[str]]:
    """kube-apiserver's own arguments for every way `argv` can run it, directly or through wrappers.

    The program is argv[0]. Only known wrappers (which exec the program named after their own options) are
    looked through, so `echo kube-apiserver` or a sidecar's `--bin=/usr/bin/kube-apiserver` never count. A script
    can run it more than once (`a || b`, `if ...; then ...; else ...; fi`, `case`, a function): each is returned,
    and each is judged, so the worst one decides.
    """
    if depth > 6 or not argv:
        return []
    program = _basename(argv[0])
    if program in APISERVER_BINARIES:
        return [list(argv[1:])]
    if program in HYPERKUBE_BINARIES:
        return [list(argv[2:])] if len(argv) > 1 and argv[1] in HYPERKUBE_SUBCOMMANDS else []
    if program in SHELLS:
        rest = argv[1:] if program == "busybox" and len(argv) > 1 and argv[1] in SHELLS else argv
        parsed = _shell_script(rest)
        if parsed is None:
            return []
        script, params = parsed
        found: list[list[str]] = []
        for command in shell.simple_commands(script):
            found.extend(all_apiserver_args(_shell_words(command, params), depth + 1))
        return found
    if program in WRAPPERS:
        for i in range(1, len(argv)):
            if argv[i].startswith("-"):
                continue
            inner = all_apiserver_args(argv[i:], depth + 1)
            if inner:
                return inner
    return []


def find_apiserver_args(argv: Sequence[str], depth: int = 0) -> list[str] | None:
    """The first of `all_apiserver_args`, or None when `argv` never runs kube-apiserver."""
    found = all_apiserver_args(argv, depth)
    return found[0] if found else None


@dataclass(frozen=True)
class ApiserverContainer:
    """One container that runs kube-apiserver, with its effective flags."""

    name: str
    image: str
    args: tuple[str, ...]
    flags: Flags = field(default_factory=Flags)
    via_image_entrypoint: bool = False


def _strings(value: Any) -> list[str] | None:
    if value is None:
        return []
    if not isinstance(value, list):
        return None
    return [item if isinstance(item, str) else str(item) for item in value]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def apiservers_of(container: Mapping[str, Any]) -> list[ApiserverContainer]:
    """The kube-apiserver runs of one container: usually one; a script may hold several."""
    command = _strings(container.get("command"))
    args = _strings(container.get("args"))
    if command is None or args is None:
        return []
    env = container_env(container)
    image = container.get("image") if isinstance(container.get("image"), str) else ""
    name = container.get("name") if isinstance(container.get("name"), str) else ""
    assert isinstance(image, str) and isinstance(name, str)
    if command and _basename(expand(command[0], env)) not in _PROGRAMS:
        if image_name(image) in APISERVER_BINARIES | HYPERKUBE_BINARIES:
            # A kube-apiserver image running a program we cannot look into (`/start.sh`): judged, never passed.
            program = visible(expand(command[0], env))
            unreadable = Flags(opaque=[(0, f"{program}, a program this reader cannot look into,")])
            return [ApiserverContainer(name, image, (), unreadable)]
        return []  # most containers of a pod: decided by their program alone, before expanding the rest
    command = [expand(item, env) for item in command]
    args = [expand(item, env) for item in args]
    runs = all_apiserver_args(command + args)
    via_entrypoint = False
    if not runs and not command:
        # No command: the image's ENTRYPOINT runs. The kube-apiserver image's entrypoint is the binary;
        # hyperkube's takes the subcommand as args[0].
        base = image_name(image)
        if base in APISERVER_BINARIES:
            runs, via_entrypoint = [args], True
        elif base in HYPERKUBE_BINARIES and args and args[0] in HYPERKUBE_SUBCOMMANDS:
            runs, via_entrypoint = [args[1:]], True
    return [
        ApiserverContainer(
            name if i == 0 else f"{name} (kube-apiserver run {i + 1} in its script)",
            image,
            tuple(found),
            parse_flags(found),
            via_entrypoint,
        )
        for i, found in enumerate(runs)
    ]


def apiserver_containers(pod_spec: Mapping[str, Any]) -> list[ApiserverContainer]:
    """Every container of the pod that runs kube-apiserver for the pod's lifetime: the app containers and the
    native sidecars (init containers with `restartPolicy: Always`, Kubernetes 1.28+). Plain init containers run
    to completion before the pod starts and never serve."""
    found = []
    sidecars = [
        c
        for c in _list(pod_spec.get("initContainers"))
        if isinstance(c, Mapping) and c.get("restartPolicy") == "Always"
    ]
    for container in [*sidecars, *_list(pod_spec.get("containers"))]:
        if isinstance(container, Mapping):
            found.extend(apiservers_of(container))
    return found
