"""The rotation plan: a pure function from what the Secret holds and the time to what it should hold.

Rotation. The serving certificate is re-issued 30 days before it expires. The CA (10 years) is rotated a year
before it expires, in three steps, each at least `overlap` after the previous one, so that kube-apiserver trusts
the new chain before any replica serves it and keeps trusting the old one until every replica has moved:
introduce (bundle = old + new CA, still serving from the old), promote (serve from the new CA, bundle unchanged),
retire (bundle = new CA only). `overlap` (15 minutes) is far longer than a replica needs to see a change
(sync every 60 s, reload within 5 s). Promotion also waits until the webhook configuration is seen trusting the
next CA (`published`): on time is not enough when publishing the bundle failed.

A lost Secret (deleted, or its CA unreadable) means a new CA, while the other replicas still serve from the old
one until their next sync: the new bundle keeps every still-valid CA the webhook configuration trusted (and the
Secret's old bundle held), and they leave it one `overlap` later, as in a rotation.

An operator can ask for a rotation now by annotating the Secret `apiserver-tls-guard.io/rotate=serving` (a new
serving certificate from the same CA) or `=ca` (the three CA steps above, starting now).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from webhook.pki.authority import CA, CA_DAYS, CA_RENEW_BEFORE, RENEW_BEFORE, SERVING_DAYS, LeafCert, serving_ok


@dataclass(frozen=True)
class Timing:
    """The lifecycle's timings; defaults are the product's (serving 365 days, renewed 30 days before; CA 10 years,
    rotated a year before; 15 minutes between CA steps; a sync a minute, a look at the caBundle every 2 s).
    """

    serving_days: int = SERVING_DAYS
    serving_renew_before: dt.timedelta = RENEW_BEFORE
    ca_days: int = CA_DAYS
    ca_renew_before: dt.timedelta = CA_RENEW_BEFORE
    overlap: dt.timedelta = dt.timedelta(minutes=15)
    sync_seconds: float = 60.0
    watch_seconds: float = 2.0  # between looks at the webhook configuration's caBundle (repaired when changed)


@dataclass(frozen=True)
class CertState:
    """What the Secret holds."""

    ca: CA | None = None
    serving: LeafCert | None = None
    bundle: tuple[x509.Certificate, ...] = ()
    next_ca: CA | None = None
    since: dt.datetime | None = None  # when the current rotation phase began
    requested: str = ""  # "serving" or "ca": an operator asked for a rotation now (ROTATE_ANNOTATION)

    @property
    def bundle_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.bundle)


def _serving_ok(state: CertState, identities: list[str], now: dt.datetime, timing: Timing) -> bool:
    if state.serving is None or state.ca is None:
        return False
    return serving_ok(state.serving.cert, state.serving.key, state.ca, identities, now, timing.serving_renew_before)


def plan(
    state: CertState,
    now: dt.datetime,
    identities: list[str],
    timing: Timing,
    published: Sequence[x509.Certificate] = (),
) -> tuple[CertState, list[str]]:
    """The state the Secret should hold now, and what changed (empty: nothing to write). `published`: the CAs
    every webhook of the configuration trusts now (its caBundle, as read)."""
    actions: list[str] = []
    ca = state.ca
    if ca is None or ca.cert.not_valid_after_utc <= now:
        ca = CA.create(days=timing.ca_days, now=now)
        kept = tuple(c for c in dict.fromkeys((*published, *state.bundle)) if c.not_valid_after_utc > now)
        state = CertState(ca=ca, bundle=(*kept, ca.cert), since=now)
        actions.append("created CA")
        if kept:
            actions.append(f"kept {len(kept)} CA(s) still trusted in the caBundle for the overlap")
    elif state.since is None:
        # The phase's start is missing or unreadable (a hand-edited annotation): now, written back once, so the
        # warning is not repeated at every sync; an overlap under way starts again.
        state = replace(state, since=now)
        actions.append("rotation phase start unreadable: set to now")
    elif (
        state.next_ca is None
        and (ca.cert.not_valid_after_utc - now < timing.ca_renew_before or state.requested == "ca")
        and len(state.bundle) == 1
    ):
        next_ca = CA.create(days=timing.ca_days, now=now)
        state = replace(state, next_ca=next_ca, bundle=(ca.cert, next_ca.cert), since=now)
        actions.append("introduced the next CA into the caBundle")
    elif (
        state.next_ca is not None
        and state.since is not None
        and now - state.since >= timing.overlap
        and state.next_ca.cert in published
    ):
        promoted = state.next_ca
        state = replace(state, ca=promoted, next_ca=None, serving=None, since=now)
        actions.append("promoted the next CA: serving certificate now issued by it")
    elif (
        state.next_ca is None
        and len(state.bundle) > 1
        and state.since is not None
        and now - state.since >= timing.overlap
    ):
        state = replace(state, bundle=(ca.cert,), since=now)
        actions.append("retired the old CA from the caBundle")
    assert state.ca is not None
    if state.ca.cert not in state.bundle:
        state = replace(state, bundle=(*state.bundle, state.ca.cert))
        actions.append("added the CA to the caBundle")
    if state.requested == "serving":
        state = replace(state, serving=None)
        actions.append("serving certificate rotation requested")
    if state.requested:
        if not actions:
            actions.append(f"{state.requested} rotation requested while one is under way: request dropped")
        state = replace(state, requested="")  # the request is taken: the annotation is not written back
    if not _serving_ok(state, identities, now, timing):
        issuer = state.ca
        assert issuer is not None
        state = replace(state, serving=issuer.issue_cert(*identities, days=timing.serving_days, now=now))
        actions.append("issued a serving certificate")
    return state, actions
