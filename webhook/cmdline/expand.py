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


_MAX_VALUE = 1024 * 1024


def _may_be_defined(name: str) -> bool:
    """Whether a name the pod's `env` does not give may still be in the kubelet's mapping (through `envFrom`, or
    a service variable): any valid name, which is printable ASCII without `=` (the relaxed IsEnvVarName)."""
    return name != "" and name.isascii() and name.isprintable() and "=" not in name


def expand(text: str, env: Mapping[str, str | None]) -> str:
    """Expand `$(NAME)` as the kubelet does: `$$` is a literal `$`; names not in its mapping stay as written.

    A variable whose value comes from `valueFrom` (fieldRef, secretKeyRef, ...), or that the pod's env does not
    define but `envFrom` or the kubelet's service variables may, is unknown before the pod runs: its reference is
    kept, bracketed by UNKNOWN, so the flag reader can tell that it cannot see what the item holds. A reference
    no mapping can hold (`$(ss -Htan '( sport = 6443 )')` in a script) stays as written, as the kubelet leaves
    it, for the shell to read.
    """
    if "$" not in text:
        return text
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        dollar = text.find("$", i)
        if dollar < 0 or dollar + 1 >= n:
            out.append(text[i:])
            break
        out.append(text[i:dollar])
        i = dollar
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
            if value is not None:
                out.append(value)
            elif name in env or _may_be_defined(name):
                out.append(unknown(text[i : end + 1]))
            else:
                out.append(text[i : end + 1])
            i = end + 1
        else:
            out.append("$")
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
            expanded = expand(value, env)
            # `B=$(A)$(A)`, `C=$(B)$(B)`, ... doubles at each step: past 1 MiB, unknown rather than gigabytes
            env[item["name"]] = expanded if len(expanded) <= _MAX_VALUE else None
        elif "valueFrom" in item:
            env[item["name"]] = None
        else:
            env[item["name"]] = ""
    return env
