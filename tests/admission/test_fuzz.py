"""Fuzzing the real server over HTTPS: generated and mutated bodies never get a 5xx, and the server keeps answering.

`make test` runs a slice (FUZZ_EXAMPLES, default 200); `make fuzz` runs 10,000 and more. The bodies: valid
reviews with one field replaced by anything JSON can hold, broken JSON, random bytes, huge strings, deeply
nested arrays and objects, unicode everywhere, odd command lines inside real kube-apiserver pods.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.admission.test_http import COMPLIANT, apiserver_pod
from tests.apiserver_client import admission_review
from tests.conftest import RunningServer

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
STATUSES: Counter[int] = Counter()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=30,
)
FLAG_POOL = [
    *COMPLIANT,
    "--client-ca-file=",
    "--tls-cert-file",
    "/c2",
    "--anonymous-auth",
    "false",
    "--",
    "-",
    "$(X)",
    "$$(X)",
    "--x=$(Y)",
    "sh",
    "-c",
    "'",
    '"',
    "#",
    ";",
    "&&",
    "\\",
    "--requestheader-client-ca-file=/f",
    "--authorization-mode=",
    "--tls-cipher-suites=,,",
    "--\u202e=1",
    "\x00",
    "--😀=1",
]
TOP = ["apiVersion", "kind", "request"]
REQUEST = ["uid", "kind", "operation", "object", "dryRun", "namespace", "name", "userInfo", "oldObject", "options"]
CONTAINER = ["command", "args", "env", "name", "image"]


@st.composite
def mutated_reviews(draw: st.DrawFn) -> dict[str, Any]:
    flags = draw(st.lists(st.sampled_from(FLAG_POOL) | st.text(max_size=20), max_size=12))
    review = admission_review(apiserver_pod(*flags), operation=draw(st.sampled_from(["CREATE", "UPDATE"])))
    target = draw(st.sampled_from(["top", "request", "container", "shell", "none"]))
    if target == "top":
        review[draw(st.sampled_from(TOP))] = draw(json_values)
    elif target == "request":
        review["request"][draw(st.sampled_from(REQUEST))] = draw(json_values)
    elif target == "container":
        container = review["request"]["object"]["spec"]["containers"][0]
        container[draw(st.sampled_from(CONTAINER))] = draw(json_values)
    elif target == "shell":
        container = review["request"]["object"]["spec"]["containers"][0]
        container["command"] = ["/bin/sh", "-c", draw(st.text(max_size=200)) + " kube-apiserver " + " ".join(flags)]
    return review


def _deep(depth: int) -> bytes:
    return (
        b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":' + b"[" * depth + b"]" * depth + b"}"
    )


def _huge(size: int) -> bytes:
    return json.dumps(admission_review(apiserver_pod(*COMPLIANT, "--x=" + "é" * size))).encode()


cheap = st.one_of(
    mutated_reviews().map(lambda v: json.dumps(v).encode()),
    mutated_reviews().map(lambda v: json.dumps(v).encode()[: len(json.dumps(v)) // 2]),  # cut short
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
)
# Large bodies cost real time to send; they are one draw in ten, sized up to the 7 MiB limit.
expensive = st.one_of(
    st.sampled_from([10, 1_000, 50_000, 200_000]).map(_deep),
    st.sampled_from([1_000, 100_000, 1_200_000, 1_300_000]).map(_huge),  # 6 bytes a char in JSON: ~7.2, ~7.8 MB
)
bodies = st.one_of(*([cheap] * 9), expensive)


def test_no_body_gets_a_5xx_and_the_fuzzed_server_still_answers(enforce_server: RunningServer) -> None:
    """Every generated body gets 200, 400 or 413, never a 5xx; then the same server process (not another
    worker's: with -n 2 each worker has its own) still answers a real review."""
    client = enforce_server.client()

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(body=bodies)
    def one(body: bytes) -> None:
        result = client.post("/validate?timeout=10s", body)
        STATUSES[result.status] += 1
        assert result.status in (200, 400, 413), result.body[:300]
        answer = result.json()
        if result.status == 200:
            sent = json.loads(body)
            assert answer["response"]["uid"] == sent["request"]["uid"]
            assert answer["apiVersion"] == sent["apiVersion"]
            assert isinstance(answer["response"]["allowed"], bool)
        else:
            assert answer["error"]

    one()
    client.close()
    assert sum(STATUSES.values()) >= EXAMPLES // 2, STATUSES  # the bodies were really sent
    after = enforce_server.client()
    assert after.get("/healthz").status == 200
    assert after.review(admission_review(apiserver_pod(*COMPLIANT)))["allowed"] is True
    after.close()
    assert enforce_server.process.poll() is None
    print(
        f"\nfuzz: {sum(STATUSES.values())} bodies, statuses {dict(sorted(STATUSES.items()))}, 5xx: "
        f"{sum(n for st, n in STATUSES.items() if st >= 500)}"
    )
