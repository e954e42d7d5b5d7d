"""A small HTTPS server that answers the few Kubernetes API calls the project makes, with the real JSON shapes.

Most of the suite runs against the real kube-apiserver (tests/e2e); this stands in for it where the real one
cannot fail on cue: a 429 storm with Retry-After, a continue token expired (410 Gone) in the middle of a list,
409 Conflict on a write at one exact moment. For the official `kubernetes` client: list calls with
`limit`/`continue` paging (metadata.continue); get, create, replace and delete of single objects with
resourceVersion checks; `Status` bodies for errors (403 Forbidden, 404 NotFound, 409 Conflict and
AlreadyExists, and whatever `faults` injects); bearer-token authentication. Its certificate comes from our own CA
class.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from webhook.pki.authority import CA, ca_bundle

TOKEN = "test-token-for-fake-api"


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass
class Fault:
    """Answer `times` requests matching `METHOD PATH` (and, with `paging`, only pages after the first) with
    `status` and these headers (e.g. Retry-After) instead of serving them."""

    method: str
    path: str
    status: int
    times: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    paging: bool = False


REASONS = {409: "Conflict", 410: "Expired", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}


@dataclass
class FakeKubeApi:
    lists: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # path -> items
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)  # path of the object -> object
    forbidden: set[str] = field(default_factory=set)  # "PATH" or "METHOD PATH"
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # method, path+query, authorization
    hooks: dict[str, Callable[[], object]] = field(default_factory=dict)  # "METHOD PATH" -> run once, first
    faults: list[Fault] = field(default_factory=list)
    collections: set[str] = field(default_factory=set)  # cluster-wide list paths answered from `objects`
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    version: int = 100

    def respond(
        self, method: str, raw_path: str, auth: str, body: bytes = b""
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Status, body and extra headers for one request: a matching fault first, else `handle`."""
        url = urlsplit(raw_path)
        with self.lock:
            for fault in self.faults:
                paged = "continue=" in url.query
                if fault.times > 0 and (fault.method, fault.path) == (method, url.path) and (paged or not fault.paging):
                    fault.times -= 1
                    self.requests.append((method, raw_path, auth))
                    reason = REASONS.get(fault.status, "Failure")
                    return fault.status, status_body(fault.status, reason, f"injected {reason}"), fault.headers
        return (*self.handle(method, raw_path, auth, body), {})

    def handle(self, method: str, raw_path: str, auth: str, body: bytes = b"") -> tuple[int, dict[str, Any]]:
        self.requests.append((method, raw_path, auth))
        url = urlsplit(raw_path)
        hook = self.hooks.pop(f"{method} {url.path}", None)
        if hook is not None:
            hook()  # e.g. another replica's whole sync, served by other threads meanwhile
        if auth != f"Bearer {TOKEN}":
            return 401, status_body(401, "Unauthorized", "Unauthorized")
        if url.path in self.forbidden or f"{method} {url.path}" in self.forbidden:
            return 403, status_body(403, "Forbidden", f'{method.lower()} is forbidden at "{url.path}"')
        if method in ("POST", "PUT", "DELETE") or url.path in self.objects:
            with self.lock:
                return self._object(method, url.path, json.loads(body) if body else {})
        if method == "GET" and url.path in self.lists:
            query = parse_qs(url.query)
            limit = int(query.get("limit", ["500"])[0])
            start = int(query.get("continue", ["0"])[0] or 0)
            items = self.lists[url.path]
            page = items[start : start + limit]
            more = start + limit < len(items)
            kind = url.path.rsplit("/", 1)[-1]
            return 200, {
                "kind": f"{kind}List",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": "100", **({"continue": str(start + limit)} if more else {})},
                "items": page,
            }
        if method == "GET" and url.path in self.collections:
            prefix, plural = url.path.rsplit("/", 1)
            with self.lock:
                items = [
                    json.loads(json.dumps(o))
                    for path, o in sorted(self.objects.items())
                    if path.startswith(f"{prefix}/namespaces/") and path.split("/")[-2] == plural
                ]
            return 200, {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "100"}, "items": items}
        return 404, status_body(404, "NotFound", f"the server could not find the requested resource ({url.path})")

    def _object(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if method == "GET":
            if path not in self.objects:
                return 404, status_body(404, "NotFound", f'"{path.rsplit("/", 1)[-1]}" not found')
            return 200, json.loads(json.dumps(self.objects[path]))
        if method == "POST":
            path = f"{path}/{body['metadata']['name']}"
            if path in self.objects:
                return 409, status_body(409, "AlreadyExists", f'"{body["metadata"]["name"]}" already exists')
            return self._store(path, body, 201)
        if method == "PUT":
            if path not in self.objects:
                return 404, status_body(404, "NotFound", f'"{path.rsplit("/", 1)[-1]}" not found')
            sent = (body.get("metadata") or {}).get("resourceVersion")
            current = self.objects[path]["metadata"]["resourceVersion"]
            if sent != current:
                return 409, status_body(
                    409,
                    "Conflict",
                    "Operation cannot be fulfilled: the object has been modified; please apply "
                    "your changes to the latest version and try again",
                )
            return self._store(path, body, 200)
        if method == "DELETE":
            if self.objects.pop(path, None) is None:
                return 404, status_body(404, "NotFound", f'"{path.rsplit("/", 1)[-1]}" not found')
            return 200, status_body(200, "", "deleted") | {"status": "Success"}
        return 405, status_body(405, "MethodNotAllowed", method)

    def _store(self, path: str, body: dict[str, Any], code: int) -> tuple[int, dict[str, Any]]:
        self.version += 1
        body.setdefault("metadata", {})["resourceVersion"] = str(self.version)
        self.objects[path] = body
        return code, json.loads(json.dumps(body))


@contextmanager
def serve_fake_api(api: FakeKubeApi, tmp: Path) -> Iterator[Path]:
    """Serve `api` over HTTPS on loopback; yields a kubeconfig that points at it."""
    ca = CA.create()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    (tmp / "api.crt").write_bytes(leaf.cert_pem)
    (tmp / "api.key").write_bytes(leaf.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp / "api.crt", tmp / "api.key")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def do_PUT(self) -> None:
            self._answer("PUT")

        def do_DELETE(self) -> None:
            self._answer("DELETE")

        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            sent = self.rfile.read(length) if length else b""
            code, body, headers = api.respond(method, self.path, self.headers.get("Authorization", ""), sent)
            data = json.dumps(body).encode()
            self.send_response(code)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    api.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "fake",
                "clusters": [
                    {
                        "name": "fake",
                        "cluster": {
                            "server": f"https://127.0.0.1:{api.port}",
                            "certificate-authority-data": ca_bundle(ca.cert_pem),
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": TOKEN}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u"}}],
            }
        )
    )
    try:
        yield kubeconfig
    finally:
        server.shutdown()
        server.server_close()
