"""The Secret that holds the CA, the serving certificate and the caBundle: encoding and decoding only.

The Secret is ours, but not only ours: a backup tool, Argo CD or Helm may add labels, annotations, owner
references, finalizers or data keys. A write replaces the whole object (PUT), so it starts from the Secret as read
and changes only our keys.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from webhook.pki.authority import CA, LeafCert
from webhook.pki.rotation import CertState

PHASE_ANNOTATION = "apiserver-tls-guard.io/phase-since"
# `kubectl annotate secret apiserver-tls-guard-certs apiserver-tls-guard.io/rotate=serving|ca`: rotate now.
ROTATE_ANNOTATION = "apiserver-tls-guard.io/rotate"
OUR_KEYS = ("ca.crt", "ca.key", "tls.crt", "tls.key", "ca-bundle.crt", "next-ca.crt", "next-ca.key")
log = logging.getLogger("apiserver_tls_guard")


@dataclass(frozen=True)
class LifecycleNames:
    """The objects the lifecycle works on: its namespace, Secret, ValidatingWebhookConfiguration and Service."""

    namespace: str
    secret: str
    webhook_config: str
    service: str


def b64(data: bytes) -> str:
    """Base64 text, as Secret data and caBundle hold it."""
    return base64.b64encode(data).decode("ascii")


def _unb64(data: Mapping[str, str], key: str) -> bytes | None:
    value = data.get(key)
    return base64.b64decode(value) if value else None


def _load_ca(cert: bytes | None, key: bytes | None) -> CA | None:
    if not cert or not key:
        return None
    try:
        return CA.load(cert, key)
    except ValueError:
        return None


def _load_leaf(cert: bytes | None, key: bytes | None) -> LeafCert | None:
    if not cert or not key:
        return None
    try:
        loaded = serialization.load_pem_private_key(key, password=None)
        from cryptography.hazmat.primitives.asymmetric import ec

        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            return None
        return LeafCert(x509.load_pem_x509_certificate(cert), loaded)
    except ValueError:
        return None


def _since(text: object) -> dt.datetime | None:
    """The phase's start; None (the plan restarts the overlap now) when absent, unreadable or without a UTC offset,
    which could not be compared with an aware time (the TypeError that kept a restarted pod from becoming ready)."""
    if not text:
        return None
    try:
        since = dt.datetime.fromisoformat(str(text))
    except ValueError:
        since = None
    if since is None or since.tzinfo is None or since.utcoffset() is None:
        log.warning(
            "unreadable rotation phase start; treated as now",
            extra={"fields": {"annotation": PHASE_ANNOTATION, "value": str(text)[:64]}},
        )
        return None
    return since


def read_state(secret: Mapping[str, Any] | None) -> CertState:
    """The certificates a Secret holds (CertState()); anything unreadable counts as missing, so the plan makes it
    again.
    """
    if not secret:
        return CertState()
    data = secret.get("data") or {}
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    bundle_pem = _unb64(data, "ca-bundle.crt") or b""
    try:
        bundle = tuple(x509.load_pem_x509_certificates(bundle_pem)) if bundle_pem else ()
    except ValueError:
        bundle = ()
    since = _since(annotations.get(PHASE_ANNOTATION))
    return CertState(
        ca=_load_ca(_unb64(data, "ca.crt"), _unb64(data, "ca.key")),
        serving=_load_leaf(_unb64(data, "tls.crt"), _unb64(data, "tls.key")),
        bundle=bundle,
        next_ca=_load_ca(_unb64(data, "next-ca.crt"), _unb64(data, "next-ca.key")),
        since=since,
        requested=str(annotations.get(ROTATE_ANNOTATION))
        if annotations.get(ROTATE_ANNOTATION) in ("serving", "ca")
        else "",
    )


def secret_body(names: LifecycleNames, state: CertState, current: Mapping[str, Any] | None) -> dict[str, Any]:
    """The Secret to write for `state`, from the Secret as read (`current`, None: there is none): its
    resourceVersion (optimistic concurrency: a race answers 409), and everything that is not ours kept."""
    assert state.ca is not None and state.serving is not None
    read = dict(current or {})
    read_meta: Mapping[str, Any] = read.get("metadata") or {}
    data = {k: v for k, v in (read.get("data") or {}).items() if k not in OUR_KEYS}
    data.update(
        {
            "ca.crt": b64(state.ca.cert_pem),
            "ca.key": b64(state.ca.key_pem),
            "tls.crt": b64(state.serving.cert_pem),
            "tls.key": b64(state.serving.key_pem),
            "ca-bundle.crt": b64(state.bundle_pem),
        }
    )
    if state.next_ca is not None:
        data["next-ca.crt"] = b64(state.next_ca.cert_pem)
        data["next-ca.key"] = b64(state.next_ca.key_pem)
    # The rotate request is taken by the plan: it is not written back.
    annotations = {k: v for k, v in (read_meta.get("annotations") or {}).items() if k != ROTATE_ANNOTATION}
    annotations[PHASE_ANNOTATION] = (state.since or dt.datetime.now(dt.UTC)).isoformat()
    metadata: dict[str, Any] = {
        **{k: v for k, v in read_meta.items() if k not in ("labels", "annotations", "managedFields")},
        "name": names.secret,
        "namespace": names.namespace,
        "labels": {**(read_meta.get("labels") or {}), "app.kubernetes.io/name": "apiserver-tls-guard"},
        "annotations": annotations,
    }
    # A Secret's type cannot change; one made as kubernetes.io/tls by hand stays so.
    kind = str(read.get("type") or "Opaque")
    return {"apiVersion": "v1", "kind": "Secret", "type": kind, "metadata": metadata, "data": data}
