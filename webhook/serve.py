"""Run the app under uvicorn with our own TLS context (TLS 1.2+, AEAD only, HTTP/1.1)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable

import uvicorn

from webhook.certs import CertFiles
from webhook.policy import Policy
from webhook.server import create_app
from webhook.tls import server_context

log = logging.getLogger("apiserver_tls_guard")


def serve(policy: Policy, files: CertFiles, host: str, port: int, log_level: str = "info", keep_alive: int = 75) -> int:
    def context(_: uvicorn.Config, __: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return server_context(files.cert, files.key)

    config = uvicorn.Config(
        create_app(policy),
        host=host,
        port=port,
        ssl_certfile=str(files.cert),
        ssl_keyfile=str(files.key),
        ssl_context_factory=context,
        log_config=None,
        log_level=log_level,
        access_log=False,  # one decision line per review is logged by the app; bodies never are
        server_header=False,
        timeout_keep_alive=keep_alive,
        timeout_graceful_shutdown=25,
    )
    log.info(
        "serving mode=%s cis=%s on https://%s:%d (certificate %s)",
        policy.mode.value,
        policy.cis_version or policy.catalog.default_benchmark,
        host,
        port,
        files.cert,
    )
    uvicorn.Server(config).run()
    return 0
