"""`apiserver-tls-guard scan`: read Pods and workloads from a live cluster and judge them like `check` does."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from webhook.core.engine import evaluate
from webhook.core.policy import Policy
from webhook.offline.report import Judged

PAGE_SIZE = 250


@dataclass(frozen=True)
class Listed:
    kind: str
    api: str  # client class
    plural: str  # list_<plural>_for_all_namespaces / list_namespaced_<plural>


KINDS = (
    Listed("Pod", "CoreV1Api", "pod"),
    Listed("Deployment", "AppsV1Api", "deployment"),
    Listed("StatefulSet", "AppsV1Api", "stateful_set"),
    Listed("DaemonSet", "AppsV1Api", "daemon_set"),
    Listed("ReplicaSet", "AppsV1Api", "replica_set"),
    Listed("Job", "BatchV1Api", "job"),
    Listed("CronJob", "BatchV1Api", "cron_job"),
)
# An object owned by one of these is judged through its owner's template, so it is not reported twice.
_JUDGED_OWNERS = frozenset(k.kind for k in KINDS)


class ScanError(Exception):
    """The cluster could not be read: no configuration, or a list call failed."""


def _owned_by_judged(obj: Mapping[str, Any]) -> bool:
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(isinstance(o, Mapping) and o.get("kind") in _JUDGED_OWNERS for o in owners)


def list_objects(
    api: client.ApiClient, listed: Listed, namespace: str | None, progress: Callable[[str], None]
) -> Iterator[dict[str, Any]]:
    group = getattr(client, listed.api)(api)
    if namespace:
        method = getattr(group, f"list_namespaced_{listed.plural}")
        scoped: dict[str, Any] = {"namespace": namespace}
    else:
        method = getattr(group, f"list_{listed.plural}_for_all_namespaces")
        scoped = {}
    token = ""
    seen = 0
    while True:
        paging: dict[str, Any] = {"limit": PAGE_SIZE, **({"_continue": token} if token else {})}
        try:
            # Raw JSON: keeps the API's own field names, which is what the engine reads.
            response = method(**scoped, **paging, _preload_content=False, _request_timeout=30)
            body = json.loads(response.data)
        except ApiException as err:
            raise ScanError(f"cannot list {listed.kind}s: HTTP {err.status} {err.reason}") from None
        except (HTTPError, OSError, ValueError) as err:
            raise ScanError(f"cannot list {listed.kind}s: {err}") from None
        items = body.get("items") or []
        for item in items:
            if isinstance(item, dict):
                item.setdefault("kind", listed.kind)
                yield item
        seen += len(items)
        progress(f"scanning {listed.kind}s: {seen}")
        token = (body.get("metadata") or {}).get("continue") or ""
        if not token:
            return


def scan(
    api: client.ApiClient, policy: Policy, namespace: str | None, progress: Callable[[str], None]
) -> tuple[list[Judged], list[str]]:
    judged: list[Judged] = []
    errors: list[str] = []
    for listed in KINDS:
        try:
            for obj in list_objects(api, listed, namespace, progress):
                if _owned_by_judged(obj):
                    continue
                meta = obj.get("metadata") or {}
                source = f"{listed.kind.lower()}/{meta.get('namespace', '')}/{meta.get('name', '')}"
                judged.append(Judged(source, 1, evaluate(obj, policy)))
        except ScanError as err:
            errors.append(str(err))
    return judged, errors
