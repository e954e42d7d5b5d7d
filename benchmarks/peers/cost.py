"""Cost: the pod-create loop through the real kube-apiserver (issue 26 point 4).

C client threads, each on one keep-alive TLS connection as the admin, POST N pods in all; the latency of each create
is taken at the client. Rounds interleave the engine off (the baseline) and on, so the machine's drift lands on
both; the figures are medians over rounds of the per-round difference. Over each engine-on loop the engine's
processes' CPU seconds (utime + stime from /proc, children included) and peak RSS (VmRSS sampled every 50 ms) are
taken, with kube-apiserver's own CPU (where a ValidatingAdmissionPolicy does its work) and the apiserver's
admission metrics (`apiserver_admission_webhook_admission_duration_seconds`,
`apiserver_admission_match_condition_evaluation_seconds`, `apiserver_validating_admission_policy_check_duration_
seconds`) as deltas over the loop.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import statistics
import threading
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.peers.engines import Engine
from tests.e2e.conftest import GOOD_FLAGS, apiserver_pod, unique
from tests.e2e.controlplane import ControlPlane

ORDINARY_NS = "bench"
LABEL = {"bench": "peers"}
TICK = os.sysconf("SC_CLK_TCK")
METRICS = (
    "apiserver_admission_webhook_admission_duration_seconds",
    "apiserver_admission_match_condition_evaluation_seconds",
    "apiserver_validating_admission_policy_check_duration_seconds",
)


def ordinary_pod(name: str) -> dict[str, Any]:
    """What every pod in a cluster is: no kube-apiserver in it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ORDINARY_NS, "labels": dict(LABEL)},
        "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
    }


def kube_apiserver_pod(name: str) -> dict[str, Any]:
    pod = apiserver_pod(name, GOOD_FLAGS)
    pod["metadata"]["labels"].update(LABEL)
    return pod


KINDS = {"ordinary": (ORDINARY_NS, ordinary_pod), "apiserver": ("kube-system", kube_apiserver_pod)}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else math.nan


def create_loop(plane: ControlPlane, kind: str, pods: int, concurrency: int) -> tuple[list[float], int]:
    """Create `pods` pods of this kind from `concurrency` keep-alive connections: (latencies in s, errors)."""
    assert plane.apiserver is not None
    namespace, make = KINDS[kind]
    context = plane.apiserver.admin_context()
    port = plane.apiserver.port
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    per_thread = [pods // concurrency + (1 if i < pods % concurrency else 0) for i in range(concurrency)]

    def worker(count: int) -> None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
        mine: list[float] = []
        for _ in range(count):
            body = json.dumps(make(unique("bench"))).encode()
            started = time.perf_counter()
            conn.request("POST", f"/api/v1/namespaces/{namespace}/pods", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            if response.status != 201:
                with lock:
                    errors[0] += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(n,)) for n in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    plane.kubectl("delete", "pods", "-n", namespace, "-l", "bench=peers", "--wait=false", timeout=120)
    return latencies, errors[0]


def _tree(pid: int) -> list[int]:
    """The pid and its descendants."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children[ppid].append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / TICK


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


@dataclass
class Usage:
    """CPU and peak memory of a set of processes while a block runs."""

    roots: list[int]
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _start_cpu: float = 0.0

    def _pids(self) -> list[int]:
        return [p for root in self.roots for p in _tree(root)]

    def __enter__(self) -> Usage:
        self._start_cpu = cpu_seconds(self._pids())

        def sample() -> None:
            while not self._stop.is_set():
                self.peak_rss_mb = max(self.peak_rss_mb, rss_mb(self._pids()))
                self._stop.wait(0.05)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.cpu_s = cpu_seconds(self._pids()) - self._start_cpu


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def scrape(plane: ControlPlane) -> dict[str, dict[str, float]]:
    """The apiserver's histograms of METRICS, summed over label sets: name -> {"sum", "count", "le=<b>"...}."""
    assert plane.apiserver is not None
    url = f"{plane.apiserver.url}/metrics"
    with urllib.request.urlopen(url, timeout=30, context=plane.apiserver.admin_context()) as response:
        text = response.read().decode()
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or not m[1].startswith(METRICS):
            continue
        name, labels, value = m[1], m[2] or "", float(m[3])
        for family in METRICS:
            if name == f"{family}_sum":
                out[family]["sum"] += value
            elif name == f"{family}_count":
                out[family]["count"] += value
            elif name == f"{family}_bucket":
                le = re.search(r'le="([^"]+)"', labels)
                if le:
                    out[family][f"le={le[1]}"] += value
    return {k: dict(v) for k, v in out.items()}


def histogram_delta(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Per metric: count, mean ms and the p99 upper bucket bound (ms) of what happened between two scrapes."""
    out: dict[str, Any] = {}
    for family in METRICS:
        a, b = after.get(family, {}), before.get(family, {})
        count = a.get("count", 0) - b.get("count", 0)
        if count <= 0:
            continue
        buckets = sorted(((float(k[3:]), a[k] - b.get(k, 0)) for k in a if k.startswith("le=")), key=lambda kv: kv[0])
        p99 = next((bound for bound, n in buckets if n >= 0.99 * count), math.inf)
        out[family] = {
            "count": int(count),
            "mean_ms": round((a.get("sum", 0) - b.get("sum", 0)) / count * 1000, 3),
            "p99_bucket_ms": p99 * 1000 if math.isfinite(p99) else None,
        }
    return out


@dataclass
class Round:
    kind: str
    baseline: list[float]
    engine: list[float]
    errors: int
    cpu_s: float
    rss_mb: float
    apiserver_cpu_s: float
    baseline_apiserver_cpu_s: float
    metrics: dict[str, Any]
    handler_ms: float | None  # the engine's own mean time per review, from its metrics (ours only)


def measure(engine: Engine, pods: int, concurrency: int, rounds: int) -> list[Round]:
    """Interleaved rounds: engine off (baseline), engine on; for ordinary pods, then kube-apiserver pods."""
    plane = engine.plane
    assert plane.apiserver is not None
    apiserver_pid = [plane.apiserver.process.pid] if plane.apiserver.process else []
    plane.kubectl("create", "namespace", ORDINARY_NS)
    out = []
    for _ in range(rounds):
        for kind in KINDS:
            engine.disable()
            with Usage(apiserver_pid) as base_api:
                baseline, base_errors = create_loop(plane, kind, pods, concurrency)
            engine.enable()
            before, own_before = scrape(plane), engine.handler_seconds()
            with Usage(apiserver_pid) as api, Usage(engine.pids()) as usage:
                latencies, errors = create_loop(plane, kind, pods, concurrency)
            metrics = histogram_delta(before, scrape(plane))
            own_after = engine.handler_seconds()
            handler_ms = None
            if own_before and own_after and own_after[1] > own_before[1]:
                handler_ms = (own_after[0] - own_before[0]) / (own_after[1] - own_before[1]) * 1000
            engine.check_alive()
            total_errors = errors + base_errors
            out.append(
                Round(
                    kind,
                    baseline,
                    latencies,
                    total_errors,
                    usage.cpu_s,
                    usage.peak_rss_mb,
                    api.cpu_s,
                    base_api.cpu_s,
                    metrics,
                    handler_ms,
                )
            )
    return out


def _median_metrics(per_round: list[dict[str, Any]]) -> dict[str, Any]:
    """Per metric, the median over rounds of its count and mean (a metric absent in a round counts as none)."""
    out: dict[str, Any] = {}
    for family in METRICS:
        found = [m[family] for m in per_round if family in m]
        if found:
            out[family] = {
                "count": statistics.median([f["count"] for f in found]),
                "mean_ms": round(statistics.median([f["mean_ms"] for f in found]), 3),
                "rounds_seen": len(found),
            }
    return out


def summarise(rounds: list[Round]) -> dict[str, Any]:
    """Medians over rounds, per kind: p50/p99 of the engine and the baseline and what the engine adds."""
    out: dict[str, Any] = {}
    for kind in KINDS:
        mine = [r for r in rounds if r.kind == kind]
        if not mine:
            continue

        def med(values: list[float]) -> float:
            return round(statistics.median(values), 3)

        out[kind] = {
            "rounds": len(mine),
            "pods_per_round": len(mine[0].engine),
            "errors": sum(r.errors for r in mine),
            "baseline_p50_ms": med([percentile(r.baseline, 50) * 1000 for r in mine]),
            "baseline_p99_ms": med([percentile(r.baseline, 99) * 1000 for r in mine]),
            "baseline_p99_spread_ms": [round(percentile(r.baseline, 99) * 1000, 3) for r in mine],
            "p50_ms": med([percentile(r.engine, 50) * 1000 for r in mine]),
            "p99_ms": med([percentile(r.engine, 99) * 1000 for r in mine]),
            "p50_added_ms": med([(percentile(r.engine, 50) - percentile(r.baseline, 50)) * 1000 for r in mine]),
            "p99_added_ms": med([(percentile(r.engine, 99) - percentile(r.baseline, 99)) * 1000 for r in mine]),
            "cpu_s": med([r.cpu_s for r in mine]),
            "rss_mb": med([r.rss_mb for r in mine]),
            "apiserver_cpu_s": med([r.apiserver_cpu_s for r in mine]),
            "apiserver_cpu_added_s": med([r.apiserver_cpu_s - r.baseline_apiserver_cpu_s for r in mine]),
            "metrics": _median_metrics([r.metrics for r in mine]),
            # The machine's noise, round by round: the baseline's own p50 and p99 and each round's added p99.
            "baseline_p50_spread_ms": [round(percentile(r.baseline, 50) * 1000, 3) for r in mine],
            "p99_added_spread_ms": [
                round((percentile(r.engine, 99) - percentile(r.baseline, 99)) * 1000, 3) for r in mine
            ],
            "p50_added_spread_ms": [
                round((percentile(r.engine, 50) - percentile(r.baseline, 50)) * 1000, 3) for r in mine
            ],
        }
        handled = [r.handler_ms for r in mine if r.handler_ms is not None]
        if handled:
            out[kind]["engine_handler_mean_ms"] = med(handled)
    return out
