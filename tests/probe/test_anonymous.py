"""Requests without credentials against local servers that drop some of them, as a front end under load does.

A GET that got no HTTP answer decided nothing: it is asked again (a bounded number of times), and what stays
unanswered is "could not observe", never a pass. The drops stand for what the e2e suite's TLS-terminating proxy
once did to one request in a few hundred (tests/e2e/test_probe_e2e.py terminating_proxy).
"""

from __future__ import annotations

import time

from tests.probe.conftest import Pki
from tests.probe.servers import ANONYMOUS_OFF, Config, serving, silent
from webhook.probe import anonymous, judge


def _config(pki: Pki, drops: dict[str, int]) -> Config:
    return Config(pki.rsa_cert, pki.rsa_key, statuses=ANONYMOUS_OFF, drops=drops)


def test_a_dropped_request_is_asked_again_and_its_answer_counts(pki: Pki) -> None:
    with serving(_config(pki, {"/version": 1, "/api": 2})) as port:
        answers = anonymous.ask("127.0.0.1", port, None, 2)
    assert {p: (a.status, a.attempts) for p, a in answers.items()} == {
        "/version": (401, 2),
        "/livez": (401, 1),
        "/api": (401, 3),
        "/api/v1/namespaces": (401, 1),
    }


def test_a_request_never_answered_is_could_not_observe_not_a_pass(pki: Pki) -> None:
    with serving(_config(pki, {"/livez": 99})) as port:
        answers = anonymous.ask("127.0.0.1", port, None, 2)
    livez = answers["/livez"]
    assert (livez.status, livez.attempts) == (None, anonymous.ATTEMPTS)
    # Which one the client sees first, the RST or the end of the TLS stream, is the kernel's timing.
    assert livez.message.startswith(("ConnectionResetError", "RemoteDisconnected")), livez.message

    class Seen:
        anonymous = answers

    outcome = judge.anonymous_auth(Seen, "1.5.1")  # type: ignore[arg-type]
    assert outcome.state == judge.FAIL
    assert outcome.detail.startswith("could not observe: ")
    assert f"/livez no answer after {anonymous.ATTEMPTS} attempts ({livez.message})" in outcome.detail
    assert "/version 401" in outcome.detail


def test_a_timeout_is_not_asked_again() -> None:
    # Waiting again would double the probe's time bound; the endpoint was slow, not dropped.
    start = time.monotonic()
    with silent() as port:
        answer = anonymous.get("127.0.0.1", port, None, "/version", 0.5)
    assert time.monotonic() - start < 1.0
    assert (answer.status, answer.attempts) == (None, 1)
    assert answer.message.startswith("TimeoutError")
