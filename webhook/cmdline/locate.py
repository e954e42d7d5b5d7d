"""Find the kube-apiserver in a pod spec and its effective flags.

Three steps, each following the program that really does the work:
1. the kubelet joins `command` + `args` and expands `$(VAR)` from the container's `env` (expand.py);
2. wrappers (`go-runner`, `flock`, `env`, `watch-termination ... --`, `sh -c`, `hyperkube apiserver`) are peeled
   off until the kube-apiserver binary and its own arguments are left; a script is read as the shell would
   run it (script.py);
3. those arguments are parsed with spf13/pflag's rules (flags.py).

Every argv position is looked at once (wrappers are peeled left to right, never retried), and the whole reading
of one object runs under a Budget: past it, or past a bound, the container is judged as "could not read".
"""

from __future__ import annotations

import itertools
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from webhook.cmdline import script
from webhook.cmdline.budget import MAX_ARGV_ITEMS, MAX_RUNS, MAX_VALUE_BYTES, Budget, Unreadable
from webhook.cmdline.expand import UNKNOWN, container_env, expand, unknown, visible
from webhook.cmdline.flags import Flags, parse_flags
from webhook.cmdline.images import image_program, is_apiserver_image
from webhook.cmdline.script import UNKNOWN_VALUE, Env, Value

APISERVER_BINARIES = frozenset({"kube-apiserver"})
HYPERKUBE_BINARIES = frozenset({"hyperkube"})
HYPERKUBE_SUBCOMMANDS = frozenset({"apiserver", "kube-apiserver"})
SHELLS = frozenset({"sh", "bash", "ash", "dash", "zsh", "ksh", "mksh", "yash"})
# Programs that run another program named after their own options (`go-runner --log-file=x kube-apiserver`).
WRAPPERS = frozenset(
    {
        "go-runner",
        "flock",
        "watch-termination",
        "timeout",
        "nice",
        "ionice",
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
        "xargs",
        "runuser",
        "sudo",
        "doas",
        "s6-setuidgid",
        "chpst",
        "prlimit",
        "numactl",
        "cgexec",
        "ip",
    }
)
# Programs that never run a program named in their arguments: in a kube-apiserver image, a script made only of
# these (`echo 'image pre-pulled'; exit 0`) does not run kube-apiserver. Any other program there (`/start.sh`)
# may, and cannot be looked into.
PLAIN_PROGRAMS = frozenset(
    {
        ":", "[", "[[", "awk", "base64", "basename", "cat", "cd", "chgrp", "chmod", "chown", "cp", "curl", "cut",
        "date", "df", "dirname", "du", "echo", "egrep", "exit", "expr", "false", "getent", "grep", "gunzip", "gzip",
        "head", "hostname", "id", "install", "jq", "kill", "ln", "ls", "md5sum", "mkdir", "mkfifo", "mount", "mv",
        "nc", "nslookup", "openssl", "pgrep", "pkill", "printf", "ps", "pwd", "readlink", "realpath", "return",
        "rm", "rmdir", "sed", "seq", "sha256sum", "sleep", "sort", "ss", "stat", "sync", "tail", "tar", "tee",
        "test", "touch", "tr", "true", "ulimit", "umask", "umount", "uname", "uniq", "update-ca-certificates",
        "wait", "wc", "wget", "whoami", "yq",
    }
)  # fmt: skip
_PROGRAMS = APISERVER_BINARIES | HYPERKUBE_BINARIES | SHELLS | WRAPPERS | {"env", "busybox"}


def _basename(token: str) -> str:
    return posixpath.basename(token.rstrip("/"))


def _shell_script(argv: Sequence[str], pos: int) -> tuple[str, str, list[str]] | None:
    """For `sh [-opts] -c SCRIPT [$0 $1 ...]` / `bash -ec SCRIPT` at argv[pos]: the script, its `$0` and its
    positional parameters (POSIX XCU sh: `sh -c command_string [command_name [argument...]]`); None when the
    shell reads its script from a file or standard input."""
    i = pos + 1
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
        if not saw_c:
            return None
        zero = argv[i + 1] if i + 1 < len(argv) else argv[pos]
        return token, zero, list(argv[i + 2 :])
    return None


def _split_string(text: str) -> list[str] | None:
    """GNU env's `-S STRING` split, for strings without escapes or `${VAR}` (coreutils env.c
    build_argv/splitbuf: quotes group, whitespace separates); None for any other string."""
    if any(ch in text for ch in "\\$#"):
        return None
    words: list[str] = []
    current: list[str] = []
    started = False
    quote = ""
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
            else:
                current.append(ch)
        elif ch in "'\"":
            quote, started = ch, True
        elif ch in " \t\n\r\f\v":
            if started:
                words.append("".join(current))
            current, started = [], False
        else:
            current.append(ch)
            started = True
    if quote:
        return None
    if started:
        words.append("".join(current))
    return words


class _Reader:
    """Follows one container's argv to every kube-apiserver it runs; `notes` names what could not be followed."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.runs: list[list[str]] = []
        self.notes: list[str] = []

    def found(self, args: Sequence[str]) -> None:
        if len(self.runs) >= MAX_RUNS:
            raise Unreadable(f"more than {MAX_RUNS} kube-apiserver runs in one container")
        self.runs.append(list(args))

    def program(self, argv: list[str], env: Env, depth: int) -> None:
        """Follow `argv` from its program. A wrapper's own options are skipped, and its words are tried in
        turn as the program it runs: each position once, left to right (a wrapper after a wrapper only
        continues the same scan)."""
        n = len(argv)
        if n > MAX_ARGV_ITEMS:
            raise Unreadable(f"more than {MAX_ARGV_ITEMS} words in one command")
        pos = 0
        wrapped = False
        unknown_candidate: str | None = None
        while pos < n:
            self.budget.spend()
            word = argv[pos]
            if wrapped and word.startswith("-"):
                pos += 1
                continue
            if UNKNOWN in word:
                if not wrapped:
                    self.notes.append(visible(word))
                    return
                unknown_candidate = word
                pos += 1
                continue
            program = _basename(word)
            if program in APISERVER_BINARIES:
                self.found(argv[pos + 1 :])
                return
            if program in HYPERKUBE_BINARIES:
                sub = argv[pos + 1] if pos + 1 < n else ""
                if sub in HYPERKUBE_SUBCOMMANDS:
                    self.found(argv[pos + 2 :])
                    return
                if UNKNOWN in sub:
                    self.notes.append(f"{word} {visible(sub)}")
                    return
                if not wrapped:
                    return
            elif program in SHELLS:
                if self.shell(argv, pos, env, depth) or not wrapped:
                    return
            elif program == "busybox":
                pos += 1  # the applet named next is the program
                continue
            elif program == "env":
                argv, pos, env = self.env(argv, pos, env)
                n = len(argv)
                wrapped = False
                continue
            elif program in WRAPPERS:
                wrapped = True
            elif not wrapped:
                if program not in PLAIN_PROGRAMS:
                    self.notes.append(word)
                return
            elif program not in PLAIN_PROGRAMS:
                unknown_candidate = word
            pos += 1
        if unknown_candidate is not None:
            self.notes.append(visible(unknown_candidate))

    def shell(self, argv: list[str], pos: int, env: Env, depth: int) -> bool:
        """Read `sh -c SCRIPT` as the shell would run it; True when it runs kube-apiserver."""
        parsed = _shell_script(argv, pos)
        if parsed is None:
            operand = next((w for w in itertools.islice(argv, pos + 1, None) if not w.startswith("-")), None)
            self.notes.append(visible(operand) if operand is not None else f"{argv[pos]} reading standard input")
            return False
        text, zero, params = parsed
        before = len(self.runs)
        script.run(text, zero, params, env, self.program, self.budget, depth + 1)
        return len(self.runs) > before

    def env(self, argv: list[str], pos: int, env: Env) -> tuple[list[str], int, Env]:
        """GNU coreutils env (env.c): options, NAME=VALUE operands, then the program; `-S` splits its string
        into more arguments, parsed as if given on the command line."""
        values: dict[str, Value] = dict(env.values)
        rest_unknown = env.rest_unknown
        i = pos + 1
        while i < len(argv):
            self.budget.spend()
            word = argv[i]
            if word == "--":
                i += 1
                break
            if word in ("-", "-i", "--ignore-environment"):
                values, rest_unknown = {}, False
            elif word.startswith(("-S", "--split-string")):
                text = word[2:] if word.startswith("-S") else word.partition("=")[2]
                if not text and "=" not in word and i + 1 < len(argv):
                    i += 1
                    text = argv[i]
                split = _split_string(text) if UNKNOWN not in text else None
                if split is None:
                    self.notes.append(f"env -S {visible(text)!r}")
                    return argv, len(argv), env
                self.budget.spend(len(argv))
                argv = [*argv[: i + 1], *split, *argv[i + 1 :]]
            elif word in ("-u", "-C"):
                if word == "-u" and i + 1 < len(argv):
                    values[argv[i + 1]] = None
                i += 1
            elif word.startswith("-u") or word.startswith("--unset="):
                values[word[2:] if word.startswith("-u") else word.partition("=")[2]] = None
            elif word.startswith("-") and len(word) > 1:
                if not word.startswith("--") and "i" in word:
                    values, rest_unknown = {}, False
            elif "=" in word[1:]:
                name, _, value = word.partition("=")
                values[name] = UNKNOWN_VALUE if UNKNOWN in value else value
            else:
                break
            i += 1
        return argv, i, Env(values, rest_unknown)


def all_apiserver_args(argv: Sequence[str], budget: Budget | None = None) -> list[list[str]]:
    """kube-apiserver's own arguments for every way `argv` can run it, directly or through wrappers.

    The program is argv[0]. Only known wrappers (which exec the program named after their own options) are
    looked through, so `echo kube-apiserver` or a sidecar's `--bin=/usr/bin/kube-apiserver` never count. A script
    can run it more than once (`a || b`, `if ...; then ...; else ...; fi`, `case`, a function): each is returned,
    and each is judged, so the worst one decides. Past the budget, the one run returned is unreadable.
    """
    reader = _Reader(budget or Budget())
    try:
        reader.program(list(argv), Env(), 0)
    except Unreadable as error:
        return [[unknown(f"the rest of the command line, which this reader stopped reading ({error.reason}),")]]
    return reader.runs


def find_apiserver_args(argv: Sequence[str]) -> list[str] | None:
    """The first of `all_apiserver_args`, or None when `argv` never runs kube-apiserver."""
    found = all_apiserver_args(argv)
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


def _unreadable(name: str, image: str, why: str) -> ApiserverContainer:
    return ApiserverContainer(name, image, (), Flags(opaque=[(0, why)]))


def apiservers_of(container: Mapping[str, Any], budget: Budget | None = None) -> list[ApiserverContainer]:
    """The kube-apiserver runs of one container: usually one; a script may hold several. A kube-apiserver or
    hyperkube image whose program cannot be followed is one unreadable run: judged, never passed."""
    command = _strings(container.get("command"))
    args = _strings(container.get("args"))
    if command is None or args is None:
        return []
    env = container_env(container)
    image = container.get("image") if isinstance(container.get("image"), str) else ""
    name = container.get("name") if isinstance(container.get("name"), str) else ""
    assert isinstance(image, str) and isinstance(name, str)
    apiserver_image = is_apiserver_image(image)
    if command and not apiserver_image and _basename(expand(command[0], env)) not in _PROGRAMS:
        return []  # most containers of a pod: decided by their program alone, before expanding the rest
    if len(command) + len(args) > MAX_ARGV_ITEMS:
        return [
            _unreadable(
                name, image, f"a command line of more than {MAX_ARGV_ITEMS} items, which this reader does not read,"
            )
        ]
    reader = _Reader(budget or Budget())
    via_entrypoint = False
    try:
        argv = [expand(item, env) for item in command + args]
        if any(len(item) > MAX_VALUE_BYTES for item in argv):
            raise Unreadable(f"an item of more than {MAX_VALUE_BYTES} bytes")
        # The shell sees the pod's env with values known, valueFrom unknown; any other name may come from the
        # image's ENV, envFrom or the kubelet's service variables, so it is unknown, not unset.
        shell_env = Env({k: UNKNOWN_VALUE if v is None or UNKNOWN in v else v for k, v in env.items()})
        if argv:
            reader.program(argv, shell_env, 0)
        if not reader.runs and not command:
            # No command: the image's ENTRYPOINT runs with args, which are not programs. The kube-apiserver
            # image's entrypoint is the binary; hyperkube's takes the subcommand as args[0].
            base = image_program(image)
            reader.notes = []
            if base in APISERVER_BINARIES:
                reader.runs, via_entrypoint = [argv], True
            elif base in HYPERKUBE_BINARIES and argv and argv[0] in HYPERKUBE_SUBCOMMANDS:
                reader.runs, via_entrypoint = [argv[1:]], True
            elif base in HYPERKUBE_BINARIES and argv and UNKNOWN in argv[0]:
                reader.notes = [f"hyperkube {visible(argv[0])}"]
    except Unreadable as error:
        return [
            _unreadable(
                name, image, f"the rest of the command line, which this reader stopped reading ({error.reason}),"
            )
        ]
    if not reader.runs:
        if apiserver_image and reader.notes:
            return [_unreadable(name, image, f"{reader.notes[-1]}, a program this reader cannot look into,")]
        return []
    return [
        ApiserverContainer(
            name if i == 0 else f"{name} (kube-apiserver run {i + 1} in its script)",
            image,
            tuple(found),
            parse_flags(found),
            via_entrypoint,
        )
        for i, found in enumerate(reader.runs)
    ]


def apiserver_containers(pod_spec: Mapping[str, Any], budget: Budget | None = None) -> list[ApiserverContainer]:
    """Every container of the pod that runs kube-apiserver: the app containers, every init container, and the
    ephemeral containers. A native sidecar (`restartPolicy: Always`) serves for the pod's life; so does a plain
    init container whose kube-apiserver never exits: the kubelet waits for it before starting the next one
    (kuberuntime_container.go computeInitContainerActions), and it serves all that time. Ephemeral containers
    (`kubectl debug`) run beside the others until they exit."""
    found = []
    budget = budget or Budget()
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in _list(pod_spec.get(key)):
            if isinstance(container, Mapping):
                found.extend(apiservers_of(container, budget))
    return found
