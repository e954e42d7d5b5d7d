"""The pure rotation plan: an operator's rotate request is honoured once, and never loops."""

from __future__ import annotations

import datetime as dt

from webhook.pki.authority import service_identities
from webhook.pki.rotation import CertState, Timing, plan
from webhook.pki.secret import LifecycleNames, read_state, secret_body

NOW = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)
IDS = service_identities()
NAMES = LifecycleNames("apiserver-tls-guard", "apiserver-tls-guard-certs", "apiserver-tls-guard", "svc")


def _settled() -> CertState:
    state, _ = plan(CertState(), NOW, IDS, Timing())
    assert plan(state, NOW, IDS, Timing())[1] == []  # a fresh state needs nothing
    return state


def _requested(state: CertState, what: str) -> CertState:
    body = secret_body(NAMES, state, None)
    body["metadata"]["annotations"]["apiserver-tls-guard.io/rotate"] = what
    return read_state(body)


def test_serving_rotation_request_issues_a_new_certificate_from_the_same_ca() -> None:
    state = _settled()
    after, actions = plan(_requested(state, "serving"), NOW, IDS, Timing())
    assert "serving certificate rotation requested" in actions
    assert after.serving is not None and state.serving is not None
    assert after.serving.cert.serial_number != state.serving.cert.serial_number
    assert after.ca is not None and state.ca is not None and after.ca.cert == state.ca.cert
    assert after.requested == ""
    assert "apiserver-tls-guard.io/rotate" not in secret_body(NAMES, after, None)["metadata"]["annotations"]
    assert plan(read_state(secret_body(NAMES, after, None)), NOW, IDS, Timing())[1] == []


def test_ca_rotation_request_introduces_the_next_ca_then_follows_the_overlap() -> None:
    state = _settled()
    introduced, actions = plan(_requested(state, "ca"), NOW, IDS, Timing())
    assert actions == ["introduced the next CA into the caBundle"]
    assert len(introduced.bundle) == 2 and introduced.next_ca is not None
    assert plan(introduced, NOW + dt.timedelta(minutes=1), IDS, Timing())[1] == []  # waits for the overlap
    # On time, but the webhook configuration is not seen trusting the next CA (publishing failed): it waits.
    assert plan(introduced, NOW + dt.timedelta(minutes=16), IDS, Timing(), published=state.bundle)[1] == []
    promoted, actions = plan(introduced, NOW + dt.timedelta(minutes=16), IDS, Timing(), published=introduced.bundle)
    assert actions[0].startswith("promoted the next CA")
    assert promoted.ca is not None and introduced.next_ca is not None
    assert promoted.ca.cert == introduced.next_ca.cert


def test_rotation_request_during_a_rotation_is_dropped_not_kept() -> None:
    state, _ = plan(_requested(_settled(), "ca"), NOW, IDS, Timing())
    again, actions = plan(_requested(state, "ca"), NOW, IDS, Timing())
    assert actions == ["ca rotation requested while one is under way: request dropped"]
    assert len(again.bundle) == 2 and again.requested == ""


def test_unknown_rotate_value_is_ignored() -> None:
    assert _requested(_settled(), "everything").requested == ""
