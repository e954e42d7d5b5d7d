"""Kubernetes objects out of manifest text: multi-document YAML, JSON, and `List` objects."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml


class DocumentError(ValueError):
    """The text is not YAML/JSON Kubernetes objects; the message says where."""


@dataclass(frozen=True)
class Document:
    obj: Mapping[str, Any]
    index: int  # position in the file, 1-based, counting items of List objects too


def _flatten(obj: Any) -> Iterator[Mapping[str, Any]]:
    if not isinstance(obj, Mapping):
        return
    if str(obj.get("kind", "")).endswith("List") and isinstance(obj.get("items"), list):
        for item in obj["items"]:
            yield from _flatten(item)
    else:
        yield obj


def load_documents(text: str, source: str = "<input>") -> list[Document]:
    """Every object in the text. JSON first (a JSON document is also YAML, but JSON errors read better)."""
    stripped = text.lstrip()
    raw: list[Any]
    if stripped.startswith(("{", "[")):
        try:
            loaded = json.loads(text)
            raw = loaded if isinstance(loaded, list) else [loaded]
        except ValueError:
            raw = _yaml_documents(text, source)
    else:
        raw = _yaml_documents(text, source)
    out: list[Document] = []
    for item in raw:
        if item is None:
            continue
        if not isinstance(item, Mapping):
            raise DocumentError(f"{source}: document {len(out) + 1} is a {type(item).__name__}, not an object")
        for obj in _flatten(item):
            out.append(Document(obj, len(out) + 1))
    return out


def _yaml_documents(text: str, source: str) -> list[Any]:
    try:
        return list(yaml.safe_load_all(text))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise DocumentError(f"{source}:{where}: not valid YAML: {problem}") from None
