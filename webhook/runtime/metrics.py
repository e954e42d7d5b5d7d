"""Prometheus metrics: admission decisions, their latency, certificate expiry, build info, the audit's and the
continuous probe's results."""

from __future__ import annotations

import functools
import json
import os
import platform
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from webhook import __version__

NAMESPACE = "tlsguard"

REQUESTS = Counter(
    f"{NAMESPACE}_admission_requests",
    "Admission reviews answered, by operation, outcome (denied, warned, audited, clean, exempt, skipped, error) "
    "and global mode.",
    ["operation", "verdict", "mode"],
)
FINDINGS = Counter(
    f"{NAMESPACE}_findings",
    "Failed controls reported in admission answers, by control key and the mode it was acted on in.",
    ["control", "mode"],
)
BAD_REQUESTS = Counter(
    f"{NAMESPACE}_rejected_requests",
    "Requests to /validate answered with a 4xx because they were not a usable AdmissionReview.",
    ["code"],
)
LATENCY = Histogram(
    f"{NAMESPACE}_admission_duration_seconds",
    "Time from reading the request to having the answer, per admission review.",
    buckets=(0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
CERT_EXPIRY = Gauge(
    f"{NAMESPACE}_certificate_expiry_timestamp_seconds",
    "When the certificate the webhook serves with (or its CA) expires, as a Unix timestamp.",
    ["certificate"],
    multiprocess_mode="max",
)
BUILD_INFO = Gauge(
    f"{NAMESPACE}_build_info",
    "Always 1; labels tell the version that runs.",
    ["version", "python"],
    multiprocess_mode="max",
)
BUILD_INFO.labels(__version__, platform.python_version()).set(1)


CACHE_LOOKUPS = Counter(
    f"{NAMESPACE}_verdict_cache_lookups_total",
    "Reviews answered from the verdict cache (hit) or judged (miss); the hit rate is hit / (hit + miss).",
    ["result"],
)
AUDIT_RUNS = Counter(
    f"{NAMESPACE}_audit_runs_total",
    "Continuous audits of the cluster, by result (ok: the whole cluster was read; error: some list or report "
    "call failed).",
    ["result"],
)
AUDIT_LAST_SUCCESS = Gauge(
    f"{NAMESPACE}_audit_last_success_timestamp_seconds",
    "When the last audit that read the whole cluster finished, as a Unix timestamp.",
    multiprocess_mode="max",
)
EVALUATION_ERRORS = Counter(
    f"{NAMESPACE}_evaluation_errors",
    "Reviews whose judging raised (a bug), by the answer given: denied when a control for the object enforces, "
    "allowed (with a warning) otherwise.",
    ["answer"],
)
POLICY_RELOAD_ERRORS = Counter(
    f"{NAMESPACE}_policy_reload_errors_total",
    "Changed policy files that were refused (unreadable, not UTF-8, not YAML or not a valid policy); the policy "
    "in force was kept.",
)
CERT_RELOAD_ERRORS = Counter(
    f"{NAMESPACE}_certificate_reload_errors_total",
    "Changed serving certificate files that were refused (the pair did not load: a certificate without its key, "
    "a mismatched or unreadable pair); the pair loaded before kept serving.",
)

# The continuous probe's (webhook/probe/continuous.py), registered with the rest so /metrics always names them.
# Not `endpoint`: the Prometheus Operator sets that target label to the ServiceMonitor's port name
# (prometheus-operator pkg/prometheus/promcfg.go), and the scrape renames ours to `exported_endpoint`.
PROBE_CERT_EXPIRY = Gauge(
    f"{NAMESPACE}_probe_certificate_expiry_timestamp_seconds",
    "When the certificate an API server endpoint serves expires, as a Unix timestamp (continuous probe).",
    ["target_endpoint"],
    multiprocess_mode="max",
)
PROBE_FINDINGS = Gauge(
    f"{NAMESPACE}_probe_findings",
    "1 when the control fails on the endpoint, 0 when it passes; controls the network cannot show have no series.",
    ["target_endpoint", "control"],
    multiprocess_mode="max",
)
PROBE_LAST_SUCCESS = Gauge(
    f"{NAMESPACE}_probe_last_success_timestamp_seconds",
    "When the endpoint was last probed to the end, as a Unix timestamp.",
    ["target_endpoint"],
    multiprocess_mode="max",
)
PROBE_RUNS = Counter(
    f"{NAMESPACE}_probe_runs_total",
    "Probes of one endpoint, by result (ok: probed to the end; error: it could not be probed).",
    ["result"],
)


class _Snapshot:
    """A gauge family whose whole set of series is replaced at once, which prometheus_client's Gauge cannot do
    across worker processes: in multiprocess mode every worker keeps its own file of values, `clear()` and
    `remove()` touch only the calling worker's memory, and a label set once lives in its file until the process
    ends. So `policy_info` kept one series per hash ever seen, and `audit_violations` kept a fixed violation (or
    a worker's that stopped auditing) exported forever. The series live here instead: in memory, and with several
    workers in one JSON file in PROMETHEUS_MULTIPROC_DIR (replaced atomically), read by whichever worker answers
    /metrics.
    """

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...], shared: bool) -> None:
        self.name, self.documentation, self.labels, self.shared = name, documentation, labels, shared
        self._series: dict[tuple[str, ...], float] = {}

    def _file(self) -> Path | None:
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR") if self.shared else None
        return Path(folder) / f"{self.name}.snapshot.json" if folder else None

    def replace(self, series: Mapping[tuple[str, ...], float]) -> None:
        """The family is exactly these series from now on (empty: none)."""
        self._series = dict(series)
        path = self._file()
        if path is not None:
            data = json.dumps([[list(k), v] for k, v in self._series.items()]).encode()
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)

    def current(self) -> dict[tuple[str, ...], float]:
        path = self._file()
        if path is None:
            return dict(self._series)
        try:
            return {tuple(k): float(v) for k, v in json.loads(path.read_bytes())}
        except (OSError, ValueError, TypeError):
            return {}

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, value in sorted(self.current().items()):
            family.add_metric(list(labels), value)
        yield family


POLICY_INFO = _Snapshot(
    f"{NAMESPACE}_policy_info",
    "1 for the policy in force; the label is its hash (file and command-line settings). One series: the policy "
    "this worker answers with.",
    ("hash",),
    shared=False,  # every worker reloads the file itself; the one answering /metrics tells its own
)
AUDIT_VIOLATIONS = _Snapshot(
    f"{NAMESPACE}_audit_violations",
    "Failing (object, control) pairs found by the last complete continuous audit of the cluster, by control and "
    "the objects' namespace (namespaces past the first 100 are counted as '(other)'). Exported only by the "
    "replica that holds the audit Lease.",
    # Not `namespace`: Prometheus' scrape sets that to the target's own namespace and, with honor_labels false
    # (the default), renames a scraped `namespace` to `exported_namespace`.
    ("control", "target_namespace"),
    shared=True,  # one worker audits; any worker may answer /metrics
)
REGISTRY.register(POLICY_INFO)
REGISTRY.register(AUDIT_VIOLATIONS)


# Bound label children, looked up once: `labels()` validates and locks on every call, on the hot path.
@functools.cache
def _request_counter(operation: str, outcome: str, mode: str) -> Any:
    return REQUESTS.labels(operation, outcome, mode)


@functools.cache
def _finding_counter(control: str, mode: str) -> Any:
    return FINDINGS.labels(control, mode)


_CACHE_HIT, _CACHE_MISS = CACHE_LOOKUPS.labels("hit"), CACHE_LOOKUPS.labels("miss")


def request(operation: str, outcome: str, mode: str) -> None:
    # The operation comes from the request, but parse_review only lets the four real ones through: bounded.
    """Count one answered review."""
    _request_counter(operation, outcome, mode).inc()


def finding(control: str, mode: str) -> None:
    """Count one finding."""
    _finding_counter(control, mode).inc()


def evaluation_error(allowed: bool) -> None:
    """Count one review whose judging raised, by the answer it got."""
    EVALUATION_ERRORS.labels("allowed" if allowed else "denied").inc()


def cache_lookup(hit: bool) -> None:
    """Count one verdict-cache lookup."""
    (_CACHE_HIT if hit else _CACHE_MISS).inc()


def record_policy(digest: str, previous: str | None = None) -> None:
    """Mark the policy in force by its hash; the one it replaced (`previous`) is no longer exported at all."""
    del previous
    POLICY_INFO.replace({(digest,): 1.0})


def record_certificates(cert_file: Path, ca_file: Path) -> None:
    """Export when the serving certificate and its CA expire."""
    for name, path in (("serving", cert_file), ("ca", ca_file)):
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError):
            continue
        CERT_EXPIRY.labels(name).set(cert.not_valid_after_utc.timestamp())


def exposition() -> tuple[bytes, str]:
    """The text exposition; with several workers, the sum over all of them."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(POLICY_INFO)
        registry.register(AUDIT_VIOLATIONS)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
