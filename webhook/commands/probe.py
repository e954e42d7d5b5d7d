"""`apiserver-tls-guard probe`: judge running API servers from the network, where no flag can be read.

Its arguments are registered here (webhook/cli.py calls `register`), so the command is one self-contained block;
the probing itself is webhook/probe/. Exit codes as `check`: 0 clean, 1 findings, 2 could not probe.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from webhook.commands.handlers import EXIT_USAGE
from webhook.core.policy import load_policy

if TYPE_CHECKING:
    from webhook.probe.judge import Trust
    from webhook.probe.observe import Endpoint
    from webhook.probe.report import Probed
    from webhook.probe.targets import ClusterConfig

# Endpoints probed at once (each holds up to PARALLEL_HANDSHAKES connections of its own).
PARALLEL_ENDPOINTS = 2


def register(sub: argparse._SubParsersAction, add_policy_options: Callable[..., None]) -> None:  # type: ignore[type-arg]
    probe = sub.add_parser(
        "probe",
        help="judge running API servers from the network: certificate, client CA, anonymous access, ciphers",
        description="Connects as a client (no credentials sent) and maps what the handshake and the answers show to "
        "the catalog's controls. Exit 0: clean; 1: findings; 2: an endpoint could not be probed (reason on stderr).",
    )
    probe.add_argument("urls", nargs="*", metavar="URL", help="https://host:port (default: the kubeconfig's server)")
    probe.add_argument("--kubeconfig", help="default: $KUBECONFIG, ~/.kube/config, or the in-cluster account")
    probe.add_argument("--context", help="kubeconfig context")
    probe.add_argument("--ca", help="CA bundle (PEM) the served certificate must chain to (default: the kubeconfig's)")
    probe.add_argument(
        "--all-endpoints",
        action="store_true",
        help="probe every ready address of the default/kubernetes EndpointSlices (a Service rotates between them)",
    )
    probe.add_argument(
        "--format",
        choices=["text", "json", "sarif", "policyreport"],
        default="text",
        help="policyreport: one cluster-scoped Policy Report in YAML (kubectl apply -f - takes it)",
    )
    probe.add_argument(
        "--report-api",
        choices=["wgpolicyk8s.io/v1alpha2", "openreports.io/v1alpha1"],
        default="wgpolicyk8s.io/v1alpha2",
        help="the Policy Report API of --format policyreport",
    )
    probe.add_argument(
        "--expiry-days", type=int, default=30, help="served-cert-not-expiring fails within this many days"
    )
    probe.add_argument(
        "--service-ip", help="the kubernetes Service's IP the certificate must name (default: read from the API)"
    )
    probe.add_argument("--timeout", type=float, default=3.0, help="seconds each connection may take")
    add_policy_options(probe, default_mode=None)
    probe.set_defaults(func=cmd_probe)


def add_serve_options(serve: argparse.ArgumentParser) -> None:
    """`serve --probe-interval`: the continuous probe (webhook/probe/continuous.py) beside the webhook."""
    serve.add_argument(
        "--probe-interval",
        type=float,
        default=0.0,
        help="seconds between probes of every API server endpoint (the default/kubernetes EndpointSlices), "
        "exported as metrics (0, the default: no probe; needs get/list on that EndpointSlice)",
    )


def _fail(message: str) -> int:
    print(f"apiserver-tls-guard probe: {message}", file=sys.stderr)
    return EXIT_USAGE


@dataclass(frozen=True)
class _Setup:
    endpoints: list[Endpoint]
    trust: Trust
    config: ClusterConfig | None


def _setup(args: argparse.Namespace) -> _Setup:
    """Endpoints, the CAs their chain must reach, the kubeconfig in use; ValueError or TargetError."""
    from webhook.probe import targets
    from webhook.probe.judge import Trust
    from webhook.probe.observe import Endpoint

    use_kubeconfig = not args.urls or args.kubeconfig or args.context
    config = targets.load(args.kubeconfig, args.context) if use_kubeconfig else None
    if args.urls:
        endpoints = [Endpoint.parse(u, config.server_name if config else None) for u in args.urls]
    else:
        assert config is not None
        endpoints = [Endpoint.parse(config.server, config.server_name)]
    if args.ca:
        try:
            pem = open(args.ca, "rb").read()  # noqa: SIM115
        except OSError as err:
            raise targets.TargetError(f"{args.ca}: {err.strerror}") from None
        trust = Trust(targets.read_cas(pem, args.ca), f"--ca {args.ca}")
    elif config is not None and config.ca_pem:
        trust = Trust(targets.read_cas(config.ca_pem, config.ca_source), config.ca_source)
    else:
        trust = Trust(targets.system_cas(), "the system's trusted CAs (no --ca)")
    if args.service_ip:
        ipaddress.ip_address(args.service_ip)  # ValueError names the bad value
    if args.all_endpoints and config is None:
        raise targets.TargetError("--all-endpoints needs a kubeconfig (or the in-cluster account) to read from")
    return _Setup(endpoints, trust, config)


def cmd_probe(args: argparse.Namespace) -> int:
    from webhook.probe import report
    from webhook.probe.handshake import ProbeError
    from webhook.probe.judge import Known, judge, probe_catalog
    from webhook.probe.observe import Endpoint, Observation, observe
    from webhook.probe.targets import TargetError, cluster_view

    policy = load_policy(args.config, mode=args.mode, cisVersion=args.cis_version)
    if args.expiry_days < 0 or args.timeout <= 0:
        return _fail("--expiry-days must be 0 or more and --timeout above 0")
    catalog = probe_catalog()
    benchmark = policy.benchmark_for(None)
    try:
        setup = _setup(args)
    except (TargetError, ValueError) as err:
        return _fail(str(err))
    config, endpoints = setup.config, setup.endpoints

    def one(endpoint: Endpoint) -> Observation | str:
        try:
            return observe(endpoint, args.timeout)
        except ProbeError as err:
            return str(err)

    known = Known(
        client_issuer=config.client_issuer() if config else None,
        service_ip=args.service_ip,
        service_ip_unknown="no kubeconfig given to read the kubernetes Service from; give --service-ip",
    )
    with ThreadPoolExecutor(max_workers=PARALLEL_ENDPOINTS + 1, thread_name_prefix="probe-endpoint") as pool:
        # The API is asked while the endpoints are probed, not before.
        view = None
        if config is not None and (args.all_endpoints or not args.service_ip):
            view = pool.submit(cluster_view, config, args.context, args.all_endpoints)
        if args.all_endpoints:
            assert view is not None
            found = view.result()
            if found.endpoints is None:
                return _fail(f"--all-endpoints: {found.endpoints_unknown}")
            name = endpoints[0].server_name
            endpoints = [Endpoint(host, port, name) for host, port in found.endpoints]
        observed = list(pool.map(one, endpoints))
        if view is not None and not args.service_ip:
            found = view.result()
            known = Known(known.client_issuer, found.service_ip, found.service_ip_unknown)
    now = dt.datetime.now(dt.UTC)
    results: list[Probed] = []
    errors: list[str] = []
    for item in observed:
        if isinstance(item, str):
            errors.append(item)
            continue
        outcomes = judge(item, setup.trust, known, catalog, benchmark, now, args.expiry_days)
        results.append(report.Probed(item, tuple(outcomes)))
    if args.format == "json":
        print(report.as_json(results, errors, policy, catalog, benchmark))
    elif args.format == "sarif":
        print(report.as_sarif(results, policy, catalog, benchmark))
    elif args.format == "policyreport":
        import time

        import yaml

        from webhook.probe.policyreport import cluster_report

        made = cluster_report(results, errors, policy, catalog, benchmark, args.report_api, time.time())
        print(yaml.safe_dump(made, sort_keys=False), end="")
    else:
        print(report.text(results, errors, policy, catalog, benchmark))
    for error in errors:
        print(f"apiserver-tls-guard probe: could not probe {error}", file=sys.stderr)
    if errors:
        return EXIT_USAGE
    judged = report.as_judged(results, policy, catalog, benchmark)
    from webhook.offline.report import exit_code

    return exit_code(judged)
