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
    line: int = 1  # first line of the YAML document that holds it
    end_line: int = 0  # last line of that document (0: the end of the file)


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
    raw: list[tuple[Any, int, int]]
    if stripped.startswith(("{", "[")):
        try:
            loaded = json.loads(text)
            raw = [(item, 1, 0) for item in (loaded if isinstance(loaded, list) else [loaded])]
        except ValueError:
            raw = _yaml_documents(text, source)
    else:
        raw = _yaml_documents(text, source)
    out: list[Document] = []
    for item, line, end in raw:
        if item is None:
            continue
        if not isinstance(item, Mapping):
            raise DocumentError(f"{source}: document {len(out) + 1} is a {type(item).__name__}, not an object")
        for obj in _flatten(item):
            out.append(Document(obj, len(out) + 1, line, end))
    return out


def _yaml_documents(text: str, source: str) -> list[tuple[Any, int, int]]:
    """(object, first line, last line) of each YAML document."""
    loader = yaml.SafeLoader(text)
    out: list[tuple[Any, int, int]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            out.append((loader.construct_document(node), node.start_mark.line + 1, node.end_mark.line + 1))
        return out
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise DocumentError(f"{source}:{where}: not valid YAML: {problem}") from None
    finally:
        loader.dispose()
