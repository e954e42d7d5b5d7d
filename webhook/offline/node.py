"""`check --node`: the kube-apiserver processes running on this machine, read from /proc as the CIS audit step does."""

from __future__ import annotations

from pathlib import Path

from webhook.cmdline.flags import parse_flags
from webhook.cmdline.locate import ApiserverContainer, find_apiserver_args
from webhook.core.engine import Verdict, judge_container
from webhook.core.policy import Policy
from webhook.core.workloads import PROCESS_KIND, Subject
from webhook.offline.report import Judged


def argv_of(cmdline: bytes) -> list[str]:
    """A process's argv from /proc/PID/cmdline: each argument followed by one NUL (proc(5)). Only that final NUL
    goes; an empty argument stays one (`--tls-cert-file '' --v=2` is an empty file name, then --v=2)."""
    if not cmdline:
        return []  # a kernel thread, or a process that is exiting
    body = cmdline[:-1] if cmdline.endswith(b"\0") else cmdline
    return [part.decode("utf-8", "replace") for part in body.split(b"\0")]


def apiserver_processes(proc_root: str | Path) -> tuple[list[tuple[int, list[str]]], list[str]]:
    """(pid, argv) of every process that runs kube-apiserver, and what could not be read."""
    root = Path(proc_root)
    found: list[tuple[int, list[str]]] = []
    errors: list[str] = []
    try:
        entries = sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    except OSError as err:
        return [], [f"{root}: cannot list processes: {err.strerror}"]
    for entry in entries:
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # processes come and go, and some are not ours to read
        argv = argv_of(raw)
        if argv and find_apiserver_args(argv) is not None:
            found.append((int(entry.name), argv))
    return found, errors


def judge_node(proc_root: str | Path, policy: Policy) -> tuple[list[Judged], list[str]]:
    """The verdicts of this machine's kube-apiserver processes, read from `proc_root`, and what could not be read."""
    processes, errors = apiserver_processes(proc_root)
    judged = []
    for pid, argv in processes:
        args = find_apiserver_args(argv) or []
        name = f"kube-apiserver (pid {pid})"
        subject = Subject(kind=PROCESS_KIND, namespace="", name=f"pid {pid}")
        apiserver = ApiserverContainer(name=name, image="", args=tuple(args), flags=parse_flags(args))
        findings = tuple(judge_container(apiserver, subject, policy))
        judged.append(Judged(f"{proc_root}/{pid}/cmdline", 1, Verdict(subject, (name,), findings)))
    if not processes and not errors:
        errors.append(f"{proc_root}: no kube-apiserver process is running on this machine")
    return judged, errors
