"""What each subcommand does with its parsed arguments; `webhook/cli.py` only parses them and dispatches here.

Heavy imports (uvicorn, the kubernetes client) happen inside the command that needs them, so `check` stays quick.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from pathlib import Path

from webhook.core.policy import Policy, load_policy
from webhook.offline.report import Judged
from webhook.pki.authority import CertFiles, ca_bundle, ensure_certs

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def _policy(args: argparse.Namespace) -> Policy:
    return load_policy(args.config, mode=args.mode, cisVersion=args.cis_version)


def cmd_certs(args: argparse.Namespace) -> int:
    """`certs`: make (or keep) the CA and serving certificate in --out; print the caBundle."""
    result = ensure_certs(args.out, args.service, args.namespace, owner=args.owner)
    files = result.files
    for path, made in (
        (files.ca_cert, result.created_ca),
        (files.cert, result.created_serving),
        (files.key, result.created_serving),
    ):
        found = path.stat()
        print(f"{'wrote' if made else 'kept '} {path} ({found.st_uid}:{found.st_gid} {found.st_mode & 0o777:o})",
              file=sys.stderr)  # fmt: skip
    print(ca_bundle(files.ca_cert.read_bytes()))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    """`serve`: check the policy, get the certificates (local, external or in-cluster), then run uvicorn."""
    from webhook.runtime import logs, signals

    signals.install()  # first: as a container's PID 1 a signal without a handler is dropped (runtime/signals.py)
    try:
        return _serve(args)
    except signals.Stopped as stop:  # before uvicorn served (it takes the signals over once it does)
        log = logging.getLogger("apiserver_tls_guard")
        log.warning("stopped before serving", extra=logs.fields(signal=stop.name, exitCode=stop.exit_code))
        return stop.exit_code


def _serve(args: argparse.Namespace) -> int:
    from webhook.runtime.serving import ServeSettings, serve  # uvicorn is only imported by the command that needs it

    _policy(args)  # a bad configuration stops here, with its reason, before anything listens
    if args.cluster_certs:
        from webhook.pki.cluster import ClusterCertificates
        from webhook.pki.rotation import Timing
        from webhook.pki.secret import LifecycleNames

        names = LifecycleNames(args.namespace, args.secret, args.webhook_config, args.service)
        timing = Timing(sync_seconds=args.cert_sync_interval, overlap=dt.timedelta(seconds=args.ca_overlap))
        ClusterCertificates.start(names, args.certs_dir, args.kubeconfig, timing)
    elif args.external_certs:
        given = CertFiles(Path(args.certs_dir))
        missing = [str(p) for p in (given.cert, given.key) if not p.is_file()]
        if missing:
            print(f"apiserver-tls-guard: --external-certs: missing {', '.join(missing)}", file=sys.stderr)
            return EXIT_USAGE
        refused = [str(p) for p in (given.cert, given.key) if not os.access(p, os.R_OK)]
        if refused:  # else the TLS library's bare "Permission denied", naming no file and no user
            print(f"apiserver-tls-guard: --external-certs: UID {os.getuid()} cannot read {', '.join(refused)} "
                  "(a hostPath keeps the host's owner: `certs --owner`)", file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
    else:
        ensure_certs(args.certs_dir, args.service, args.namespace)
    if args.policy_reports != "off" and args.audit_interval <= 0 and args.probe_interval <= 0:
        print(
            "apiserver-tls-guard: --policy-reports needs --audit-interval or --probe-interval above 0", file=sys.stderr
        )
        return EXIT_USAGE
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
        drain_idle=args.drain_idle,
        log_level=args.log_level,
        log_format=args.log_format,
        http=args.http,
        reload_interval=args.reload_interval,
        audit_interval=args.audit_interval,
        report_api=None if args.policy_reports == "off" else args.policy_reports,
        kubeconfig=args.kubeconfig,
        probe_interval=args.probe_interval,
        openapi=args.openapi,
    )
    return serve(settings)


def cmd_controls(args: argparse.Namespace) -> int:
    """`controls`: the catalog under the policy given (--config, --mode, --cis-version)."""
    from webhook.commands.controls import as_json, as_text

    policy = _policy(args)
    print(as_json(policy) if args.format == "json" else as_text(policy))
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """`check`: judge manifest files, stdin or (--node) this machine's processes; exit 1 on findings, 2 when an
    input could not be used or (without --allow-empty) nothing was read."""
    from webhook.offline.files import judge_inputs, read_inputs

    policy = _policy(args)
    if args.node:
        from webhook.offline.node import judge_node

        judged, errors = judge_node(args.proc_root, policy)
    else:
        installers = {"k3s": args.k3s_config, "rke2": args.rke2_config}
        if not args.paths and not any(installers.values()):
            print(
                "apiserver-tls-guard check: give manifest files or directories, - for stdin, or --node", file=sys.stderr
            )
            return EXIT_USAGE
        inputs = read_inputs(args.paths, args.exclude, installers)
        judged, errors = judge_inputs(inputs, policy), inputs.errors
        for note in inputs.skipped:
            print(f"apiserver-tls-guard: {note}", file=sys.stderr)
        if not judged and not errors and not args.allow_empty:
            # A CI job that judged nothing is not a pass (kube-linter: --fail-if-no-objects-found).
            errors = ["nothing judged: no Kubernetes object in the inputs given (--allow-empty to exit 0)"]
        elif not judged and not errors:
            print("apiserver-tls-guard: 0 objects read from the inputs given", file=sys.stderr)
    return _print_report(judged, errors, policy, args.format, warn_exit_code=args.warn_exit_code)


def _print_report(
    judged: list[Judged],
    errors: list[str],
    policy: Policy,
    fmt: str,
    report_api: str = "wgpolicyk8s.io/v1alpha2",
    warn_exit_code: int = EXIT_FINDINGS,
) -> int:
    from webhook.offline import report

    if fmt == "policyreport":
        import time

        import yaml

        from webhook.offline.policyreport import reports

        print(yaml.safe_dump_all(reports(judged, policy, report_api, time.time()), sort_keys=False), end="")
    elif fmt == "json":
        print(report.as_json(judged))
    elif fmt == "sarif":
        print(report.as_sarif(judged, policy.catalog, policy.benchmark_for(None)))
    else:
        print(report.text(judged))
    for error in errors:
        print(f"apiserver-tls-guard: {error}", file=sys.stderr)
    if errors:
        return EXIT_USAGE
    return report.exit_code(judged, warn_exit_code)


def cmd_scan(args: argparse.Namespace) -> int:
    """`scan`: judge a live cluster's Pods and workloads through the Kubernetes API."""
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
    return _print_report(judged, errors, policy, args.format, args.report_api, args.warn_exit_code)


def cmd_vap(args: argparse.Namespace) -> int:
    """`vap`: print the policy as ValidatingAdmissionPolicies and bindings."""
    import yaml

    from webhook.commands.vap import generate

    print(yaml.safe_dump_all(generate(_policy(args)), sort_keys=False, width=10_000), end="")
    return EXIT_OK


def cmd_static(args: argparse.Namespace) -> int:
    """`static`: write the static guardrail and print the kube-apiserver flag that loads it."""
    from webhook.commands.static import DEFAULT_IMAGE, RUN_AS, unreadable, write

    certs = Path(args.certs_dir).resolve() if args.certs_dir else None
    ca_pem = CertFiles(certs).ca_cert.read_bytes() if certs else None
    directory = Path(args.directory)
    image = args.image or DEFAULT_IMAGE
    written = write(directory, _policy(args), ca_pem=ca_pem, port=args.port, failure_policy=args.failure_policy,
                    image=image, host_certs_dir=str(certs))  # fmt: skip
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    if certs:
        pod = directory.resolve() / "apiserver-tls-guard.yaml"
        print(f"static pod: copy {pod} into the kubelet's staticPodPath (kubeadm: /etc/kubernetes/manifests/); "
              f"it runs as UID {RUN_AS} and reads {certs}", file=sys.stderr)  # fmt: skip
        refused = unreadable(certs)
        if refused:
            # With failurePolicy Ignore a pod that cannot start leaves the node unguarded without a word: say it now.
            print(f"apiserver-tls-guard: warning: UID {RUN_AS} cannot read {', '.join(map(str, refused))}; make "
                  f"them its own (the key stays 0600, ca.key yours): apiserver-tls-guard certs --out {certs} "
                  f"--owner {RUN_AS}:{RUN_AS}", file=sys.stderr)  # fmt: skip
    config = directory.resolve() / "admission-configuration.yaml"
    print(f"kube-apiserver flag: --admission-control-config-file={config}")
    return EXIT_OK


def cmd_render(args: argparse.Namespace) -> int:
    """`render`: an overlay's manifests with the caBundle filled in."""
    from webhook.commands.render import RenderError, render

    try:
        text, hint = render(Path(args.manifests), args.overlay, args.namespace, Path(args.certs_dir))
    except RenderError as err:
        print(f"apiserver-tls-guard: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(text, end="")
    print(hint, file=sys.stderr)
    return EXIT_OK


def cmd_review(args: argparse.Namespace) -> int:
    """`review`: send manifests to a running webhook as kube-apiserver would; print what kubectl would."""
    from webhook.commands.review import ReviewError, render, review_for, send
    from webhook.offline.documents import DocumentError, load_documents
    from webhook.offline.files import STDIN, read_manifest

    denied = False
    for path in args.files:
        try:
            source = STDIN if path == "-" else path
            documents = load_documents(read_manifest(source), source)
        except DocumentError as err:  # its message names the file
            print(f"apiserver-tls-guard: {err}", file=sys.stderr)
            return EXIT_USAGE
        except OSError as err:
            print(f"apiserver-tls-guard: {path}: {err.strerror or err}", file=sys.stderr)
            return EXIT_USAGE
        for doc in documents:
            try:
                outcome = send(args.server, args.ca, review_for(doc.obj, dry_run=args.dry_run), args.server_name)
            except ReviewError as err:
                print(f"apiserver-tls-guard: {err}", file=sys.stderr)
                return EXIT_USAGE
            to_stdout, to_stderr = render(outcome, doc.obj)
            for line in to_stderr:
                print(line, file=sys.stderr)
            for line in to_stdout:
                print(line)
            denied = denied or not outcome.allowed
    return EXIT_FINDINGS if denied else EXIT_OK


def cmd_version(args: argparse.Namespace) -> int:
    """`version`: the version, and with --format json the Python and platform it runs on."""
    import json
    import platform

    from webhook import __version__

    if args.format == "json":
        print(json.dumps({"version": __version__, "python": platform.python_version(), "platform": sys.platform}))
    else:
        print(f"apiserver-tls-guard {__version__}")
    return EXIT_OK


def cmd_completion(args: argparse.Namespace) -> int:
    """`completion`: a bash, zsh or fish completion script written from the argument parser."""
    from webhook.cli import build_parser  # cli.py imports this module: the parser is only needed here
    from webhook.commands.completion import script

    print(script(build_parser(), args.shell), end="")
    return EXIT_OK
