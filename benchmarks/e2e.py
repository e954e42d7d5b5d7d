"""End to end: the webhook against a bare ASGI app on the same server and TLS settings, side by side.

Both run as `webhook.runtime.serving` processes (same uvicorn, parser, TLS 1.2+/AEAD context, keep-alive) with one
worker;
the load comes from benchmarks/loadgen.py in this process over keep-alive TLS connections, posting the same
kube-apiserver pod review. Printed: requests/s at full speed, p50/p99 at a fixed 200 requests/s, the ratios,
and each server's resident memory after the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.loadgen import Result, closed_loop, open_loop
from webhook.commands.review import review_for
from webhook.offline.documents import load_documents
from webhook.pki.authority import CertFiles, ensure_certs

ROOT = Path(__file__).resolve().parent.parent
NAME = "apiserver-tls-guard.apiserver-tls-guard.svc"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(certs: Path, app_factory: str, http: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    code = (
        "from webhook.runtime.serving import ServeSettings, serve; "
        f"serve(ServeSettings(certs_dir={str(certs)!r}, host='127.0.0.1', port={port}, mode='enforce', "
        f"app_factory={app_factory!r}, http={http!r}))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-c", code], stdout=sink, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, port
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(log.read_text())


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def prepare(prefix: str) -> tuple[Path, CertFiles, ssl.SSLContext, bytes]:
    """A work folder, certificates made by our own code, a client context trusting them, and the review to send."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    files = ensure_certs(work / "certs").files
    context = ssl.create_default_context(cafile=str(files.ca_cert))
    obj = load_documents((ROOT / "manifests/examples/kube-apiserver-self-signed.yaml").read_text())[0].obj
    return work, files, context, json.dumps(review_for(obj)).encode()


def never_seen(body: bytes, count: int = 20_000) -> list[bytes]:
    """`count` reviews of the pod as each control-plane node of a large fleet would send it: its own name and its
    own `--advertise-address`. More than the verdict cache holds, and no two command lines alike, so every one is
    judged afresh (a pod never seen before)."""
    review = json.loads(body)
    command = review["request"]["object"]["spec"]["containers"][0]["command"]
    at = next(i for i, item in enumerate(command) if item.startswith("--advertise-address="))
    out = []
    for i in range(count):
        review["request"]["name"] = review["request"]["object"]["metadata"]["name"] = f"kube-apiserver-cp-{i}"
        command[at] = f"--advertise-address=10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        out.append(json.dumps(review).encode())
    return out


def startup_ms(certs: Path, work: Path) -> float:
    """From starting `apiserver-tls-guard serve` to the first 200 from /readyz, with the package's bytecode
    compiled first, as the image's build stage does (this machine sets PYTHONDONTWRITEBYTECODE, so an editable
    install would otherwise compile every module of ours at every start)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "webhook")], check=True)
    port = _free_port()
    exe = Path(sys.executable).with_name("apiserver-tls-guard")
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    began = time.perf_counter()
    with (work / "startup.log").open("wb") as sink:
        process = subprocess.Popen(
            [str(exe), "serve", "--port", str(port), "--certs-dir", str(certs)], stdout=sink, stderr=sink
        )
    try:
        while time.perf_counter() - began < 20:
            try:
                conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=1)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    return (time.perf_counter() - began) * 1000
            except OSError:
                time.sleep(0.005)
        raise RuntimeError("never ready")
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="full-speed runs of every server, interleaved; ratios are per round and their median is reported "
        "(the 2-core machine drifts between runs, and the load generator shares it)",
    )
    parser.add_argument("--compare-parsers", action="store_true", help="also run the webhook with h11")
    args = parser.parse_args()

    work, files, context, body = prepare("bench-e2e-")
    print(f"review body: {len(body)} bytes (a kube-apiserver static pod with 14 flags; enforce mode: denied)")

    fresh = never_seen(body)
    runs: list[tuple[str, str, str, bytes | list[bytes]]] = [
        ("bare ASGI app (baseline)", "benchmarks.bare_app:build", "httptools", body),
        ("apiserver-tls-guard", "webhook.runtime.serving:build_app", "httptools", body),
        ("apiserver-tls-guard, pods never seen", "webhook.runtime.serving:build_app", "httptools", fresh),
    ]
    if args.compare_parsers:
        runs.append(("apiserver-tls-guard, h11 parser", "webhook.runtime.serving:build_app", "h11", body))
    servers = {}
    try:
        for label, factory, parser_name, _ in runs:
            servers[label] = start(
                files.directory, factory, parser_name, work / f"{label.split()[0]}-{parser_name}.log"
            )
        full: dict[str, list[Result]] = {label: [] for label, *_ in runs}
        for _ in range(args.rounds):
            for label, _, _, bodies in runs:
                port = servers[label][1]
                asyncio.run(closed_loop(port, context, NAME, bodies, args.connections, 1.0))  # warm-up
                full[label].append(
                    asyncio.run(closed_loop(port, context, NAME, bodies, args.connections, args.seconds))
                )
        paced = {
            label: asyncio.run(open_loop(servers[label][1], context, NAME, bodies, 200, args.seconds))
            for label, _, _, bodies in runs
        }
        rss = {label: rss_mb(process.pid) for label, (process, _) in servers.items()}
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=30)
    for label, *_ in runs:
        best = max(full[label], key=lambda r: r.rate)
        rates = ", ".join(f"{r.rate:,.0f}" for r in full[label])
        print(
            f"{label}:\n  full speed, {args.connections} connections, {args.rounds} rounds: {rates} req/s "
            f"(best: {best.summary()})\n  paced 200 req/s: {paced[label].summary()}\n"
            f"  RSS after the runs: {rss[label]:.1f} MB"
        )

    def ratios(label: str) -> str:
        values = sorted(ours.rate / bare.rate for ours, bare in zip(full[label], full[runs[0][0]], strict=True))
        return f"{statistics.median(values):.2f}x (rounds: {', '.join(f'{v:.2f}' for v in values)})"

    fresh_paced = paced["apiserver-tls-guard, pods never seen"]
    print("\nratio apiserver-tls-guard / bare app (same run, same machine, decision log and metrics on):")
    print(f"  throughput, a pod seen before (verdict cache): {ratios('apiserver-tls-guard')}  (target >= 0.60x)")
    print(f"  throughput, pods never seen: {ratios('apiserver-tls-guard, pods never seen')}  (target >= 0.33x)")
    print(f"  p99 at 200 req/s, never seen: {fresh_paced.percentile(99) * 1000:.2f} ms  (target <= 5 ms)")
    startups = sorted(startup_ms(files.directory, work) for _ in range(5))
    print(
        f"  start-up to the first /readyz 200: median {statistics.median(startups):.0f} ms of 5 "
        f"({', '.join(f'{v:.0f}' for v in startups)})  (target < 300 ms)"
    )
    print(
        f"  p99 at 200 req/s: {paced['apiserver-tls-guard'].percentile(99) * 1000:.2f} ms vs "
        f"{paced[runs[0][0]].percentile(99) * 1000:.2f} ms  (target <= 5 ms)"
    )
    print(f"  RSS per worker: {rss['apiserver-tls-guard']:.1f} MB  (target <= 80 MB)")
    errors = sum(r.errors for results in full.values() for r in results) + sum(p.errors for p in paced.values())
    print(f"  errors: {errors}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
