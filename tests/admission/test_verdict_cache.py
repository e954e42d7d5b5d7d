"""The verdict cache: a repeated review is answered from it with its own uid; anything the answer depends on
(object, old object, namespace, name, operation, apiVersion, the policy) makes a different entry; it is bounded."""

from __future__ import annotations

import copy
import json

from tests.admission.test_http import COMPLIANT, NO_TLS, apiserver_pod
from tests.apiserver_client import ApiserverClient, admission_review
from webhook.admission.app import answer_review
from webhook.admission.review import parse_review
from webhook.admission.verdict_cache import VerdictCache
from webhook.core.policy import load_policy


def _answer(policy_mode: str, review: dict[str, object], cache: VerdictCache) -> dict[str, object]:
    status, body = answer_review(load_policy(None, mode=policy_mode), json.dumps(review).encode(), cache)
    assert status == 200
    response: dict[str, object] = json.loads(body)["response"]
    return response


def test_a_hit_answers_with_the_requests_own_uid() -> None:
    cache = VerdictCache()
    policy = load_policy(None, mode="enforce")
    first, second = admission_review(apiserver_pod(*NO_TLS)), admission_review(apiserver_pod(*NO_TLS))
    a = json.loads(answer_review(policy, json.dumps(first).encode(), cache)[1])["response"]
    b = json.loads(answer_review(policy, json.dumps(second).encode(), cache)[1])["response"]
    assert len(cache) == 1
    assert a["uid"] == first["request"]["uid"] and b["uid"] == second["request"]["uid"]
    assert {k: v for k, v in a.items() if k != "uid"} == {k: v for k, v in b.items() if k != "uid"}


def test_everything_the_answer_depends_on_is_in_the_key() -> None:
    base = admission_review(apiserver_pod(*NO_TLS))
    variants = [base]
    for path, value in (
        (("request", "namespace"), "other"),
        (("request", "name"), "other"),
        (("request", "operation"), "UPDATE"),
        (("apiVersion",), "admission.k8s.io/v1beta1"),
    ):
        changed = copy.deepcopy(base)
        target = changed
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
        variants.append(changed)
    worse_old = copy.deepcopy(base)
    worse_old["request"]["operation"] = "UPDATE"
    worse_old["request"]["oldObject"] = apiserver_pod(*COMPLIANT)
    variants.append(worse_old)
    other_object = admission_review(apiserver_pod(*COMPLIANT))
    variants.append(other_object)
    keys = {VerdictCache.key(parse_review(v)) for v in variants}
    assert len(keys) == len(variants)


def test_a_new_policy_never_gets_an_answer_made_under_the_old_one() -> None:
    cache = VerdictCache()
    review = admission_review(apiserver_pod(*NO_TLS))
    assert _answer("enforce", review, cache)["allowed"] is False
    assert _answer("warn", review, cache)["allowed"] is True  # a reload: another Policy object


def test_the_cache_is_bounded() -> None:
    cache = VerdictCache(size=3)
    policy = load_policy(None, mode="enforce")
    for i in range(10):
        answer_review(policy, json.dumps(admission_review(apiserver_pod(*NO_TLS, name=f"p{i}"))).encode(), cache)
    assert len(cache) == 3


def test_hit_rate_is_a_metric(enforce_client: ApiserverClient) -> None:
    def count(result: str) -> float:
        text = enforce_client.get("/metrics").body.decode()
        prefix = f'tlsguard_verdict_cache_lookups_total{{result="{result}"}} '
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))

    pod = apiserver_pod(*NO_TLS, name="cache-metric-pod")
    hits_before = count("hit")
    for _ in range(3):
        enforce_client.review(admission_review(pod))
    assert count("hit") - hits_before >= 2
    assert count("miss") >= 1


def test_a_retry_with_new_server_set_metadata_is_a_hit_and_deletion_is_not() -> None:
    """The kubelet retries a denied mirror pod with the same pod; kube-apiserver gives each try a new uid and
    creationTimestamp before validating admission (registry/rest/create.go FillObjectMetaSystemFields), so those
    must not be in the key. deletionTimestamp and labels change the answer (deleting objects are admitted, label
    exemptions), so they stay."""
    policy = load_policy(None, mode="enforce")
    cache = VerdictCache()
    tries = []
    for n in range(3):
        review = admission_review(apiserver_pod(*NO_TLS))
        review["request"]["object"]["metadata"].update(
            uid=f"0000-{n}", creationTimestamp=f"2026-12-01T00:00:0{n}Z", resourceVersion=str(n)
        )
        tries.append(review)
    keys = {VerdictCache.key(parse_review(r)) for r in tries}
    assert len(keys) == 1
    for review in tries:
        answer_review(policy, json.dumps(review).encode(), cache)
    assert len(cache) == 1
    deleting = copy.deepcopy(tries[0])
    deleting["request"]["object"]["metadata"]["deletionTimestamp"] = "2026-12-01T00:01:00Z"
    labelled = copy.deepcopy(tries[0])
    labelled["request"]["object"]["metadata"]["labels"] = {"env": "lab"}
    assert len({*keys, VerdictCache.key(parse_review(deleting)), VerdictCache.key(parse_review(labelled))}) == 3
