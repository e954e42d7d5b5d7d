"""A bounded cache of decisions, for the reviews kube-apiserver sends again and again.

Kubelets retry a mirror pod that was refused, controllers re-apply what they own, `kubectl apply --dry-run=server`
is run in loops: the same object comes back, with a new uid. The key is everything `decide` reads — operation,
kind, namespace, name, the object and the old object — and the cache belongs to one policy: a new policy (a reload)
starts an empty cache, so no answer outlives the policy that made it. The uid is put back into each answer.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import orjson

from webhook.admission.decide import Decision
from webhook.admission.review import Request, Response
from webhook.core.policy import Policy

DEFAULT_SIZE = 4096  # decisions kept; each holds a few hundred bytes of answer


_UID = "\x00uid\x00"  # stands for the uid in a cached answer; a uid from JSON never holds NUL


@dataclass(frozen=True)
class CachedAnswer:
    """A decision and its answer serialized once, around the place where each request's uid goes."""

    decision: Decision
    head: bytes
    tail: bytes

    @classmethod
    def of(cls, decision: Decision, api_version: str) -> CachedAnswer:
        template = orjson.dumps(decision.response.review(api_version, uid=_UID))
        head, _, tail = template.partition(orjson.dumps(_UID))
        return cls(decision, head, tail)

    def payload(self, uid: str) -> bytes:
        return self.head + orjson.dumps(uid) + self.tail


def serialize(response: Response, api_version: str) -> bytes:
    """The AdmissionReview answer as compact JSON bytes (UTF-8, as Go's encoding/json reads it)."""
    return orjson.dumps(response.review(api_version))


class VerdictCache:
    """An LRU of answers for one policy at a time (DEFAULT_SIZE entries); a different Policy object empties it."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._policy: Policy | None = None
        self._entries: OrderedDict[bytes, CachedAnswer] = OrderedDict()

    @staticmethod
    def key(request: Request) -> bytes:
        what = [
            request.api_version,
            request.operation,
            request.kind,
            request.namespace,
            request.name,
            request.obj,
            request.old_obj,
        ]
        # orjson keeps the source's key order: the same bytes from kube-apiserver give the same key, another order only
        # a miss. Non-string keys cannot come out of JSON.
        return hashlib.blake2b(orjson.dumps(what), digest_size=16).digest()

    def get(self, policy: Policy, key: bytes) -> CachedAnswer | None:
        if policy is not self._policy:
            self._policy, self._entries = policy, OrderedDict()
            return None
        answer = self._entries.get(key)
        if answer is not None:
            self._entries.move_to_end(key)
        return answer

    def put(self, policy: Policy, key: bytes, answer: CachedAnswer) -> None:
        if policy is not self._policy:
            self._policy, self._entries = policy, OrderedDict()
        self._entries[key] = answer
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
