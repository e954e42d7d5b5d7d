"""Property tests: no body ever gets a 5xx from the real server; flag order never changes a verdict."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.apiserver_client import admission_review
from tests.conftest import RunningServer
from tests.test_http import apiserver_pod
from webhook.engine import evaluate
from webhook.policy import Mode, Policy

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
FIELDS = ["apiVersion", "kind", "request"]
REQUEST_FIELDS = [
    "uid",
    "kind",
    "operation",
    "object",
    "dryRun",
    "namespace",
    "name",
    "userInfo",
    "oldObject",
]


@st.composite
def mutated_reviews(draw: st.DrawFn) -> Any:
    review = admission_review(apiserver_pod(*draw(st.lists(st.sampled_from(FLAG_POOL), max_size=6))))
    target = draw(st.sampled_from(["top", "request", "container", "none"]))
    if target == "top":
        review[draw(st.sampled_from(FIELDS))] = draw(json_values)
    elif target == "request":
        review["request"][draw(st.sampled_from(REQUEST_FIELDS))] = draw(json_values)
    elif target == "container":
        container = review["request"]["object"]["spec"]["containers"][0]
        container[draw(st.sampled_from(["command", "args", "env", "name", "image"]))] = draw(json_values)
    return review


FLAG_POOL = [
    "--tls-cert-file=/c",
    "--tls-private-key-file=/k",
    "--client-ca-file=/ca",
    "--client-ca-file=",
    "--tls-cert-file",
    "/c2",
    "--v=2",
    "--anonymous-auth",
    "false",
    "--",
    "-",
    "$(X)",
    "--x=$(Y)",
    "sh",
    "-c",
    "'",
    '"',
    "#",
    ";",
    "--requestheader-client-ca-file=/f",
]

bodies = (
    st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps(v).encode())
    | mutated_reviews().map(lambda v: json.dumps(v).encode())
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_no_body_gets_a_5xx(enforce_server: RunningServer, body: bytes) -> None:
    client = enforce_server.client()
    try:
        result = client.post("/validate?timeout=10s", body)
    finally:
        client.close()
    assert result.status in (200, 400), result.body[:300]
    answer = result.json()
    if result.status == 200:
        sent = json.loads(body)
        assert answer["response"]["uid"] == sent["request"]["uid"]
        assert answer["apiVersion"] == sent["apiVersion"]
    else:
        assert answer["error"]


REQUIRED = ["--tls-cert-file=/c", "--tls-private-key-file=/k", "--client-ca-file=/ca"]
NOISE = [
    "--v=2",
    "--secure-port=6443",
    "--authorization-mode=Node,RBAC",
    "--profiling",
    "--etcd-servers=https://e:2379",
]


@settings(max_examples=200, deadline=None)
@given(
    present=st.lists(st.sampled_from(REQUIRED), unique=True),
    noise=st.lists(st.sampled_from(NOISE), unique=True),
    order=st.randoms(use_true_random=False),
)
def test_flag_order_never_changes_the_verdict(present: list[str], noise: list[str], order: Any) -> None:
    flags = present + noise
    shuffled = list(flags)
    order.shuffle(shuffled)
    policy = Policy(mode=Mode.ENFORCE)

    def verdict(args: list[str]) -> set[str]:
        return {f.key for f in evaluate(apiserver_pod(*args), policy).findings}

    assert verdict(flags) == verdict(shuffled)
    has = set(present)
    assert ("client-ca-file" in verdict(shuffled)) == ("--client-ca-file=/ca" not in has)
    tls_ok = {"--tls-cert-file=/c", "--tls-private-key-file=/k"} <= has
    assert ("tls-cert-and-key" in verdict(shuffled)) == (not tls_ok)
