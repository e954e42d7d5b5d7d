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
    """A kind `scan` lists, and the kubernetes client group and plural that list it."""

    kind: str
    api: str  # client class
    plural: str  # list_<plural>_for_all_namespaces / list_namespaced_<plural>

    @property
    def api_version(self) -> str:
        return {"BatchV1Api": "batch/v1", "AppsV1Api": "apps/v1"}.get(self.api, "v1")


# Owners before what they own, Pods last: an owned object is compared with its owner's template.
KINDS = (
    Listed("CronJob", "BatchV1Api", "cron_job"),
    Listed("Job", "BatchV1Api", "job"),
    Listed("Deployment", "AppsV1Api", "deployment"),
    Listed("ReplicaSet", "AppsV1Api", "replica_set"),
    Listed("StatefulSet", "AppsV1Api", "stateful_set"),
    Listed("DaemonSet", "AppsV1Api", "daemon_set"),
    Listed("ReplicationController", "CoreV1Api", "replication_controller"),
    Listed("PodTemplate", "CoreV1Api", "pod_template"),
    Listed("Pod", "CoreV1Api", "pod"),
)
Failures = frozenset[tuple[str, str]]  # (container, control) pairs that fail


class ScanError(Exception):
    """The cluster could not be read: no configuration, or a list call failed."""


class ListExpired(ScanError):
    """410 Gone on a page: the continue token outlived etcd's compaction; the list must start again."""


LIST_RESTARTS = 3  # an expired list is started again this many times before the kind counts as unread


def _owner(obj: Mapping[str, Any], namespace: str) -> tuple[str, str, str] | None:
    """(kind, namespace, name) of the controlling owner (or the first owner), if any."""
    owners = [o for o in (obj.get("metadata") or {}).get("ownerReferences") or [] if isinstance(o, Mapping)]
    owner = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    return (str(owner.get("kind")), namespace, str(owner.get("name"))) if owner else None


def list_objects(
    api: client.ApiClient, listed: Listed, namespace: str | None, progress: Callable[[str], None]
) -> Iterator[dict[str, Any]]:
    """Every object of one kind, page by page (PAGE_SIZE), as raw JSON; ScanError when a list call fails."""
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
            if err.status == 410 and token:
                raise ListExpired(
                    f"cannot list {listed.kind}s: HTTP 410 {err.reason} (continue token expired)"
                ) from None
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
    api: client.ApiClient,
    policy: Policy,
    namespace: str | None,
    progress: Callable[[str], None],
    only_apiservers: bool = False,
) -> tuple[list[Judged], list[str]]:
    """Judge what runs, not only what is declared: every Pod is judged, also when a workload owns it. An owned
    object that fails exactly as its owner's template is reported once, through the owner; one that differs (a
    StatefulSet with OnDelete updates, a fixed template over an old pod, an ownerReference to nothing we know) is
    reported itself, marked as drift when its owner is known. `only_apiservers`: keep nothing of the objects that
    do not run kube-apiserver (the continuous audit: its memory follows the control planes, not the cluster).
    A list whose continue token expired (410) is started again; what it had yielded is dropped first."""
    judged: list[Judged] = []
    errors: list[str] = []
    seen: dict[tuple[str, str, str], Failures] = {}
    for listed in KINDS:
        for _ in range(LIST_RESTARTS + 1):
            mark = len(judged)
            try:
                _scan_kind(api, policy, namespace, progress, listed, only_apiservers, judged, seen)
                break
            except ListExpired:
                del judged[mark:]
            except ScanError as err:
                errors.append(str(err))
                break
        else:
            errors.append(f"cannot list {listed.kind}s: the list expired {LIST_RESTARTS + 1} times")
    return judged, errors


def _scan_kind(
    api: client.ApiClient,
    policy: Policy,
    namespace: str | None,
    progress: Callable[[str], None],
    listed: Listed,
    only_apiservers: bool,
    judged: list[Judged],
    seen: dict[tuple[str, str, str], Failures],
) -> None:
    for obj in list_objects(api, listed, namespace, progress):
        meta = obj.get("metadata") or {}
        ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        verdict = evaluate(obj, policy)
        if only_apiservers and not verdict.runs_apiserver:
            continue
        failures: Failures = frozenset((f.container, f.key) for f in verdict.findings)
        seen[(listed.kind, ns, name)] = failures
        source = f"{listed.kind.lower()}/{ns}/{name}"
        owner = _owner(obj, ns)
        if owner is not None and owner in seen:
            if seen[owner] == failures:
                continue  # reported through its owner
            source += f" (drift: differs from its owner {owner[0].lower()}/{owner[1]}/{owner[2]})"
        resource = {
            "apiVersion": listed.api_version,
            "kind": listed.kind,
            "namespace": ns,
            "name": name,
            "uid": str(meta.get("uid", "")),
        }
        judged.append(Judged(source, 1, verdict, resource=resource))
