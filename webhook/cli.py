"""The `apiserver-tls-guard` command line: parses arguments and dispatches to `webhook/commands/handlers.py`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from webhook import __version__
from webhook.commands import handlers
from webhook.commands.handlers import EXIT_USAGE
from webhook.core.policy import GLOBAL_MODES, ConfigError
from webhook.pki.authority import DEFAULT_NAMESPACE, DEFAULT_SERVICE
from webhook.runtime import logs


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's defaults in --help, left out where there is nothing to show (None, off switches, empty lists)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        # Identity, not ==: a default of 0 (--audit-interval) is worth showing, and 0 == False.
        if default is None or default is False or default is argparse.SUPPRESS or default == [] or not action.help:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Every subcommand's parser: defaults shown in --help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def _add_exit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--warn-exit-code",
        type=_exit_code,
        default=1,
        metavar="CODE",
        help="exit code when the worst finding is in warn mode (as Kyverno's --warn-exit-code; 0 lets CI pass)",
    )


def _exit_code(text: str) -> int:
    try:
        code = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= code <= 255:
        raise argparse.ArgumentTypeError(f"an exit code is 0 to 255, not {code}")
    return code


def _seconds(text: str) -> float:
    """A duration in seconds, 0 or more: `nan` and `inf` are floats to Python, not durations to a timer."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"seconds from 0 to 3600, not {text!r}")
    return seconds


def _owner(text: str) -> tuple[int, int]:
    """UID:GID (or UID, with the group of the same number), numeric: the user inside the image is not in the
    host's /etc/passwd."""
    uid, _, gid = text.partition(":")
    try:
        owner = (int(uid), int(gid or uid))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not UID:GID in numbers: {text!r}") from None
    if min(owner) < 0:
        raise argparse.ArgumentTypeError(f"not UID:GID in numbers: {text!r}")
    return owner


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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand; each sets `func` to its handler in commands/handlers.py."""
    parser = _Parser(
        prog="apiserver-tls-guard",
        description="Admission webhook and checker for kube-apiserver TLS flags (CIS Kubernetes Benchmark 1.2).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    certs = sub.add_parser("certs", help="make (or keep) a CA and serving certificate; prints the caBundle")
    certs.add_argument("--out", required=True, help="directory for ca.crt, ca.key, tls.crt, tls.key")
    certs.add_argument("--service", default=DEFAULT_SERVICE, help="the webhook's Service: the certificate's name")
    certs.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="the Service's namespace")
    certs.add_argument(
        "--owner",
        type=_owner,
        metavar="UID:GID",
        help="owner of tls.key, tls.crt and ca.crt (the key stays 0600; ca.key stays yours): the user the server "
        "runs as, 65532:65532 in our image, for the static node-local webhook's hostPath (see `static`)",
    )
    certs.set_defaults(func=handlers.cmd_certs)

    serve = sub.add_parser("serve", help="serve the admission webhook over HTTPS")
    serve.add_argument(
        "--host",
        default="",
        help="address to listen on; empty: every address family the host has, one socket each (IPv4 and IPv6; "
        "`::` alone would be IPv6 only, as asyncio sets IPV6_V6ONLY)",
    )
    serve.add_argument("--port", type=int, default=8443, help="HTTPS port")
    serve.add_argument("--certs-dir", default="certs", help="made here when missing (see `certs`)")
    serve.add_argument("--service", default=DEFAULT_SERVICE, help="the webhook's Service: the certificate's name")
    serve.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="the namespace the webhook runs in")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="log level")
    serve.add_argument("--log-format", default="json", choices=["json", "text"], help="one JSON object a line, or text")
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
    serve.add_argument(
        "--drain-idle",
        type=_seconds,
        default=2.0,
        help="seconds an idle keep-alive connection stays open after SIGTERM, answering a review that arrives on it "
        "with `connection: close` (keep well below --shutdown-timeout)",
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
    serve.add_argument(
        "--kubeconfig", help="for --cluster-certs and the audit outside a cluster (default: in-cluster, $KUBECONFIG)"
    )
    serve.add_argument(
        "--audit-interval",
        type=float,
        default=0.0,
        help="seconds between continuous audits of the cluster's Pods and workloads (0, the default: no audit; "
        "needs the audit RBAC, manifests/components/audit)",
    )
    serve.add_argument(
        "--policy-reports",
        default="off",
        choices=["off", "wgpolicyk8s.io/v1alpha2", "openreports.io/v1alpha1"],
        help="with --audit-interval: write one Policy Report per namespace that runs kube-apiserver",
    )
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
    serve.add_argument("--openapi", action="store_true", help="serve the OpenAPI document at /openapi.json")
    _add_policy_options(serve, default_mode=None)
    serve.set_defaults(func=handlers.cmd_serve)

    check = sub.add_parser(
        "check",
        help="judge manifest files (or this machine's kube-apiserver processes) with the webhook's checks",
        description="Exit 0: clean (or only audit-mode findings); 1: findings in enforce mode, or in warn mode "
        "(--warn-exit-code); 2: an input could not be used (each named with its reason, after every other file is "
        "judged and printed), or no Kubernetes object was read (--allow-empty).",
    )
    check.add_argument("paths", nargs="*", help="files, directories (searched for .yaml/.yml/.json), - for stdin")
    check.add_argument("--format", choices=["text", "json", "sarif"], default="text", help="report format")
    check.add_argument(
        "--exclude", action="append", default=[], metavar="GLOB", help="skip matching paths (repeatable)"
    )
    for installer in ("k3s", "rke2"):
        check.add_argument(
            f"--{installer}-config",
            action="append",
            default=[],
            metavar="FILE",
            help=f"read FILE as a {installer} config.yaml wherever it is (repeatable); "
            f".../{installer}/config.yaml and .../{installer}/config.yaml.d/*.yaml are read so without it",
        )
    check.add_argument("--node", action="store_true", help="judge kube-apiserver processes running on this machine")
    check.add_argument("--proc-root", default="/proc", help="where /proc is (for tests and host mounts)")
    check.add_argument(
        "--allow-empty",
        action="store_true",
        help="exit 0, not 2, when the inputs hold no Kubernetes object (a commit that touches only other YAML)",
    )
    _add_exit_options(check)
    _add_policy_options(check, default_mode=None)
    check.set_defaults(func=handlers.cmd_check)

    controls = sub.add_parser(
        "controls",
        help="print the catalog: key, CIS id, scored, what passes, and the mode the policy gives each control",
    )
    controls.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    _add_policy_options(controls, default_mode=None)
    controls.set_defaults(func=handlers.cmd_controls)

    scan = sub.add_parser("scan", help="judge the Pods and workloads of a live cluster (kubeconfig or in-cluster)")
    scan.add_argument("--kubeconfig", help="default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account")
    scan.add_argument("--context", help="kubeconfig context")
    scan.add_argument("--namespace", "-n", help="only this namespace (default: all)")
    scan.add_argument(
        "--format",
        choices=["text", "json", "sarif", "policyreport"],
        default="text",
        help="policyreport: YAML Policy Reports, one per namespace (kubectl apply -f - takes them)",
    )
    scan.add_argument(
        "--report-api",
        choices=["wgpolicyk8s.io/v1alpha2", "openreports.io/v1alpha1"],
        default="wgpolicyk8s.io/v1alpha2",
        help="the Policy Report API of --format policyreport",
    )
    _add_exit_options(scan)
    _add_policy_options(scan, default_mode=None)
    scan.set_defaults(func=handlers.cmd_scan)

    render = sub.add_parser(
        "render",
        help="print the manifests of an overlay with the caBundle filled in (GitOps; no writes to the cluster)",
    )
    render.add_argument("--overlay", required=True, choices=["warn", "enforce"], help="manifests/overlays/<overlay>")
    render.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="namespace to install into")
    render.add_argument("--certs-dir", default="certs", help="CA and serving certificate (made here when missing)")
    render.add_argument("--manifests", default="manifests", help="the kustomize tree (base/ and overlays/)")
    render.set_defaults(func=handlers.cmd_render)

    vap = sub.add_parser(
        "vap", help="print the catalog and policy as ValidatingAdmissionPolicies and bindings (no webhook needed)"
    )
    _add_policy_options(vap, default_mode=None)
    vap.set_defaults(func=handlers.cmd_vap)

    static = sub.add_parser(
        "static",
        help="write the guardrail as files kube-apiserver loads at start (1.37+): VAP, webhook, admission config",
    )
    static.add_argument("directory", help="where to write (on a control-plane node: e.g. /etc/kubernetes/admission)")
    static.add_argument(
        "--certs-dir", help="also a static webhook on the node's loopback, with the CA found here (see `certs`)"
    )
    static.add_argument("--port", type=int, default=8443, help="the node-local webhook's port")
    static.add_argument("--image", help="the node-local webhook's image (default: the published one, fully qualified)")
    static.add_argument(
        "--failure-policy",
        choices=["Ignore", "Fail"],
        default="Ignore",
        help="for the node-local webhook; Ignore keeps a node able to boot while it is not up",
    )
    _add_policy_options(static, default_mode=None)
    static.set_defaults(func=handlers.cmd_static)

    _add_shell_commands(sub)

    review = sub.add_parser(
        "review", help="send manifests to a running webhook as kube-apiserver would; print what kubectl would"
    )
    review.add_argument("files", nargs="+", help="manifest files (YAML/JSON, multi-document), - for stdin")
    review.add_argument("--server", default="https://127.0.0.1:8443", help="the webhook's base URL (https only)")
    review.add_argument("--ca", default="certs/ca.crt", help="CA to verify the webhook with (the caBundle)")
    review.add_argument("--server-name", help="name to verify, e.g. apiserver-tls-guard.apiserver-tls-guard.svc")
    review.add_argument("--dry-run", action="store_true", help="mark the request dryRun, as --dry-run=server does")
    review.set_defaults(func=handlers.cmd_review)

    # `probe`: judge running API servers from the network; its options live with it in commands/probe.py.
    from webhook.commands import probe

    probe.register(sub, _add_policy_options)
    probe.add_serve_options(serve)
    return parser


def _add_shell_commands(sub: Any) -> None:
    version = sub.add_parser("version", help="print the version (and, with --format json, the Python it runs on)")
    version.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    version.set_defaults(func=handlers.cmd_version)
    completion = sub.add_parser(
        "completion",
        help="print a shell completion script",
        description="bash: source <(apiserver-tls-guard completion bash); "
        "zsh: source <(apiserver-tls-guard completion zsh); "
        "fish: apiserver-tls-guard completion fish | source",
    )
    completion.add_argument("shell", choices=["bash", "zsh", "fish"], help="the shell to complete in")
    completion.set_defaults(func=handlers.cmd_completion)


def main(argv: Sequence[str] | None = None) -> int:
    """The entry point: exit 0 clean, 1 findings, 2 unusable input or configuration (never a traceback)."""
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
