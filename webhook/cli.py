"""The `apiserver-tls-guard` command: certs, serve, check."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

from webhook import __version__
from webhook.certs.authority import DEFAULT_NAMESPACE, DEFAULT_SERVICE, CertFiles, ca_bundle, ensure_certs
from webhook.core.policy import GLOBAL_MODES, ConfigError, Policy, load_policy
from webhook.offline.report import Judged
from webhook.runtime import logs

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def _add_policy_options(parser: argparse.ArgumentParser, default_mode: str | None) -> None:
    parser.add_argument("--config", help="policy file (YAML): modes per control, exemptions, cisVersion")
    parser.add_argument(
        "--mode",
        choices=[m.value for m in GLOBAL_MODES],
        default=default_mode,
        help="what a finding does: enforce denies, warn allows with warnings, audit only records",
    )
    parser.add_argument(
        "--cis-version",
        help="benchmark whose ids are shown: auto (from the image tag) or a version like 1.5.1",
    )


def _policy(args: argparse.Namespace) -> Policy:
    return load_policy(args.config, mode=args.mode, cisVersion=args.cis_version)


def _cmd_certs(args: argparse.Namespace) -> int:
    result = ensure_certs(args.out, args.service, args.namespace)
    files = result.files
    for path, made in (
        (files.ca_cert, result.created_ca),
        (files.cert, result.created_serving),
        (files.key, result.created_serving),
    ):
        print(f"{'wrote' if made else 'kept '} {path}", file=sys.stderr)
    print(ca_bundle(files.ca_cert.read_bytes()))
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    from webhook.runtime.serving import ServeSettings, serve  # uvicorn is only imported by the command that needs it

    _policy(args)  # a bad configuration stops here, with its reason, before anything listens
    if args.cluster_certs:
        from webhook.certs.cluster import ClusterCertificates
        from webhook.certs.rotation import Timing
        from webhook.certs.secret import LifecycleNames

        names = LifecycleNames(args.namespace, args.secret, args.webhook_config, args.service)
        timing = Timing(sync_seconds=args.cert_sync_interval, overlap=dt.timedelta(seconds=args.ca_overlap))
        ClusterCertificates.start(names, args.certs_dir, args.kubeconfig, timing)
    elif args.external_certs:
        given = CertFiles(Path(args.certs_dir))
        missing = [str(p) for p in (given.cert, given.key) if not p.is_file()]
        if missing:
            print(f"apiserver-tls-guard: --external-certs: missing {', '.join(missing)}", file=sys.stderr)
            return EXIT_USAGE
    else:
        ensure_certs(args.certs_dir, args.service, args.namespace)
    settings = ServeSettings(
        certs_dir=args.certs_dir,
        host=args.host,
        port=args.port,
        config=args.config,
        mode=args.mode,
        cis_version=args.cis_version,
        workers=args.workers,
        keep_alive=args.keep_alive,
        shutdown_timeout=args.shutdown_timeout,
        log_level=args.log_level,
        log_format=args.log_format,
        http=args.http,
        reload_interval=args.reload_interval,
    )
    try:
        return serve(settings)
    except KeyboardInterrupt:  # Ctrl-C before uvicorn took over the signals: nothing was in flight
        return EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    from webhook.offline.files import judge_inputs, read_inputs

    policy = _policy(args)
    if args.node:
        from webhook.offline.node import judge_node

        judged, errors = judge_node(args.proc_root, policy)
    else:
        if not args.paths:
            print(
                "apiserver-tls-guard check: give manifest files or directories, - for stdin, or --node", file=sys.stderr
            )
            return EXIT_USAGE
        inputs = read_inputs(args.paths, args.exclude)
        judged, errors = judge_inputs(inputs, policy), inputs.errors
        for note in inputs.skipped:
            print(f"apiserver-tls-guard: {note}", file=sys.stderr)
        if not judged and not errors:
            print("apiserver-tls-guard: 0 objects read from the inputs given", file=sys.stderr)
    return _print_report(judged, errors, policy, args.format)


def _print_report(judged: list[Judged], errors: list[str], policy: Policy, fmt: str) -> int:
    from webhook.offline import report

    if fmt == "json":
        print(report.as_json(judged))
    elif fmt == "sarif":
        print(report.as_sarif(judged, policy.catalog, policy.benchmark_for(None)))
    else:
        print(report.text(judged))
    for error in errors:
        print(f"apiserver-tls-guard: {error}", file=sys.stderr)
    if errors:
        return EXIT_USAGE
    return EXIT_FINDINGS if report.should_fail(judged) else EXIT_OK


def _cmd_scan(args: argparse.Namespace) -> int:
    from webhook.kube import KubeConfigError, api_client
    from webhook.offline.cluster import scan

    policy = _policy(args)
    tty = sys.stderr.isatty()

    def progress(text: str) -> None:
        print(f"\r{text}\033[K" if tty else text, end="" if tty else "\n", file=sys.stderr, flush=True)

    try:
        api = api_client(args.kubeconfig, args.context)
    except KubeConfigError as err:
        print(f"apiserver-tls-guard: {err}", file=sys.stderr)
        return EXIT_USAGE
    with api:
        judged, errors = scan(api, policy, args.namespace, progress)
    if tty:
        print(file=sys.stderr)
    return _print_report(judged, errors, policy, args.format)


def _cmd_render(args: argparse.Namespace) -> int:
    from webhook.commands.render import RenderError, render

    try:
        text, hint = render(Path(args.manifests), args.overlay, args.namespace, Path(args.certs_dir))
    except RenderError as err:
        print(f"apiserver-tls-guard: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(text, end="")
    print(hint, file=sys.stderr)
    return EXIT_OK


def _cmd_review(args: argparse.Namespace) -> int:
    from webhook.commands.review import ReviewError, render, review_for, send
    from webhook.offline.documents import DocumentError, load_documents

    denied = False
    for path in args.files:
        try:
            text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
            documents = load_documents(text, path)
        except (OSError, DocumentError, UnicodeDecodeError) as err:
            print(f"apiserver-tls-guard: {path}: {getattr(err, 'strerror', None) or err}", file=sys.stderr)
            return EXIT_USAGE
        for doc in documents:
            try:
                outcome = send(args.server, args.ca, review_for(doc.obj, dry_run=args.dry_run), args.server_name)
            except ReviewError as err:
                print(f"apiserver-tls-guard: {err}", file=sys.stderr)
                return EXIT_USAGE
            print(render(outcome, doc.obj))
            denied = denied or not outcome.allowed
    return EXIT_FINDINGS if denied else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apiserver-tls-guard",
        description="Admission webhook and checker for kube-apiserver TLS flags (CIS Kubernetes Benchmark 1.2).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    certs = sub.add_parser("certs", help="make (or keep) a CA and serving certificate; prints the caBundle")
    certs.add_argument("--out", required=True, help="directory for ca.crt, ca.key, tls.crt, tls.key")
    certs.add_argument("--service", default=DEFAULT_SERVICE)
    certs.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    certs.set_defaults(func=_cmd_certs)

    serve = sub.add_parser("serve", help="serve the admission webhook over HTTPS")
    serve.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a webhook must be reachable from the apiserver
    serve.add_argument("--port", type=int, default=8443)
    serve.add_argument("--certs-dir", default="certs", help="made here when missing (see `certs`)")
    serve.add_argument("--service", default=DEFAULT_SERVICE)
    serve.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-format", default="json", choices=["json", "text"])
    serve.add_argument(
        "--keep-alive", type=int, default=120, help="seconds an idle connection stays open (above the apiserver's 90)"
    )
    serve.add_argument("--workers", type=int, default=1, help="worker processes sharing the port")
    serve.add_argument(
        "--shutdown-timeout",
        type=int,
        default=25,
        help="seconds in-flight reviews get to finish after SIGTERM (keep below terminationGracePeriodSeconds)",
    )
    certs_group = serve.add_mutually_exclusive_group()
    certs_group.add_argument(
        "--external-certs",
        action="store_true",
        help="use tls.crt/tls.key in --certs-dir as given (cert-manager, a mounted Secret); never make them",
    )
    certs_group.add_argument(
        "--cluster-certs",
        action="store_true",
        help="keep CA and serving certificate in a Secret, publish the caBundle, rotate (README, 'Certificates')",
    )
    serve.add_argument("--secret", default="apiserver-tls-guard-certs", help="Secret for --cluster-certs")
    serve.add_argument(
        "--webhook-config", default="apiserver-tls-guard", help="ValidatingWebhookConfiguration whose caBundle to keep"
    )
    serve.add_argument("--kubeconfig", help="for --cluster-certs outside a cluster (default: in-cluster)")
    serve.add_argument("--reload-interval", type=float, default=5.0, help="seconds between looks at the cert files")
    serve.add_argument(
        "--cert-sync-interval", type=float, default=60.0, help="--cluster-certs: seconds between syncs with the Secret"
    )
    serve.add_argument(
        "--ca-overlap",
        type=float,
        default=900.0,
        help="--cluster-certs: seconds between the steps of a CA rotation; keep it well above the sync interval",
    )
    serve.add_argument("--http", default="httptools", choices=["httptools", "h11", "auto"], help="HTTP/1.1 parser")
    _add_policy_options(serve, default_mode=None)
    serve.set_defaults(func=_cmd_serve)

    check = sub.add_parser(
        "check",
        help="judge manifest files (or this machine's kube-apiserver processes) with the webhook's checks",
        description="Exit 0: clean; 1: findings in enforce or warn mode; 2: unusable input (file and reason).",
    )
    check.add_argument("paths", nargs="*", help="files, directories (searched for .yaml/.yml/.json), - for stdin")
    check.add_argument("--format", choices=["text", "json", "sarif"], default="text")
    check.add_argument(
        "--exclude", action="append", default=[], metavar="GLOB", help="skip matching paths (repeatable)"
    )
    check.add_argument("--node", action="store_true", help="judge kube-apiserver processes running on this machine")
    check.add_argument("--proc-root", default="/proc", help="where /proc is (for tests and host mounts)")
    _add_policy_options(check, default_mode=None)
    check.set_defaults(func=_cmd_check)

    scan = sub.add_parser("scan", help="judge the Pods and workloads of a live cluster (kubeconfig or in-cluster)")
    scan.add_argument("--kubeconfig", help="default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account")
    scan.add_argument("--context", help="kubeconfig context")
    scan.add_argument("--namespace", "-n", help="only this namespace (default: all)")
    scan.add_argument("--format", choices=["text", "json", "sarif"], default="text")
    _add_policy_options(scan, default_mode=None)
    scan.set_defaults(func=_cmd_scan)

    render = sub.add_parser(
        "render",
        help="print the manifests of an overlay with the caBundle filled in (GitOps; no writes to the cluster)",
    )
    render.add_argument("--overlay", required=True, choices=["warn", "enforce"])
    render.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    render.add_argument("--certs-dir", default="certs", help="CA and serving certificate (made here when missing)")
    render.add_argument("--manifests", default="manifests", help="the kustomize tree (base/ and overlays/)")
    render.set_defaults(func=_cmd_render)

    review = sub.add_parser(
        "review", help="send manifests to a running webhook as kube-apiserver would; print what kubectl would"
    )
    review.add_argument("files", nargs="+", help="manifest files (YAML/JSON, multi-document), - for stdin")
    review.add_argument("--server", default="https://127.0.0.1:8443")
    review.add_argument("--ca", default="certs/ca.crt", help="CA to verify the webhook with (the caBundle)")
    review.add_argument("--server-name", help="name to verify, e.g. apiserver-tls-guard.apiserver-tls-guard.svc")
    review.add_argument("--dry-run", action="store_true", help="mark the request dryRun, as --dry-run=server does")
    review.set_defaults(func=_cmd_review)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(getattr(args, "log_level", "info"), getattr(args, "log_format", "text"))
    try:
        code: int = args.func(args)
    except ConfigError as err:
        print(f"apiserver-tls-guard: {err}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:
        where = f" {err.filename}" if err.filename else ""
        print(f"apiserver-tls-guard:{where} {err.strerror or err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # never a traceback, and never exit 1, which CI reads as "findings"
        print(f"apiserver-tls-guard: internal error: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_USAGE
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
