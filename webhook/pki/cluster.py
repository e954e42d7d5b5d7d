"""Certificates in the cluster: a Secret holds the CA and serving certificate; every replica keeps them current.

Each replica, at start and then every minute:
1. reads the Secret (404: there is none yet) and works out what must change (`plan`, a pure function of what the
   Secret holds and the time);
2. writes the change with the resourceVersion it read — when two replicas race, the API answers one of them 409
   Conflict (or AlreadyExists), and that one reads again and adopts what the other wrote;
3. publishes the Secret's CA bundle as the caBundle of every webhook in its ValidatingWebhookConfiguration;
4. writes tls.crt / tls.key / ca.crt to its certs directory, where the reloader (runtime/reload.py) picks them up
   without a restart.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from webhook.pki.authority import CertFiles, service_identities, write_file
from webhook.pki.rotation import CertState, Timing, plan
from webhook.pki.secret import LifecycleNames, b64, read_state, secret_body
from webhook.runtime import logs

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
        wanted = b64(bundle_pem)
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
        from webhook.kube import api_client

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
