"""Property tests of the engine: flag order never changes a verdict. (Bodies: tests/test_fuzz.py.)"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.admission.test_http import apiserver_pod
from webhook.core.engine import evaluate, shorten
from webhook.core.policy import Mode, Policy

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


def _shorten_by_character(text: str, limit: int = 120) -> str:
    """The plain definition: every character that is not printable becomes a space, runs of whitespace one space."""
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


@given(st.text(max_size=300))
def test_shorten_fast_path_equals_the_plain_definition(text: str) -> None:
    assert shorten(text) == _shorten_by_character(text)
