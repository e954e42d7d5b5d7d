"""Each installer's defaults, loaded from installers.yaml (policy is data: the code only applies them)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from webhook.core import yaml_text


@dataclass(frozen=True)
class Installer:
    """One installer's defaults as the data file gives them, and the version of the source they were read from."""

    name: str
    source: str
    known: str
    data: Mapping[str, Any]

    def defaults(self, key: str = "defaults") -> list[tuple[str, str]]:
        return [(str(name), str(value)) for name, value in self.data.get(key) or ()]

    def setting(self, key: str) -> Any:
        return self.data[key]

    def assumption(self, version: tuple[int, int] | None) -> str | None:
        """A note for findings when the configuration's version is not the one whose defaults were read."""
        known = tuple(int(p) for p in self.known.split("."))
        if version is not None and version == known:
            return None
        asked = "an unstated version" if version is None else f"{version[0]}.{version[1]}"
        return f"the verdict assumes {self.name} {self.known}'s defaults for {asked}, the nearest version known"


@functools.cache
def _raw() -> dict[str, Any]:
    text = resources.files("webhook.bootstrap").joinpath("installers.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml_text.safe_load(text)
    return data


def installer(name: str) -> Installer:
    """The installer's entry; `inherits` takes the other entry's keys where this one has none."""
    raw = _raw()
    entry = dict(raw[name])
    parent = entry.pop("inherits", None)
    if parent:
        entry = {**raw[parent], **entry}
    return Installer(name, str(entry["source"]), str(entry["known"]), entry)
