"""Run the app under uvicorn: our TLS context (TLS 1.2+, AEAD only, HTTP/1.1), workers, graceful shutdown."""

from __future__ import annotations

import functools
import json
import logging
import os
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from webhook.pki.authority import CertFiles
from webhook.runtime import logs, reload, signals
from webhook.runtime.tls import server_context

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("apiserver_tls_guard")
SETTINGS_ENV = "APISERVER_TLS_GUARD_SERVE"


@dataclass(frozen=True)
class ServeSettings:
    """What `serve` runs with; handed to each worker through the environment. Defaults: 127.0.0.1:8443, one worker,
    keep-alive 120 s, 25 s to drain.
    """

    certs_dir: str
    host: str = ""  # every address family (dual stack): a webhook must be reachable from kube-apiserver
    port: int = 8443
    config: str | None = None
    mode: str | None = None
    cis_version: str | None = None
    workers: int = 1
    # Longer than kube-apiserver's idle-connection reuse (Go's IdleConnTimeout, 90 s): a server that closes first
    # races with a request sent on the connection it is closing.
    keep_alive: int = 120
    shutdown_timeout: int = 25
    drain_idle: float = 2.0  # seconds an idle connection stays open after SIGTERM (runtime/http_limits.py)
    log_level: str = "info"
    log_format: str = "json"
    http: str = "httptools"
    reload_interval: float = 5.0  # seconds between looks at the certificate files
    audit_interval: float = 0.0  # seconds between continuous audits of the cluster; 0: no audit
    report_api: str | None = None  # write Policy Reports in this API (wgpolicyk8s.io/v1alpha2, openreports.io/...)
    kubeconfig: str | None = None  # for the audit outside a cluster (default: in-cluster, or $KUBECONFIG)
    probe_interval: float = 0.0  # seconds between continuous probes of the API server endpoints; 0: none
    openapi: bool = False  # serve the OpenAPI document at /openapi.json
    # The ASGI app factory; benchmarks swap in a bare app to measure the same server and TLS stack.
    app_factory: str = "webhook.runtime.serving:build_app"


@dataclass(frozen=True)
class TlsContextFactory:
    """Picklable, so worker processes build the same context from the same files."""

    cert: str
    key: str

    def __call__(self, _: uvicorn.Config, __: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return reload.register(server_context(self.cert, self.key))


def build_app() -> FastAPI:
    """uvicorn's app factory, run in every worker: settings come from the environment the CLI set."""
    from webhook.admission.api import create_app
    from webhook.core.policy import load_in_force
    from webhook.runtime import metrics
    from webhook.runtime.policy_reload import PolicyReloader

    settings = ServeSettings(**json.loads(os.environ[SETTINGS_ENV]))
    logs.configure(settings.log_level, settings.log_format)
    overrides = {"mode": settings.mode, "cisVersion": settings.cis_version}
    in_force = load_in_force(settings.config, overrides)
    metrics.record_policy(in_force.digest)
    log.info("policy in force", extra=logs.fields(policyHash=in_force.digest, file=settings.config))
    files = CertFiles(Path(settings.certs_dir))
    metrics.record_certificates(files.cert, files.ca_cert)
    reloader = reload.CertReloader(files.cert, files.key, files.ca_cert, settings.reload_interval)
    background = [reloader.run]
    if settings.config:
        background.append(PolicyReloader(settings.config, overrides, in_force, settings.reload_interval).run)
    if settings.audit_interval > 0:
        from webhook.kube import api_client
        from webhook.runtime.audit import ClusterAuditor

        def connect() -> Any:
            return api_client(settings.kubeconfig, None)

        auditor = ClusterAuditor(in_force, settings.audit_interval, settings.report_api, connect)
        background.append(auditor.run)
    if settings.probe_interval > 0:
        from webhook.probe import continuous

        background.append(
            continuous.background(in_force, settings.probe_interval, settings.kubeconfig, settings.report_api)
        )
    return create_app(in_force, background=background, openapi=settings.openapi)


def _url_host(host: str) -> str:
    """The host as a URL writes it: `*` for every address, IPv6 literals in brackets (RFC 3986)."""
    if not host:
        return "*"
    return f"[{host}]" if ":" in host else host


def serve(settings: ServeSettings) -> int:
    """Run uvicorn with our TLS context, HTTP bounds and app until a signal; returns 0."""
    signals.install()  # again when called on its own (benchmarks/e2e.py): the clean exit below needs our handler
    files = CertFiles(Path(settings.certs_dir))
    os.environ[SETTINGS_ENV] = json.dumps(asdict(settings))
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker keeps its own counters; this folder lets /metrics add them up.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="apiserver-tls-guard-metrics-")
    from webhook.runtime.http_limits import MAX_HEAD_BYTES, BoundedHttpToolsProtocol, DrainingH11Protocol

    options: dict[str, Any] = {}
    # A partial, not a class made here: with --workers the config is pickled to each worker process.
    if settings.http == "h11":
        protocol = functools.partial(DrainingH11Protocol, drain_idle=settings.drain_idle)
        options.update(http=protocol, h11_max_incomplete_event_size=MAX_HEAD_BYTES)
    else:  # httptools (the default): with our bounds on head size, header count and read time
        options["http"] = functools.partial(BoundedHttpToolsProtocol, drain_idle=settings.drain_idle)
    config = uvicorn.Config(
        settings.app_factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        ssl_certfile=str(files.cert),
        ssl_keyfile=str(files.key),
        ssl_context_factory=TlsContextFactory(str(files.cert), str(files.key)),
        log_config=None,
        log_level=settings.log_level,
        access_log=False,  # the app logs one line per decision; bodies are never logged
        server_header=False,
        timeout_keep_alive=settings.keep_alive,
        timeout_graceful_shutdown=settings.shutdown_timeout,
        # With --workers, uvicorn kills a worker that has not answered its health check within this (default 5 s).
        # A worker answers only once its imports are done (FastAPI's among them: ~0.5 s of CPU); on a busy node or
        # under a CPU limit that takes longer, and the default kills every worker mid-start, forever.
        timeout_worker_healthcheck=30,
        **options,
    )
    log.info(
        "serving",
        extra=logs.fields(
            url=f"https://{_url_host(settings.host)}:{settings.port}",
            workers=settings.workers,
            mode=settings.mode or "(config)",
            certificate=str(files.cert),
        ),
    )
    if settings.workers > 1:
        sock = config.bind_socket()
        uvicorn.supervisors.Multiprocess(config, sockets=[sock]).run()  # its handlers replace ours for good
        return 0
    server = uvicorn.Server(config)
    try:
        server.run()
    except signals.Stopped:
        # uvicorn drains in-flight reviews on SIGTERM or SIGINT, then puts back the handler it found (ours,
        # runtime/signals.py) and raises the signal again to it (Server.capture_signals): the clean end, exit 0.
        # Before it started serving, the signal stopped the start-up instead.
        if not server.started:
            raise
    return 0
