"""Requests without credentials: what the API server answers someone who presents nothing.

kube-apiserver authenticates before it authorizes (apiserver pkg/endpoints/filters/authentication.go
`WithAuthentication`): with anonymous authentication off every request without credentials gets 401, `/livez`
and `/version` included; with it on, `system:anonymous` reaches the authorizer, which under the default RBAC lets
it read only `system:public-info-viewer`'s paths (`/livez`, `/readyz`, `/healthz`, `/version`;
plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go).
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

# What the decision table of webhook/probe/judge.py reads: public paths, discovery, and one resource list.
PATHS = ("/version", "/livez", "/api", "/api/v1/namespaces")
_BODY_LIMIT = 4096
# A GET that got no HTTP answer at all (reset, closed before the status line, a broken TLS record) decided
# nothing, so it is asked again, at most this many times in all: a load balancer or an overloaded server drops a
# connection now and then, and the GETs are side-effect free (RFC 9110 9.2.2: safe, hence idempotent, and
# retried as urllib3's Retry retries idempotent methods). A timeout is not retried: the endpoint was slow, and
# waiting again would break the probe's time bound.
ATTEMPTS = 3
_PAUSE = 0.1


@dataclass(frozen=True)
class Answer:
    """One unauthenticated GET: the status (None when none came) and the Status message or the reason."""

    path: str
    status: int | None
    message: str
    attempts: int = 1


def _context() -> ssl.SSLContext:
    # Only the status codes matter here and no credentials are sent: the certificate is judged elsewhere.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _message(body: bytes) -> str:
    try:
        status = json.loads(body)
    except ValueError:
        return ""
    return str(status.get("message", "")) if isinstance(status, dict) else ""


def _once(host: str, port: int, server_name: str | None, path: str, timeout: float) -> Answer:
    """One GET on a fresh connection; OSError or HTTPException when no HTTP answer came."""
    connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=_context())
    try:
        headers = {"Accept": "application/json", "User-Agent": "apiserver-tls-guard-probe"}
        if server_name:
            headers["Host"] = server_name
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read(_BODY_LIMIT)
        return Answer(path, response.status, _message(body))
    finally:
        connection.close()


def get(host: str, port: int, server_name: str | None, path: str, timeout: float) -> Answer:
    """GET `path` with no credentials at all; asked again (ATTEMPTS in all) while no HTTP answer comes."""
    attempt = 0
    while True:
        attempt += 1
        try:
            answer = _once(host, port, server_name, path, timeout)
        except (OSError, http.client.HTTPException) as err:
            if attempt < ATTEMPTS and not isinstance(err, TimeoutError):
                time.sleep(_PAUSE * attempt)
                continue
            reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            return Answer(path, None, reason, attempt)
        return Answer(path, answer.status, answer.message, attempt)


def ask(host: str, port: int, server_name: str | None, timeout: float) -> dict[str, Answer]:
    """Every path of PATHS, in parallel."""
    with ThreadPoolExecutor(max_workers=len(PATHS), thread_name_prefix="probe-anonymous") as pool:
        answers = pool.map(lambda p: get(host, port, server_name, p, timeout), PATHS)
        return {a.path: a for a in answers}
