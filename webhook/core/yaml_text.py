"""YAML text to Python values through libyaml when PyYAML was built with it (its wheels are).

The pure-Python loader took most of `serve`'s start-up reading the catalog (controls.yaml); libyaml reads the same
documents into the same values in a fraction of the time.
"""

from __future__ import annotations

from typing import Any

import yaml

SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> Any:
    """`yaml.safe_load`, through libyaml."""
    return yaml.load(text, Loader=SafeLoader)  # noqa: S506 - a safe loader, the C one
