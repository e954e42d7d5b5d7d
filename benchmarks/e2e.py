"""End to end: the webhook against a bare FastAPI app (the floor) and a bare ASGI app (the history), side by side.

All run as `webhook.runtime.serving` processes (same uvicorn, parser, TLS 1.2+/AEAD context, keep-alive) with one
worker; the load comes from benchmarks/loadgen.py in this process over keep-alive TLS connections, posting the
same kube-apiserver pod review. The full-speed runs are interleaved, round by round, and each ratio is taken
within a round. Printed: requests/s at full speed, p50/p99 at a fixed 200 requests/s, the ratios, start-up to the
first /readyz 200 and each server's resident memory after the runs.
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
BARE_FASTAPI = "bare FastAPI app (the floor)"
BARE_ASGI = "bare ASGI app (history)"
WEBHOOK = "apiserver-tls-guard"
NEVER_SEEN = "apiserver-tls-guard, pods never seen"


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


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far (/proc/<pid>/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def review_body() -> bytes:
    """The review every benchmark sends: kube-apiserver's own static pod, as kube-apiserver would send it."""
    obj = load_documents((ROOT / "manifests/examples/kube-apiserver-self-signed.yaml").read_text())[0].obj
    return json.dumps(review_for(obj)).encode()


def prepare(prefix: str) -> tuple[Path, CertFiles, ssl.SSLContext, bytes]:
    """A work folder, certificates made by our own code, a client context trusting them, and the review to send."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    files = ensure_certs(work / "certs").files
    context = ssl.create_default_context(cafile=str(files.ca_cert))
    return work, files, context, review_body()


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


def startup_ms(certs: Path, work: Path) -> tuple[float, float]:
    """From starting `apiserver-tls-guard serve` to the first 200 from /readyz: wall-clock ms, and the CPU ms the
    server process had used by then (what a busy machine does not inflate). The package's bytecode is compiled
    first, as the image's build stage does (this machine sets PYTHONDONTWRITEBYTECODE, so an editable install would
    otherwise compile every module of ours at every start)."""
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
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=1)
            try:
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    return (time.perf_counter() - began) * 1000, cpu_seconds(process.pid) * 1000
            except OSError:
                time.sleep(0.005)
            finally:
                conn.close()  # a kept-alive connection would hold the server's graceful shutdown for 25 s
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
    parser.add_argument("--paced-seconds", type=float, default=5.0, help="length of each 200 req/s run")
    parser.add_argument("--startups", type=int, default=5, help="starts timed to the first /readyz 200")
    parser.add_argument("--compare-parsers", action="store_true", help="also run the webhook with h11")
    args = parser.parse_args()

    work, files, context, body = prepare("bench-e2e-")
    print(f"review body: {len(body)} bytes (a kube-apiserver static pod with 14 flags; enforce mode: denied)")

    fresh = never_seen(body)
    runs: list[tuple[str, str, str, bytes | list[bytes]]] = [
        (BARE_FASTAPI, "benchmarks.bare_fastapi:build", "httptools", body),
        (BARE_ASGI, "benchmarks.bare_app:build", "httptools", body),
        (WEBHOOK, "webhook.runtime.serving:build_app", "httptools", body),
        (NEVER_SEEN, "webhook.runtime.serving:build_app", "httptools", fresh),
    ]
    if args.compare_parsers:
        runs.append(("apiserver-tls-guard, h11 parser", "webhook.runtime.serving:build_app", "h11", body))
    servers = {}
    full: dict[str, list[Result]] = {label: [] for label, *_ in runs}
    cpu: dict[str, list[float]] = {label: [] for label, *_ in runs}  # server CPU µs per request, each round
    paced: dict[str, list[Result]] = {label: [] for label, *_ in runs}
    try:
        for i, (label, factory, parser_name, _) in enumerate(runs):
            servers[label] = start(files.directory, factory, parser_name, work / f"server-{i}-{parser_name}.log")
        for _ in range(args.rounds):
            for label, _, _, bodies in runs:
                process, port = servers[label]
                asyncio.run(closed_loop(port, context, NAME, bodies, args.connections, 1.0))  # warm-up
                used = cpu_seconds(process.pid)
                result = asyncio.run(closed_loop(port, context, NAME, bodies, args.connections, args.seconds))
                cpu[label].append((cpu_seconds(process.pid) - used) / max(result.requests, 1) * 1e6)
                full[label].append(result)
                paced[label].append(asyncio.run(open_loop(port, context, NAME, bodies, 200, args.paced_seconds)))
        rss = {label: rss_mb(process.pid) for label, (process, _) in servers.items()}
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=30)

    def listed(values: list[float], digits: int = 2) -> str:
        return ", ".join(f"{v:.{digits}f}" for v in values)

    for label, *_ in runs:
        p99s = [r.percentile(99) * 1000 for r in paced[label]]
        print(
            f"{label}:\n  full speed, {args.connections} connections: {listed([r.rate for r in full[label]], 0)} "
            f"req/s; server CPU {listed(cpu[label], 0)} µs a request\n"
            f"  paced 200 req/s, p99: {listed(p99s)} ms (median {statistics.median(p99s):.2f}); "
            f"RSS after the runs: {rss[label]:.1f} MB"
        )

    def ratios(label: str, floor: str) -> str:
        """Throughput ratio per round, and the ratio of server CPU per request (floor / ours) per round."""
        rate = sorted(o.rate / f.rate for o, f in zip(full[label], full[floor], strict=True))
        work = sorted(f / o for o, f in zip(cpu[label], cpu[floor], strict=True))
        return (
            f"{statistics.median(rate):.2f}x (rounds {listed(rate)}); by server CPU per request "
            f"{statistics.median(work):.2f}x (rounds {listed(work)})"
        )

    def p99(label: str) -> str:
        return f"{statistics.median(r.percentile(99) * 1000 for r in paced[label]):.2f} ms"

    print(f"\nratio apiserver-tls-guard / bare FastAPI app, medians of {args.rounds} interleaved rounds:")
    print(f"  a pod seen before (verdict cache): {ratios(WEBHOOK, BARE_FASTAPI)}  (target >= 0.8x)")
    print(f"  pods never seen: {ratios(NEVER_SEEN, BARE_FASTAPI)}  (target >= 0.5x)")
    print(
        f"  p99 at 200 req/s: {p99(WEBHOOK)}, never seen {p99(NEVER_SEEN)}; bare FastAPI {p99(BARE_FASTAPI)}  "
        "(target <= 5 ms)"
    )
    print("ratio to the bare ASGI app, for the history:")
    print(f"  bare FastAPI app: {ratios(BARE_FASTAPI, BARE_ASGI)}")
    print(f"  a pod seen before: {ratios(WEBHOOK, BARE_ASGI)}")
    print(f"  pods never seen: {ratios(NEVER_SEEN, BARE_ASGI)}")
    startups = sorted(startup_ms(files.directory, work) for _ in range(args.startups))
    walls = sorted(wall for wall, _ in startups)
    cpus = sorted(used for _, used in startups)
    print(
        f"start-up to the first /readyz 200 (FastAPI imported on the way), {args.startups} starts: median "
        f"{statistics.median(walls):.0f} ms ({listed(walls, 0)}), server CPU by then median "
        f"{statistics.median(cpus):.0f} ms ({listed(cpus, 0)})  (target < 600 ms)"
    )
    print(f"RSS per worker: {rss[WEBHOOK]:.1f} MB  (target <= 80 MB)")
    errors = sum(r.errors for results in (*full.values(), *paced.values()) for r in results)
    print(f"  errors: {errors}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
