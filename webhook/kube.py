"""The Kubernetes API client the commands share: a kubeconfig when one is given or found, else the pod's account.

Every client retries what kube-apiserver asks to be retried, as client-go does: 429 Too Many Requests (API
Priority and Fairness rejecting a request it has no seat for) and 5xx, after the server's `Retry-After` (client-go
`rest/request.go`, checkWait / retryAfterSeconds) or else an exponential backoff. Only methods whose retry cannot
do something twice are retried (GET, PUT with its resourceVersion, DELETE; never POST), and a `Retry-After`
longer than MAX_RETRY_AFTER is cut short: a caller with its own deadline (a sync, an audit) must not sleep an
hour on one header.
"""

from __future__ import annotations

import os

from kubernetes import client, config
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

RETRY_STATUSES = (429, 500, 502, 503, 504)
MAX_RETRY_AFTER = 10.0  # seconds


class KubeConfigError(Exception):
    """No usable cluster configuration."""


class ApiRetry(Retry):
    """urllib3's Retry with the server's Retry-After capped at MAX_RETRY_AFTER."""

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        after = super().get_retry_after(response)
        return None if after is None else min(after, MAX_RETRY_AFTER)


def retries() -> Retry:
    """4 retries of 429/5xx, honouring Retry-After (429 and 503), else 0.5 s, 1 s, 2 s, 4 s; the last answer is
    returned as it came (raise_on_status=False), so the caller sees the real status in its ApiException."""
    return ApiRetry(
        total=4,
        connect=2,
        read=2,
        status=4,
        backoff_factor=0.5,
        backoff_max=8,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=Retry.DEFAULT_ALLOWED_METHODS,  # no POST: a create is not retried blind
        respect_retry_after_header=True,
        raise_on_status=False,
    )


def api_client(kubeconfig: str | None, context: str | None) -> client.ApiClient:
    """kubeconfig when given (or found), else the in-cluster service account; with `retries()`."""
    configuration = client.Configuration()
    try:
        if kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ and not os.environ.get("KUBECONFIG"):
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
    except (config.ConfigException, OSError, TypeError, ValueError) as err:
        raise KubeConfigError(f"no usable cluster configuration: {err}") from None
    configuration.retries = retries()
    return client.ApiClient(configuration)
