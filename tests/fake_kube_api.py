"""A small HTTPS server that answers the few Kubernetes API calls the project makes, with the real JSON shapes.

No kube-apiserver can run on these machines. This stands in for it for the official `kubernetes` client: list
calls with `limit`/`continue` paging (metadata.continue), `Status` bodies for errors (403 Forbidden, 404
NotFound, 409 Conflict), and bearer-token authentication. Its certificate comes from our own CA class.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from webhook.certs import CA, ca_bundle

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
class FakeKubeApi:
    lists: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # path -> items
    forbidden: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # method, path+query, authorization
    port: int = 0

    def handle(self, method: str, raw_path: str, auth: str) -> tuple[int, dict[str, Any]]:
        self.requests.append((method, raw_path, auth))
        url = urlsplit(raw_path)
        if auth != f"Bearer {TOKEN}":
            return 401, status_body(401, "Unauthorized", "Unauthorized")
        if url.path in self.forbidden:
            return 403, status_body(403, "Forbidden", f'cannot list resource at "{url.path}"')
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
        return 404, status_body(404, "NotFound", f"the server could not find the requested resource ({url.path})")


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
            code, body = api.handle("GET", self.path, self.headers.get("Authorization", ""))
            data = json.dumps(body).encode()
            self.send_response(code)
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
