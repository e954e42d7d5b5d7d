"""The kubelet's `$(VAR)` expansion of `command` and `args` (k8s.io/kubernetes
third_party/forked/golang/expansion)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Brackets a reference whose value cannot be known before the pod runs. NUL cannot occur in a real argv (execve
# ends a string at it), so it never collides with text a manifest really passes.
UNKNOWN = "\x00"


def unknown(reference: str) -> str:
    """A reference marked as unreadable before the pod runs (see UNKNOWN)."""
    return f"{UNKNOWN}{reference}{UNKNOWN}"


def visible(text: str) -> str:
    """The text as a person wrote it: unknown references back to their `$(NAME)` spelling."""
    return text.replace(UNKNOWN, "")


def expand(text: str, env: Mapping[str, str | None]) -> str:
    """Expand `$(NAME)` as the kubelet does: `$$` is a literal `$`; unknown names stay as written.

    A variable whose value comes from `valueFrom` (fieldRef, secretKeyRef, ...) or `envFrom`, or that is not
    defined at all (an `envFrom` ConfigMap may define it), is unknown before the pod runs: its reference is kept,
    bracketed by UNKNOWN, so the flag reader can tell that it cannot see what the item holds.
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
            out.append(value if value is not None else unknown(text[i : end + 1]))
            i = end + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def container_env(container: Mapping[str, Any]) -> dict[str, str | None]:
    """The container's env as the kubelet resolves it for expansion, in order; later entries win."""
    env: dict[str, str | None] = {}
    env_list = container.get("env")
    for item in env_list if isinstance(env_list, list) else []:
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
