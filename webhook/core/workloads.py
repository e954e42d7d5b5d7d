"""Where the pod spec sits inside each kind of Kubernetes object, and who the object is."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"

# kind -> path from the object to its pod spec
POD_SPEC_PATHS: Mapping[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "PodTemplate": ("template", "spec"),
}


# `check --node` judges a running process, not an object; it is a subject of this kind.
PROCESS_KIND = "Process"


@dataclass(frozen=True)
class Subject:
    """The object being judged, as far as messages and exemptions need it."""

    kind: str
    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    mirror: bool = False

    @property
    def is_pod(self) -> bool:
        return self.kind == "Pod"

    def describe(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where or '(unnamed)'}"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _strings(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in _mapping(value).items()}


def pod_spec(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod spec inside an object of a known kind, or None."""
    path = POD_SPEC_PATHS.get(str(obj.get("kind", "")))
    if path is None:
        return None
    node: Any = obj
    for step in path:
        node = _mapping(node).get(step)
    return node if isinstance(node, Mapping) else None


def subject_of(obj: Mapping[str, Any], namespace: str = "", name: str = "") -> Subject:
    """Who the object is; `namespace`/`name` from the admission request fill what the object leaves out."""
    meta = _mapping(obj.get("metadata"))
    kind = str(obj.get("kind") or "")
    labels = _strings(meta.get("labels"))
    if kind != "Pod":
        # A workload's pods carry its template's labels; exemption selectors are written for those.
        template = _mapping(_mapping(obj.get("spec")).get("template"))
        if kind == "CronJob":
            template = _mapping(
                _mapping(_mapping(_mapping(obj.get("spec")).get("jobTemplate")).get("spec")).get("template")
            )
        labels = {**_strings(_mapping(template.get("metadata")).get("labels")), **labels}
    annotations = _mapping(meta.get("annotations"))
    return Subject(
        kind=kind,
        namespace=str(meta.get("namespace") or namespace or ""),
        name=str(meta.get("name") or meta.get("generateName") or name or ""),
        labels=labels,
        mirror=MIRROR_ANNOTATION in annotations,
    )
