"""What the Helm chart's hooks run, in our own image (`python -m webhook.commands.lifecycle …`): no kubectl image to
pull, only the API calls each needs, as the hook's own ServiceAccount.

- `uninstall` (pre-delete hook): removes the ValidatingWebhookConfiguration first, so kube-apiserver stops calling
  a webhook whose pods are about to go (helm deletes the webhook configuration last; with failurePolicy Fail,
  kube-apiserver pods could not be created in between); then, unless told to keep them, the Secret with the
  self-managed CA and the Policy Reports the audit wrote. Whatever is already gone is fine: a hook may run twice.
  The webhook's own pods make their Secret again within seconds when it is missing (`--cluster-certs`), and
  helm deletes the Deployment only after this hook: on the real node the Secret was back 4 s after the hook had
  deleted it. So with `--stop-deployment` the hook first scales the webhook to 0 and waits until its last pod
  has exited, and only then deletes the Secrets.
- `selftest` (`helm test`): sends a kube-apiserver pod without TLS flags to kube-apiserver as a dry run and checks
  that our webhook answered it (a denial in enforce mode, a warning in warn mode).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from webhook.kube import KubeConfigError, api_client
from webhook.offline.policyreport import MANAGED_BY, REPORT_APIS

WEBHOOK_CONFIG = "apiserver-tls-guard"


def _gone(err: ApiException) -> bool:
    return bool(err.status == 404)


STOP_TIMEOUT = 90.0  # the pods' terminationGracePeriodSeconds (30) and more, inside the Job's 120 s deadline


def stop(api: client.ApiClient, namespace: str, deployment: str, timeout: float = STOP_TIMEOUT) -> bool:
    """Scale `deployment` to 0 and wait until none of its pods is left, terminating ones included (a terminating
    webhook still runs its certificate loop through preStop and drain). False if it is gone already or the pods
    outlived `timeout`; the caller deletes the Secrets anyway, as before."""
    apps = client.AppsV1Api(api)
    try:
        found = apps.read_namespaced_deployment(deployment, namespace)
        apps.patch_namespaced_deployment_scale(deployment, namespace, {"spec": {"replicas": 0}})
    except ApiException as err:
        if _gone(err):
            return False
        raise
    labels = (found.spec.selector.match_labels or {}) if found.spec and found.spec.selector else {}
    selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while core.list_namespaced_pod(namespace, label_selector=selector).items:
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


def uninstall(
    api: client.ApiClient, namespace: str, secrets: list[str], reports: bool, deployment: str | None = None
) -> list[str]:
    """Delete, in this order, the webhook configuration, (with `deployment`) the webhook's pods by scaling it to 0,
    the Secrets named, our Policy Reports (if asked). Returns what was done; raises ApiException on anything but
    "not found"."""
    done = []

    def delete(label: str, call: Any, *args: str) -> None:
        try:
            call(*args)
            done.append(label)
        except ApiException as err:
            if not _gone(err):
                raise

    admission = client.AdmissionregistrationV1Api(api)
    delete(f"validatingwebhookconfiguration/{WEBHOOK_CONFIG}", admission.delete_validating_webhook_configuration,
           WEBHOOK_CONFIG)  # fmt: skip
    if deployment and secrets:
        stopped = stop(api, namespace, deployment)
        done.append(f"deployment/{deployment} scaled to 0" + ("" if stopped else " (pods still running)"))
    for secret in secrets:
        delete(f"secret/{secret}", client.CoreV1Api(api).delete_namespaced_secret, secret, namespace)
    if reports:
        custom = client.CustomObjectsApi(api)
        selector = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
        for api_version, (_, plural) in REPORT_APIS.items():
            group, version = api_version.split("/")
            try:
                found = custom.list_cluster_custom_object(group, version, plural, label_selector=selector)
            except ApiException as err:
                if _gone(err):  # the CRD is not installed: nothing of ours to remove
                    continue
                raise
            for item in found.get("items", []) if isinstance(found, dict) else []:
                meta = item["metadata"]
                delete(f"{plural}.{group}/{meta['namespace']}/{meta['name']}", custom.delete_namespaced_custom_object,
                       group, version, meta["namespace"], plural, meta["name"])  # fmt: skip
    return done


def _bad_apiserver(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "apiserver-tls-guard-selftest", "namespace": namespace},
        "spec": {
            "containers": [
                {
                    "name": "kube-apiserver",
                    "image": "registry.k8s.io/kube-apiserver:v1.37.2",
                    "command": ["kube-apiserver", "--authorization-mode=AlwaysAllow"],
                }
            ]
        },
    }


def selftest(api: client.ApiClient, namespace: str) -> tuple[bool, str]:
    """(answered by us, what kube-apiserver said) for a dry-run create of a kube-apiserver pod without TLS flags."""
    body = _bad_apiserver(namespace)
    try:
        _, _, headers = client.CoreV1Api(api).create_namespaced_pod_with_http_info(
            namespace,
            body,  # type: ignore[arg-type]  # the client sends a dict as it is
            dry_run="All",
        )
    except ApiException as err:
        text = str(err.body or err.reason)
        return "apiserver-tls-guard" in text and "denied the request" in text, text
    warnings = " ".join(v for k, v in (headers or {}).items() if k.lower() == "warning")
    return "CIS " in warnings, warnings or "admitted with no warning"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubeconfig", help="default: the pod's ServiceAccount")
    sub = parser.add_subparsers(dest="command", required=True)
    down = sub.add_parser("uninstall", help="remove the webhook configuration first, then what the webhook made")
    down.add_argument("--namespace", required=True, help="the release's namespace")
    down.add_argument("--secret", action="append", default=[], help="also delete this Secret (repeatable)")
    down.add_argument("--policy-reports", action="store_true", help="also delete the Policy Reports we wrote")
    down.add_argument("--stop-deployment", metavar="NAME",
                      help="scale this Deployment (the webhook's) to 0 and wait for its pods before deleting Secrets, "
                      "which its pods would otherwise make again")  # fmt: skip
    test = sub.add_parser("selftest", help="send a known-bad kube-apiserver pod as a dry run; expect our answer")
    test.add_argument("--namespace", required=True, help="where to send it (never the release's own namespace)")
    test.add_argument("--mode", required=True, help="the chart's mode: audit answers nothing a client can see")
    args = parser.parse_args(argv)
    try:
        api = api_client(args.kubeconfig, None)
    except KubeConfigError as err:
        print(f"apiserver-tls-guard: {err}", file=sys.stderr)
        return 2
    try:
        if args.command == "uninstall":
            for what in uninstall(api, args.namespace, args.secret, args.policy_reports, args.stop_deployment):
                print(what if " scaled " in what else f"deleted {what}")
            return 0
        answered, said = selftest(api, args.namespace)
    except ApiException as err:
        print(f"apiserver-tls-guard: HTTP {err.status} {err.reason}: {err.body}", file=sys.stderr)
        return 1
    if args.mode.lower() == "audit":
        print(f"audit mode: findings go to audit annotations only, nothing a client sees ({said})")
        return 0
    print(("answered by apiserver-tls-guard: " if answered else "NOT answered by apiserver-tls-guard: ") + said)
    return 0 if answered else 1


if __name__ == "__main__":
    sys.exit(main())
