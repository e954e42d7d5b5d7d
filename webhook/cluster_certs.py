"""Certificates in the cluster: a Secret holds the CA and serving certificate; every replica keeps them current.

Each replica, at start and then every minute:
1. reads the Secret (404: there is none yet) and works out what must change (`plan`, a pure function of what the
   Secret holds and the time);
2. writes the change with the resourceVersion it read — when two replicas race, the API answers one of them 409
   Conflict (or AlreadyExists), and that one reads again and adopts what the other wrote;
3. publishes the Secret's CA bundle as the caBundle of every webhook in its ValidatingWebhookConfiguration;
4. writes tls.crt / tls.key / ca.crt to its certs directory, where the reloader (webhook/reload.py) picks them up
   without a restart.

Rotation. The serving certificate is re-issued 30 days before it expires. The CA (10 years) is rotated a year
before it expires, in three steps, each at least `overlap` after the previous one, so that kube-apiserver trusts
the new chain before any replica serves it and keeps trusting the old one until every replica has moved:
introduce (bundle = old + new CA, still serving from the old), promote (serve from the new CA, bundle unchanged),
retire (bundle = new CA only). `overlap` (15 minutes) is far longer than a replica needs to see a change
(sync every 60 s, reload within 5 s).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from webhook import logs
from webhook.certs import CA, CertFiles, LeafCert, service_identities, write_file

log = logging.getLogger("apiserver_tls_guard")
PHASE_ANNOTATION = "apiserver-tls-guard.io/phase-since"


@dataclass(frozen=True)
class LifecycleNames:
    namespace: str
    secret: str
    webhook_config: str
    service: str


@dataclass(frozen=True)
class Timing:
    serving_days: int = 365
    serving_renew_before: dt.timedelta = dt.timedelta(days=30)
    ca_days: int = 3650
    ca_renew_before: dt.timedelta = dt.timedelta(days=365)
    overlap: dt.timedelta = dt.timedelta(minutes=15)
    sync_seconds: float = 60.0


@dataclass(frozen=True)
class CertState:
    """What the Secret holds."""

    ca: CA | None = None
    serving: LeafCert | None = None
    bundle: tuple[x509.Certificate, ...] = ()
    next_ca: CA | None = None
    since: dt.datetime | None = None  # when the current rotation phase began

    @property
    def bundle_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.bundle)


def _b64(data: bytes) -> str:
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


def read_state(secret: Mapping[str, Any] | None) -> CertState:
    if not secret:
        return CertState()
    data = secret.get("data") or {}
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    bundle_pem = _unb64(data, "ca-bundle.crt") or b""
    try:
        bundle = tuple(x509.load_pem_x509_certificates(bundle_pem)) if bundle_pem else ()
    except ValueError:
        bundle = ()
    since_text = annotations.get(PHASE_ANNOTATION)
    try:
        since = dt.datetime.fromisoformat(since_text) if since_text else None
    except ValueError:
        since = None
    return CertState(
        ca=_load_ca(_unb64(data, "ca.crt"), _unb64(data, "ca.key")),
        serving=_load_leaf(_unb64(data, "tls.crt"), _unb64(data, "tls.key")),
        bundle=bundle,
        next_ca=_load_ca(_unb64(data, "next-ca.crt"), _unb64(data, "next-ca.key")),
        since=since,
    )


def secret_body(names: LifecycleNames, state: CertState, resource_version: str | None) -> dict[str, Any]:
    assert state.ca is not None and state.serving is not None
    data = {
        "ca.crt": _b64(state.ca.cert_pem),
        "ca.key": _b64(state.ca.key_pem),
        "tls.crt": _b64(state.serving.cert_pem),
        "tls.key": _b64(state.serving.key_pem),
        "ca-bundle.crt": _b64(state.bundle_pem),
    }
    if state.next_ca is not None:
        data["next-ca.crt"] = _b64(state.next_ca.cert_pem)
        data["next-ca.key"] = _b64(state.next_ca.key_pem)
    metadata: dict[str, Any] = {
        "name": names.secret,
        "namespace": names.namespace,
        "labels": {"app.kubernetes.io/name": "apiserver-tls-guard"},
        "annotations": {PHASE_ANNOTATION: (state.since or dt.datetime.now(dt.UTC)).isoformat()},
    }
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": metadata, "data": data}


def _serving_ok(state: CertState, identities: list[str], now: dt.datetime, timing: Timing) -> bool:
    serving, ca = state.serving, state.ca
    if serving is None or ca is None:
        return False
    try:
        serving.cert.verify_directly_issued_by(ca.cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    if serving.cert.not_valid_after_utc - now <= timing.serving_renew_before:
        return False
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if serving.cert.public_key().public_bytes(*spki) != serving.key.public_key().public_bytes(*spki):
        return False
    sans = serving.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    present = {str(v) for v in sans.get_values_for_type(x509.DNSName)}
    present |= {str(v) for v in sans.get_values_for_type(x509.IPAddress)}
    return set(identities) <= present


def plan(state: CertState, now: dt.datetime, identities: list[str], timing: Timing) -> tuple[CertState, list[str]]:
    """The state the Secret should hold now, and what changed (empty: nothing to write)."""
    actions: list[str] = []
    ca = state.ca
    if ca is None or ca.cert.not_valid_after_utc <= now:
        ca = CA.create(days=timing.ca_days, now=now)
        state = CertState(ca=ca, bundle=(ca.cert,), since=now)
        actions.append("created CA")
    elif (
        state.next_ca is None and ca.cert.not_valid_after_utc - now < timing.ca_renew_before and len(state.bundle) == 1
    ):
        next_ca = CA.create(days=timing.ca_days, now=now)
        state = replace(state, next_ca=next_ca, bundle=(ca.cert, next_ca.cert), since=now)
        actions.append("introduced the next CA into the caBundle")
    elif state.next_ca is not None and state.since is not None and now - state.since >= timing.overlap:
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
    if not _serving_ok(state, identities, now, timing):
        issuer = state.ca
        assert issuer is not None
        state = replace(state, serving=issuer.issue_cert(*identities, days=timing.serving_days, now=now))
        actions.append("issued a serving certificate")
    return state, actions


class Conflict(Exception):
    """Another replica wrote first; read again."""


@dataclass
class ClusterCertificates:
    api: client.ApiClient
    names: LifecycleNames
    files: CertFiles
    timing: Timing = field(default_factory=Timing)
    published: str = ""  # the caBundle last seen in the webhook configuration
    errors: deque[str] = field(default_factory=lambda: deque(maxlen=20))  # the latest, for tests and debugging

    @property
    def identities(self) -> list[str]:
        return service_identities(self.names.service, self.names.namespace)

    # --- API calls (raw JSON both ways: the API's own field names, whatever the client's model version) ----
    # The client's type hints describe model objects; with _preload_content=False it hands back the raw
    # response instead, so these handles are typed Any on purpose.

    def _core(self) -> Any:
        return client.CoreV1Api(self.api)

    def _read_secret(self) -> dict[str, Any] | None:
        try:
            response = self._core().read_namespaced_secret(
                self.names.secret, self.names.namespace, _preload_content=False, _request_timeout=10
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        secret: dict[str, Any] = json.loads(response.data)
        return secret

    def _write_secret(self, body: dict[str, Any], create: bool) -> None:
        core = self._core()
        try:
            if create:
                core.create_namespaced_secret(self.names.namespace, body, _preload_content=False, _request_timeout=10)
            else:
                core.replace_namespaced_secret(
                    self.names.secret, self.names.namespace, body, _preload_content=False, _request_timeout=10
                )
        except ApiException as err:
            if err.status == 409:
                raise Conflict from None
            raise

    def publish(self, bundle_pem: bytes) -> bool:
        """Put the bundle into every webhook's caBundle; True when the configuration now carries it."""
        wanted = _b64(bundle_pem)
        registration: Any = client.AdmissionregistrationV1Api(self.api)
        try:
            response = registration.read_validating_webhook_configuration(
                self.names.webhook_config, _preload_content=False, _request_timeout=10
            )
            config: dict[str, Any] = json.loads(response.data)
            webhooks = config.get("webhooks") or []
            if all((w.get("clientConfig") or {}).get("caBundle") == wanted for w in webhooks):
                self.published = wanted
                return True
            for webhook in webhooks:
                webhook.setdefault("clientConfig", {})["caBundle"] = wanted
            registration.replace_validating_webhook_configuration(
                self.names.webhook_config, config, _preload_content=False, _request_timeout=10
            )
        except ApiException as err:
            reason = {404: "not installed yet", 409: "changed meanwhile; next sync", 403: "forbidden by RBAC"}
            message = f"caBundle not published to {self.names.webhook_config}: HTTP {err.status} " + reason.get(
                err.status or 0, str(err.reason)
            )
            self.errors.append(message)
            log.warning(message)
            return False
        self.published = wanted
        log.info("caBundle published", extra=logs.fields(webhookConfiguration=self.names.webhook_config))
        return True

    # --- one round ------------------------------------------------------------------------------------------

    def sync_once(self, now: dt.datetime | None = None) -> list[str]:
        """Bring Secret, caBundle and local files up to date; returns what changed. Raises ApiException."""
        for _ in range(5):
            secret = self._read_secret()
            state = read_state(secret)
            moment = now or dt.datetime.now(dt.UTC)
            target, actions = plan(state, moment, self.identities, self.timing)
            if actions:
                version = (secret or {}).get("metadata", {}).get("resourceVersion")
                try:
                    self._write_secret(secret_body(self.names, target, version), create=secret is None)
                except Conflict:
                    log.info("another replica updated the certificates first; reading them again")
                    continue
                log.info("certificates updated", extra=logs.fields(actions=actions, secret=self.names.secret))
            self.publish(target.bundle_pem)
            self._write_files(target)
            return actions
        raise RuntimeError("gave up after 5 conflicting writes")

    def _write_files(self, state: CertState) -> None:
        assert state.serving is not None
        wanted = {
            self.files.key: (state.serving.key_pem, True),
            self.files.cert: (state.serving.cert_pem, False),
            self.files.ca_cert: (state.bundle_pem, False),
        }
        for path, (data, private) in wanted.items():  # key first: the reloader swaps only a matching pair
            try:
                if path.read_bytes() == data:
                    continue
            except OSError:
                pass
            write_file(path, data, private=private)

    # --- running --------------------------------------------------------------------------------------------

    def run_forever(self) -> None:
        while True:
            time.sleep(self.timing.sync_seconds)
            try:
                self.sync_once()
            except Exception as err:  # keep serving with the certificates we have; try again next round
                log.error("certificate sync failed", extra=logs.fields(error=type(err).__name__))

    @classmethod
    def start(
        cls, names: LifecycleNames, certs_dir: str, kubeconfig: str | None, timing: Timing | None = None
    ) -> ClusterCertificates:
        """Sync until the certificates are in place (the pod is not ready before), then keep them current."""
        from webhook.scan import api_client

        lifecycle = cls(api_client(kubeconfig, None), names, CertFiles(Path(certs_dir)), timing or Timing())
        delay = 1.0
        while True:
            try:
                lifecycle.sync_once()
                break
            except Exception as err:
                log.error("certificates not ready", extra=logs.fields(error=type(err).__name__, retryIn=delay))
                time.sleep(delay)
                delay = min(delay * 2, 30)
        threading.Thread(target=lifecycle.run_forever, name="cluster-certs", daemon=True).start()
        return lifecycle
