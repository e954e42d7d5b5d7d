"""A bounded cache of decisions, for the reviews kube-apiserver sends again and again.

Kubelets retry a mirror pod that was refused, controllers re-apply what they own, `kubectl apply --dry-run=server`
is run in loops: the same object comes back, with a new uid. The key is everything `decide` reads — operation,
kind, namespace, name, the object and the old object — and the cache belongs to one policy: a new policy (a reload)
starts an empty cache, so no answer outlives the policy that made it. The uid is put back into each answer.

It is bounded by entries and by bytes: the answers are made from what the submitter sent, and entries alone once let
8 reviews of a 2.9 MB pod take the server from 45 to 620 MiB (its Deployment's limit is 256 Mi). An entry keeps the
serialized answer and the outcome, not the texts it was made from (`Decision.slim`), and an answer past
MAX_ENTRY_BYTES is not kept at all.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import orjson

from webhook.admission.decide import Decision
from webhook.admission.review import ANSWER_LIMIT, Request, Response
from webhook.core.policy import Policy

DEFAULT_SIZE = 4096  # decisions kept; most hold a few hundred bytes of answer, a denial a few KiB
DEFAULT_BYTES = 16 * 1024 * 1024  # all entries' answers together, each counted with ENTRY_OVERHEAD
MAX_ENTRY_BYTES = 32 * 1024  # answers larger than this are judged again when they come back, not kept
# What an entry costs besides its answer's bytes: the key, the OrderedDict node, the CachedAnswer and its slim
# Decision with the counted tuples. Measured with tracemalloc over 500 entries: 1,727 bytes an entry for a denial
# whose answer is 929 bytes, 821 for a clean answer of 135 (about 700-800 besides the answer), rounded up.
ENTRY_OVERHEAD = 1024


_UID = "\x00uid\x00"  # stands for the uid in a cached answer; a uid from JSON never holds NUL


@dataclass(frozen=True)
class CachedAnswer:
    """A decision and its answer serialized once, around the place where each request's uid goes."""

    decision: Decision
    head: bytes
    tail: bytes

    @classmethod
    def of(cls, decision: Decision, api_version: str) -> CachedAnswer:
        template = _bounded(decision.response, api_version, _UID)
        head, _, tail = template.partition(orjson.dumps(_UID))
        return cls(decision.slim(), head, tail)

    def payload(self, uid: str) -> bytes:
        return self.head + orjson.dumps(uid) + self.tail

    @property
    def cost(self) -> int:
        return len(self.head) + len(self.tail) + ENTRY_OVERHEAD


def _bounded(response: Response, api_version: str, uid: str) -> bytes:
    """The answer serialized; past ANSWER_LIMIT (not counting the uid), its compact form instead."""
    body = orjson.dumps(response.review(api_version, uid=uid))
    if len(body) - len(uid) > ANSWER_LIMIT:
        body = orjson.dumps(response.compact().review(api_version, uid=uid))
    return body


def serialize(response: Response, api_version: str) -> bytes:
    """The AdmissionReview answer as compact JSON bytes (UTF-8, as Go's encoding/json reads it), within
    ANSWER_LIMIT."""
    return _bounded(response, api_version, response.uid)


# What kube-apiserver writes into an object before validating admission (apiserver registry/rest/create.go
# FillObjectMetaSystemFields: uid, creationTimestamp; resourceVersion, managedFields on the way): different in
# every retry of the same object, read by no check. A kubelet retrying a denied mirror pod sends byte-identical
# pods but for these (seen on the node suite: 0 of 11 retries hit the cache while they were in the key).
_SERVER_FIELDS = frozenset({"uid", "creationTimestamp", "resourceVersion", "generation", "managedFields"})


def _without_server_fields(obj: object) -> object:
    if not isinstance(obj, dict):
        return obj
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or _SERVER_FIELDS.isdisjoint(metadata):
        return obj
    return {**obj, "metadata": {k: v for k, v in metadata.items() if k not in _SERVER_FIELDS}}


class VerdictCache:
    """An LRU of answers for one policy at a time (`size` entries, `max_bytes` of answers); a different Policy object
    empties it."""

    def __init__(self, size: int = DEFAULT_SIZE, max_bytes: int = DEFAULT_BYTES) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self.bytes = 0
        self._policy: Policy | None = None
        self._entries: OrderedDict[bytes, CachedAnswer] = OrderedDict()

    def _reset(self, policy: Policy) -> None:
        self._policy, self._entries, self.bytes = policy, OrderedDict(), 0

    @staticmethod
    def key(request: Request) -> bytes:
        what = [
            request.api_version,
            request.operation,
            request.kind,
            request.namespace,
            request.name,
            _without_server_fields(request.obj),
            _without_server_fields(request.old_obj),
        ]
        # orjson keeps the source's key order: the same bytes from kube-apiserver give the same key, another order only
        # a miss. Non-string keys cannot come out of JSON.
        return hashlib.blake2b(orjson.dumps(what), digest_size=16).digest()

    def get(self, policy: Policy, key: bytes) -> CachedAnswer | None:
        if policy is not self._policy:
            self._reset(policy)
            return None
        answer = self._entries.get(key)
        if answer is not None:
            self._entries.move_to_end(key)
        return answer

    def put(self, policy: Policy, key: bytes, answer: CachedAnswer) -> None:
        if policy is not self._policy:
            self._reset(policy)
        if answer.cost - ENTRY_OVERHEAD > MAX_ENTRY_BYTES:
            return
        previous = self._entries.pop(key, None)
        if previous is not None:
            self.bytes -= previous.cost
        self._entries[key] = answer
        self.bytes += answer.cost
        while len(self._entries) > self.size or self.bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= dropped.cost

    def __len__(self) -> int:
        return len(self._entries)
