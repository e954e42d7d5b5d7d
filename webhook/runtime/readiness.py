"""Whether this replica may take reviews: what `/readyz` answers.

With `--cluster-certs` a replica is ready only once the webhook configuration is seen trusting the CA it serves
from: before that, kube-apiserver cannot verify it, and a Ready pod would let `helm install --wait` succeed with
an empty caBundle. The certificate lifecycle runs in the process that starts uvicorn, the answers come from its
worker processes, so the state travels as a file whose path is in the environment the workers inherit: it exists
once the caBundle was confirmed. Without the variable (local or external certificates) a replica is always ready.
Readiness is not taken back afterwards: a caBundle emptied later (a `helm upgrade --force`) is repaired within
seconds by the lifecycle, and pulling every replica out of the Service meanwhile would only add to the outage.
"""

from __future__ import annotations

import os
from pathlib import Path

from webhook.pki.authority import write_file

READY_FILE_ENV = "APISERVER_TLS_GUARD_READY_FILE"


def gate(path: Path) -> None:
    """Make this process and the workers it starts not ready until `confirm` is called."""
    path.unlink(missing_ok=True)
    os.environ[READY_FILE_ENV] = str(path)


def confirm() -> None:
    """The caBundle is published: ready from now on."""
    path = os.environ.get(READY_FILE_ENV)
    if path and not os.path.exists(path):
        write_file(Path(path), b"caBundle confirmed\n", private=False)


def ready() -> bool:
    """What /readyz answers: 200 when True, 503 when False."""
    path = os.environ.get(READY_FILE_ENV)
    return not path or os.path.exists(path)
