"""The Kubernetes API client the commands share: a kubeconfig when one is given or found, else the pod's account."""

from __future__ import annotations

import os

from kubernetes import client, config


class KubeConfigError(Exception):
    """No usable cluster configuration."""


def api_client(kubeconfig: str | None, context: str | None) -> client.ApiClient:
    """kubeconfig when given (or found), else the in-cluster service account."""
    try:
        if kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ and not os.environ.get("KUBECONFIG"):
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return client.ApiClient(configuration)
        made: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context
        )
        return made
    except (config.ConfigException, OSError, TypeError, ValueError) as err:
        raise KubeConfigError(f"no usable cluster configuration: {err}") from None
