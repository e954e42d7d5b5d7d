"""Kubernetes objects out of manifest text: multi-document YAML, JSON, and `List` objects."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml


class DocumentError(ValueError):
    """The text is not YAML/JSON Kubernetes objects; the message says where."""


# libyaml's parser when PyYAML was built with it (the wheels are): same documents, about 4x faster.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# A document whose aliases expand past this many nodes is refused before anything walks it: a 600-byte
# "billion laughs" expands to billions. go-yaml, which kubectl and the apiserver use, refuses "excessive aliasing"
# the same way. The largest real manifest in the corpus has a few thousand nodes.
MAX_EXPANDED_NODES = 1_000_000
MAX_TEXT_BYTES = 16 * 1024 * 1024


def _expanded_size(root: yaml.Node, source: str, line: int) -> None:
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # entered, children not yet sized: meeting one again is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if not children_done and id(node) in open_nodes:
            raise DocumentError(f"{source}: line {line}: refused: an alias refers to a node that contains it")
        if isinstance(node, yaml.ScalarNode):
            sizes[id(node)] = 1
            continue
        children: list[yaml.Node] = (
            [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else list(node.value)
        )
        if children_done:
            total = 1 + sum(sizes.get(id(c), 1) for c in children)
            if total > MAX_EXPANDED_NODES:
                raise DocumentError(
                    f"{source}: line {line}: refused: its aliases expand to more than {MAX_EXPANDED_NODES:,} nodes"
                )
            sizes[id(node)] = total
            open_nodes.discard(id(node))
        else:
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)


@dataclass(frozen=True)
class Document:
    """One Kubernetes object read from text, with where it came from."""

    obj: Mapping[str, Any]
    index: int  # position in the file, 1-based, counting items of List objects too
    line: int = 1  # first line of the YAML document that holds it (of the item, for an item of a list)
    end_line: int = 0  # last line of that document or item (0: the end of the file)


def _item_as_read(item: Any, list_kind: str, list_api_version: Any) -> Any:
    """A list item as kubectl reads it: the apiserver leaves `kind` and `apiVersion` out of a typed list's items
    (`kubectl get --raw /api/v1/pods`, client libraries and backups write a PodList of bare pods), so an item with
    neither gets the list's kind minus `List` and the list's apiVersion (apimachinery unstructured/helpers.go,
    decodeToList)."""
    if not isinstance(item, Mapping) or item.get("kind") or item.get("apiVersion"):
        return item
    kind = list_kind.removesuffix("List")
    return {**item, "kind": kind, "apiVersion": list_api_version} if kind else item


Lines = tuple[int, int]  # first and last line of an object in the file (last 0: the end of the file)


def _flatten(obj: Any, lines: Lines, item_lines: Mapping[int, Lines]) -> Iterator[tuple[Mapping[str, Any], Lines]]:
    """The objects in a document with their lines, lists expanded as kubectl and the kubelet expand them (nested
    lists too, as cli-runtime's FlattenListVisitor does), in the order written. `item_lines`: the lines of list
    items, by the id of the item as loaded; an item not in it has its list's lines."""
    pending: list[tuple[Any, Lines]] = [(obj, lines)]
    while pending:
        current, where = pending.pop()
        if not isinstance(current, Mapping):
            continue
        items = current.get("items")
        kind = str(current.get("kind") or "")
        if not isinstance(items, list):
            yield current, where
            continue
        if not kind.endswith("List"):
            # kubectl decodes anything with `items` as a list (helpers.go decode() looks for the field, not the
            # kind), while the kubelet and the apiserver decode the object by its kind and ignore the field:
            # judge it both ways.
            yield current, where
        expanded: list[tuple[Any, Lines]] = []
        for item in items:
            read = _item_as_read(item, kind, current.get("apiVersion"))
            item_where = item_lines.get(id(item), where)
            expanded.append((read, item_where))
            if kind == "PodList" and isinstance(read, Mapping) and read.get("kind") != "Pod":
                # The kubelet decodes a static pod file's PodList into typed Pods (pkg/kubelet/config/common.go,
                # tryDecodePodList): every item runs as a pod, whatever kind it names.
                expanded.append(({**read, "kind": "Pod"}, item_where))
        pending.extend(reversed(expanded))


def _list_item_lines(root: yaml.Node, data: Any) -> dict[int, Lines]:
    """The lines of every list item below a document (`items` of lists, and of lists inside them), by the id of
    the item as loaded, so that a finding in the second pod of a PodList points into that pod."""
    found: dict[int, Lines] = {}
    pending: list[tuple[yaml.Node, Any]] = [(root, data)]
    while pending:
        node, value = pending.pop()
        if not isinstance(node, yaml.MappingNode) or not isinstance(value, Mapping):
            continue
        items = value.get("items")
        for key, child in node.value:
            if (
                isinstance(key, yaml.ScalarNode)
                and key.value == "items"
                and isinstance(child, yaml.SequenceNode)
                and isinstance(items, list)
                and len(child.value) == len(items)
            ):
                for item_node, item in zip(child.value, items, strict=True):
                    end = item_node.end_mark
                    # A block item ends where the next one starts, at column 0 of the line after its own.
                    found[id(item)] = (item_node.start_mark.line + 1, end.line if end.column == 0 else end.line + 1)
                    pending.append((item_node, item))
    return found


def load_documents(text: str, source: str = "<input>") -> list[Document]:
    """Every object in the text. JSON first (a JSON document is also YAML, but JSON errors read better)."""
    if len(text) > MAX_TEXT_BYTES:
        raise DocumentError(f"{source}: refused: larger than {MAX_TEXT_BYTES // (1024 * 1024)} MiB")
    stripped = text.lstrip()
    raw: list[tuple[Any, int, int, Mapping[int, Lines]]]
    if stripped.startswith(("{", "[")):
        try:
            loaded = json.loads(text)
            raw = [(item, 1, 0, {}) for item in (loaded if isinstance(loaded, list) else [loaded])]
        except ValueError:
            raw = _yaml_documents(text, source)
    else:
        raw = _yaml_documents(text, source)
    out: list[Document] = []
    for item, line, end, item_lines in raw:
        if item is None:
            continue
        if not isinstance(item, Mapping):
            raise DocumentError(f"{source}: document {len(out) + 1} is a {type(item).__name__}, not an object")
        for obj, (first, last) in _flatten(item, (line, end), item_lines):
            out.append(Document(obj, len(out) + 1, first, last))
    return out


def _yaml_documents(text: str, source: str) -> list[tuple[Any, int, int, Mapping[int, Lines]]]:
    """(object, first line, last line, lines of its list items) of each YAML document."""
    loader = _Loader(text)
    out: list[tuple[Any, int, int, Mapping[int, Lines]]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            _expanded_size(node, source, node.start_mark.line + 1)
            data = loader.construct_document(node)
            item_lines = _list_item_lines(node, data) if isinstance(data, Mapping) and "items" in data else {}
            out.append((data, node.start_mark.line + 1, node.end_mark.line + 1, item_lines))
        return out
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise DocumentError(f"{source}:{where}: not valid YAML: {problem}") from None
    finally:
        loader.dispose()
