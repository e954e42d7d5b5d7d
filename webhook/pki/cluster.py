"""Certificates in the cluster: a Secret holds the CA and serving certificate; every replica keeps them current.

Each replica, at start and then every minute:
1. reads which CAs the webhook configuration trusts now, and the Secret (404: there is none yet), and works out
   what must change (`plan`, a pure function of those and the time);
2. writes the change with the resourceVersion it read — when two replicas race, the API answers one of them 409
   Conflict (or AlreadyExists), and that one reads again and adopts what the other wrote;
3. publishes the Secret's CA bundle as the caBundle of every webhook in its ValidatingWebhookConfiguration;
4. writes tls.crt / tls.key / ca.crt to its certs directory, where the reloader (runtime/reload.py) picks them up
   without a restart — a certificate from a CA the configuration is not seen trusting is held back (the files
   keep serving the one kube-apiserver can verify), unless there is nothing to serve yet.

In between, every `timing.watch_seconds` (2), one GET of the webhook configuration: when its caBundle is not the
one last published (a `helm upgrade --force` or a GitOps revert put the manifest's empty one back), a sync runs at
once, so the repair takes seconds, not a minute. The replica is ready (runtime/readiness.py) once the caBundle is
confirmed.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from webhook.pki.authority import CertFiles, service_identities, write_file
from webhook.pki.rotation import CertState, Timing, plan
from webhook.pki.secret import LifecycleNames, b64, read_state, secret_body
from webhook.runtime import logs, readiness

log = logging.getLogger("apiserver_tls_guard")


class Conflict(Exception):
    """Another replica wrote first; read again."""


@dataclass
class ClusterCertificates:
    """The in-cluster lifecycle of one replica: syncs the Secret, publishes the caBundle and writes the files every
    `timing.sync_seconds` (60 by default).
    """

    api: client.ApiClient
    names: LifecycleNames
    files: CertFiles
    timing: Timing = field(default_factory=Timing)
    published: str = ""  # the caBundle last seen in the webhook configuration
    errors: deque[str] = field(default_factory=lambda: deque(maxlen=20))  # the latest, for tests and debugging
    _last_warning: str = ""

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

    def _registration(self) -> Any:
        return client.AdmissionregistrationV1Api(self.api)

    def _read_config(self) -> dict[str, Any]:
        response = self._registration().read_validating_webhook_configuration(
            self.names.webhook_config, _preload_content=False, _request_timeout=10
        )
        config: dict[str, Any] = json.loads(response.data)
        return config

    def trusted(self) -> tuple[x509.Certificate, ...]:
        """The CAs every webhook of the configuration trusts now; none when it cannot be read."""
        try:
            return trusted_by_all(self._read_config())
        except (ApiException, HTTPError, OSError, ValueError):
            return ()

    def _warn(self, message: str) -> None:
        self.errors.append(message)
        if message != self._last_warning:  # the fast check runs every 2 s: say it once, not at every look
            log.warning(message)
        self._last_warning = message

    def publish(self, bundle_pem: bytes) -> bool:
        """Put the bundle into every webhook's caBundle; True when the configuration now carries it."""
        wanted = b64(bundle_pem)
        registration = self._registration()
        try:
            config = self._read_config()
            webhooks = config.get("webhooks") or []
            if all((w.get("clientConfig") or {}).get("caBundle") == wanted for w in webhooks):
                self.published = wanted
                self._last_warning = ""
                return True
            for webhook in webhooks:
                webhook.setdefault("clientConfig", {})["caBundle"] = wanted
            registration.replace_validating_webhook_configuration(
                self.names.webhook_config, config, _preload_content=False, _request_timeout=10
            )
        except ApiException as err:
            reason = {404: "not installed yet", 409: "changed meanwhile; next sync", 403: "forbidden by RBAC"}
            self._warn(
                f"caBundle not published to {self.names.webhook_config}: HTTP {err.status} "
                + reason.get(err.status or 0, str(err.reason))
            )
            return False
        self.published = wanted
        self._last_warning = ""
        log.info("caBundle published", extra=logs.fields(webhookConfiguration=self.names.webhook_config))
        return True

    def config_current(self) -> bool:
        """The cheap look between syncs: does the configuration still carry the caBundle last published?"""
        if not self.published:
            return False  # never confirmed yet: keep trying every few seconds, not every minute
        try:
            webhooks = self._read_config().get("webhooks") or []
        except ApiException as err:
            return bool(err.status != 404)  # deleted: publish again at once; any other error: the next sync says why
        except (HTTPError, OSError, ValueError):
            return True
        return all((w.get("clientConfig") or {}).get("caBundle") == self.published for w in webhooks)

    # --- one round ------------------------------------------------------------------------------------------

    def sync_once(self, now: dt.datetime | None = None) -> list[str]:
        """Bring Secret, caBundle and local files up to date; returns what changed. Raises ApiException."""
        for _ in range(5):
            published = self.trusted()
            secret = self._read_secret()
            state = read_state(secret)
            moment = now or dt.datetime.now(dt.UTC)
            target, actions = plan(state, moment, self.identities, self.timing, published)
            if actions:
                try:
                    self._write_secret(secret_body(self.names, target, secret), create=secret is None)
                except Conflict:
                    log.info("another replica updated the certificates first; reading them again")
                    continue
                log.info("certificates updated", extra=logs.fields(actions=actions, secret=self.names.secret))
            confirmed = self.publish(target.bundle_pem)
            trusted = set(published) | (set(target.bundle) if confirmed else set())
            self._write_files(target, trusted)
            if confirmed:
                readiness.confirm()
            return actions
        raise RuntimeError("gave up after 5 conflicting writes")

    def _write_files(self, state: CertState, trusted: set[x509.Certificate]) -> None:
        assert state.serving is not None and state.ca is not None
        if state.ca.cert not in trusted and self.files.cert.is_file() and self.files.key.is_file():
            if self.files.cert.read_bytes() != state.serving.cert_pem:
                self._warn("new serving certificate held back: its CA is not yet trusted by the caBundle")
            return
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
        next_sync = time.monotonic() + self.timing.sync_seconds
        while True:
            time.sleep(max(0.0, min(self.timing.watch_seconds, next_sync - time.monotonic())))
            try:
                if time.monotonic() >= next_sync:
                    next_sync = time.monotonic() + self.timing.sync_seconds
                    self.sync_once()
                elif not self.config_current():
                    log.warning(
                        "caBundle changed by someone else; publishing it again",
                        extra=logs.fields(webhookConfiguration=self.names.webhook_config),
                    )
                    self.sync_once()
            except Exception as err:  # keep serving with the certificates we have; try again next round
                log.error("certificate sync failed", extra=logs.fields(error=f"{type(err).__name__}: {err}"))

    @classmethod
    def start(
        cls, names: LifecycleNames, certs_dir: str, kubeconfig: str | None, timing: Timing | None = None
    ) -> ClusterCertificates:
        """Sync until the certificates are in place (the pod is not ready before), then keep them current."""
        from webhook.kube import api_client

        lifecycle = cls(api_client(kubeconfig, None), names, CertFiles(Path(certs_dir)), timing or Timing())
        readiness.gate(Path(certs_dir) / ".cabundle-published")
        delay = 1.0
        while True:
            try:
                lifecycle.sync_once()
                break
            except Exception as err:
                log.error(
                    "certificates not ready",
                    extra=logs.fields(error=f"{type(err).__name__}: {err}", retryIn=delay),
                )
                time.sleep(delay)
                delay = min(delay * 2, 30)
        threading.Thread(target=lifecycle.run_forever, name="cluster-certs", daemon=True).start()
        return lifecycle


def trusted_by_all(config: dict[str, Any]) -> tuple[x509.Certificate, ...]:
    """The CAs in the caBundle of every webhook of a ValidatingWebhookConfiguration (an unreadable one trusts none)."""
    per_webhook: list[list[x509.Certificate]] = []
    for webhook in config.get("webhooks") or []:
        text = (webhook.get("clientConfig") or {}).get("caBundle") or ""
        try:
            per_webhook.append(x509.load_pem_x509_certificates(base64.b64decode(text)) if text else [])
        except (ValueError, binascii.Error):
            per_webhook.append([])
    if not per_webhook:
        return ()
    return tuple(c for c in per_webhook[0] if all(c in others for others in per_webhook[1:]))
