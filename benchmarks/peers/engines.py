"""Each admission engine of the comparison, alone on the test control plane: start it, turn its policies on and
off (waiting until the real kube-apiserver shows the change), say which processes do its work, stop it.

How each peer runs out of cluster (../shared/peers-live.md): Kyverno registers its own webhooks by
`url: https://<serverIP><path>` when given `--serverIP`; Gatekeeper writes no webhook configuration, so one is
registered here by url (the chart's own `validatingWebhookURL` form), shaped as its chart's
(charts/gatekeeper/templates/gatekeeper-validating-webhook-configuration-validatingwebhookconfiguration.yaml and
values.yaml: failurePolicy Ignore, timeoutSeconds 3).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import RunningServer, start_server, stop_server
from tests.e2e import pki
from tests.e2e.conftest import BAD_FLAGS, apiserver_pod, register, unique, unregister, wait_for
from tests.e2e.controlplane import KUBE_BIN, ControlPlane, Process, free_port

PEERS_BIN = Path(os.environ.get("PEERS_BIN", KUBE_BIN))
POLICIES = Path(__file__).resolve().parent
CRDS = PEERS_BIN / "peers-crds"
CLI = Path(sys.executable).with_name("apiserver-tls-guard")  # as tests.conftest.start_server finds it
READY_TIMEOUT = 240.0  # a cold Kyverno or Gatekeeper on two busy cores takes a while to serve


def probe_denied(plane: ControlPlane) -> bool:
    """Whether a kube-apiserver pod without --tls-cert-file/--tls-private-key-file is refused for CIS 1.2.30."""
    pod = apiserver_pod(unique("probe"), BAD_FLAGS)
    result = plane.kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(pod))
    return result.returncode != 0 and "CIS 1.2.30" in result.stderr


def _apply(plane: ControlPlane, text: str) -> None:
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=text, check=True, timeout=120)


def _delete(plane: ControlPlane, text: str) -> None:
    plane.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", stdin=text, timeout=120)


@dataclass
class Engine:
    """One engine; the base class is the baseline: no admission webhook and no policy at all."""

    name: str
    plane: ControlPlane
    workdir: Path
    processes: list[Process] = field(default_factory=list)

    @property
    def available(self) -> str | None:
        """None when it can run here, else why not."""
        return None

    def start(self) -> None:
        """Start what the engine needs; its policies stay off."""

    def apply_policies(self) -> None:
        """Make its policies active."""

    def remove_policies(self) -> None:
        """Make it see no pod at all."""

    def enable(self) -> None:
        self.apply_policies()
        wait_for(lambda: probe_denied(self.plane), READY_TIMEOUT, f"{self.name} to deny the probe pod")

    def disable(self) -> None:
        self.remove_policies()
        wait_for(lambda: not probe_denied(self.plane), READY_TIMEOUT, f"{self.name} to stop denying")

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.alive()]

    def stop(self) -> None:
        self.remove_policies()
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def check_alive(self) -> None:
        for process in self.processes:
            process.check_alive()

    def handler_seconds(self) -> tuple[float, float] | None:
        """(sum of seconds, count) of the engine's own per-review handling, from its metrics, where it has them."""
        return None


@dataclass
class Ours(Engine):
    """`apiserver-tls-guard serve --mode enforce`, registered with the enforce overlay, as the e2e suite does."""

    server: RunningServer | None = None

    def start(self) -> None:
        certs = self.workdir / "certs"
        subprocess.run([str(CLI), "certs", "--out", str(certs)], check=True, capture_output=True)
        self.server = start_server(certs, self.workdir, "--mode", "enforce")

    def apply_policies(self) -> None:
        assert self.server is not None
        register(self.plane, self.server, "enforce")

    def remove_policies(self) -> None:
        unregister(self.plane)

    def pids(self) -> list[int]:
        return [self.server.process.pid] if self.server and self.server.process.poll() is None else []

    def stop(self) -> None:
        self.remove_policies()
        if self.server:
            stop_server(self.server)
            self.server = None

    def check_alive(self) -> None:
        if self.server and self.server.process.poll() is not None:
            raise RuntimeError(f"apiserver-tls-guard exited: {self.server.log_text()[-2000:]}")

    def handler_seconds(self) -> tuple[float, float] | None:
        """Its own tlsguard_admission_duration_seconds (webhook/runtime/metrics.py): reading the request
        to having the answer, so what kube-apiserver's webhook metric adds to it is TLS, HTTP and the queue."""
        if self.server is None:
            return None
        client = self.server.client()
        try:
            text = client.get("/metrics").body.decode()
        finally:
            client.close()
        found = {}
        for line in text.splitlines():
            for suffix in ("_sum", "_count"):
                if line.startswith(f"tlsguard_admission_duration_seconds{suffix} "):
                    found[suffix] = float(line.split()[1])
        return (found["_sum"], found["_count"]) if len(found) == 2 else None


def vap_manifest() -> str:
    """What our own `apiserver-tls-guard vap --mode enforce` emits (the snapshot in vap.yaml is for reading)."""
    return subprocess.run([str(CLI), "vap", "--mode", "enforce"], check=True, capture_output=True, text=True).stdout


@dataclass
class Vap(Engine):
    """The ValidatingAdmissionPolicies our `vap` command emits: in kube-apiserver itself, no process of its own."""

    manifest: str = ""

    def start(self) -> None:
        self.manifest = vap_manifest()

    def apply_policies(self) -> None:
        _apply(self.plane, self.manifest)

    def remove_policies(self) -> None:
        if self.manifest:
            _delete(self.plane, self.manifest)


def handwritten_vap() -> str:
    """The CEL of kyverno-validatingpolicy.yaml as plain ValidatingAdmissionPolicies with Deny bindings: the
    policy a VAP user would write by hand, so the same expressions are judged by kube-apiserver itself. Bound with
    Deny and Audit, as our own `vap` binds its enforce policy: a denial names only the first failed validation
    (k8s.io/apiserver validating/dispatcher.go `deniedDecisions[0]`); the Audit action's validation_failure
    annotation names every one."""
    documents = []
    for vpol in yaml.safe_load_all((POLICIES / "kyverno-validatingpolicy.yaml").read_text()):
        name = f"handwritten-{vpol['metadata']['name']}"
        spec = {k: vpol["spec"][k] for k in ("matchConstraints", "matchConditions", "variables", "validations")}
        group = "admissionregistration.k8s.io/v1"
        binding = {"policyName": name, "validationActions": ["Deny", "Audit"]}
        documents += [
            {"apiVersion": group, "kind": "ValidatingAdmissionPolicy", "metadata": {"name": name},
             "spec": {**spec, "failurePolicy": "Fail"}},
            {"apiVersion": group, "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": name},
             "spec": binding},
        ]  # fmt: skip
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": documents})


@dataclass
class HandwrittenVap(Vap):
    """kyverno-validatingpolicy.yaml's CEL as plain ValidatingAdmissionPolicies (see handwritten_vap)."""

    def start(self) -> None:
        self.manifest = handwritten_vap()


KYVERNO_NS = "kyverno"
# The chart's default resourceFilters (charts/kyverno/values.yaml config.resourceFilters) without its
# `[*/*,kube-system,*]`: Kyverno skips kube-system by default, twice (here and in the webhooks' namespaceSelector),
# so a Kyverno user who polices kube-apiserver pods must take kube-system out of both, as done here.
KYVERNO_FILTERS = (
    "[Event,*,*][*/*,kyverno,*][*/*,kube-public,*][*/*,kube-node-lease,*][Node,*,*][Node/*,*,*]"
    "[APIService,*,*][APIService/*,*,*][TokenReview,*,*][SubjectAccessReview,*,*][SelfSubjectAccessReview,*,*]"
    "[Binding,*,*][Pod/binding,*,*][ReplicaSet,*,*][ReplicaSet/*,*,*][EphemeralReport,*,*]"
    "[ClusterEphemeralReport,*,*]"
)
KYVERNO_WEBHOOKS = json.dumps(
    [
        {
            "namespaceSelector": {
                "matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [KYVERNO_NS]}
                ]
            }
        }
    ]
)


@dataclass
class Kyverno(Engine):
    """Kyverno's admission controller (cmd/kyverno) with one of the two policy files of benchmarks/peers."""

    policy_file: str = "kyverno-validatingpolicy.yaml"
    shared: dict[str, Process] = field(default_factory=dict)  # one process for both policy kinds

    @property
    def available(self) -> str | None:
        if not (PEERS_BIN / "kyverno").is_file() or not (CRDS / "kyverno").is_dir():
            return f"kyverno is not built in {PEERS_BIN} (`make peers`)"
        return None

    def _policies(self) -> str:
        return (POLICIES / self.policy_file).read_text()

    def start(self) -> None:
        if "kyverno" in self.shared and self.shared["kyverno"].alive():
            self.processes = [self.shared["kyverno"]]
            return
        plane = self.plane
        for crd in sorted((CRDS / "kyverno").glob("*.yaml")):
            _apply(plane, crd.read_text())
        plane.kubectl("create", "namespace", KYVERNO_NS)
        configs = {"kyverno": {"resourceFilters": KYVERNO_FILTERS, "webhooks": KYVERNO_WEBHOOKS}, "kyverno-metrics": {}}
        for name, data in configs.items():
            config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": KYVERNO_NS}}
            _apply(plane, json.dumps({**config, "data": data}))
        port = free_port()
        env = {
            "KYVERNO_NAMESPACE": KYVERNO_NS,
            "KYVERNO_SERVICEACCOUNT_NAME": "kyverno-admission-controller",
            "KYVERNO_DEPLOYMENT": "kyverno-admission-controller",
            "KYVERNO_POD_NAME": "kyverno-admission-controller-local",
            "INIT_CONFIG": "kyverno",
            "METRICS_CONFIG": "kyverno-metrics",
        }
        # The command line of Kyverno's DEVELOPMENT.md ("Debugging local code"), on free ports.
        argv = [
            "/usr/bin/env",
            *(f"{k}={v}" for k, v in env.items()),
            str(PEERS_BIN / "kyverno"),
            f"--kubeconfig={plane.kubeconfig}",
            f"--serverIP=127.0.0.1:{port}",
            f"--webhookServerPort={port}",
            f"--metricsPort={free_port()}",
            "--backgroundServiceAccountName=system:serviceaccount:kyverno:kyverno-background-controller",
            "--reportsServiceAccountName=system:serviceaccount:kyverno:kyverno-reports-controller",
            "--caSecretName=kyverno-svc.kyverno.svc.kyverno-tls-ca",
            "--tlsSecretName=kyverno-svc.kyverno.svc.kyverno-tls-pair",
            "--disableMetrics=true",
            "-v=1",
        ]
        process = Process("kyverno", argv, self.workdir / "kyverno.log")
        process.start()
        self.shared["kyverno"] = process
        self.processes = [process]

    def apply_policies(self) -> None:
        _apply(self.plane, self._policies())

    def remove_policies(self) -> None:
        _delete(self.plane, self._policies())

    def stop(self) -> None:
        self.remove_policies()
        self.processes.clear()  # the shared process is stopped by stop_shared

    def stop_shared(self) -> None:
        process = self.shared.pop("kyverno", None)
        if process:
            process.stop()
            # Its webhook configurations outlive it (pkg/controllers/webhook labels each
            # webhook.kyverno.io/managed-by=kyverno) and would send the next engine's requests, and a next Kyverno's
            # policies, to a closed port.
            for kind in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
                self.plane.kubectl("delete", kind, "-l", "webhook.kyverno.io/managed-by=kyverno", "--ignore-not-found")


GATEKEEPER_NS = "gatekeeper-system"
GATEKEEPER_WEBHOOK = "gatekeeper-validating-webhook-configuration"
# charts/gatekeeper/values.yaml validatingWebhookSubResources (v3.23.1): every subresource but status.
GATEKEEPER_SUBRESOURCES = [
    *(
        f"pods/{s}"
        for s in (
            "ephemeralcontainers",
            "exec",
            "log",
            "eviction",
            "portforward",
            "proxy",
            "attach",
            "binding",
            "resize",
        )
    ),
    *(f"{r}/scale" for r in ("deployments", "replicasets", "statefulsets", "replicationcontrollers")),
    "services/proxy",
    "nodes/proxy",
    "services/status",
]


@dataclass
class Gatekeeper(Engine):
    """Gatekeeper's webhook (`--operation=webhook`) with the ConstraintTemplate and Constraints of gatekeeper.yaml."""

    port: int = 0
    ca: pki.ClusterCA | None = None

    @property
    def available(self) -> str | None:
        if not (PEERS_BIN / "gatekeeper").is_file() or not (CRDS / "gatekeeper").is_dir():
            return f"gatekeeper is not built in {PEERS_BIN} (`make peers`)"
        return None

    def _documents(self) -> list[dict[str, Any]]:
        return [d for d in yaml.safe_load_all((POLICIES / "gatekeeper.yaml").read_text()) if d]

    def start(self) -> None:
        plane = self.plane
        for crd in sorted((CRDS / "gatekeeper").glob("*.yaml")):
            _apply(plane, crd.read_text())
        plane.kubectl("create", "namespace", GATEKEEPER_NS)
        plane.kubectl("label", "namespace", GATEKEEPER_NS, "admission.gatekeeper.sh/ignore=no-self-managing")
        # Its status objects are owned by its own Pod (POD_NAME), so that Pod must exist; no kubelet runs it.
        own = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gatekeeper-local", "namespace": GATEKEEPER_NS}}
        own["spec"] = {"containers": [{"name": "manager", "image": "openpolicyagent/gatekeeper:v3.23.1"}]}
        plane.kubectl("apply", "-f", "-", stdin=json.dumps(own), check=True)
        certs = self.workdir / "gatekeeper-certs"
        certs.mkdir(exist_ok=True)
        self.ca = pki.ClusterCA()
        cert, key = self.ca.serving()
        pki.write(certs / "tls.crt", cert)
        pki.write(certs / "tls.key", key, private=True)
        pki.write(certs / "ca.crt", self.ca.cert_pem)
        self.port = free_port()
        env = {"POD_NAMESPACE": GATEKEEPER_NS, "POD_NAME": "gatekeeper-local", "KUBECONFIG": str(plane.kubeconfig)}
        argv = [
            "/usr/bin/env",
            *(f"{k}={v}" for k, v in env.items()),
            str(PEERS_BIN / "gatekeeper"),
            f"--port={self.port}",
            f"--cert-dir={certs}",
            "--disable-cert-rotation",
            # The chart's controller-manager operations (templates/gatekeeper-controller-manager-deployment.yaml):
            # `webhook` serves admission, `generate` makes each ConstraintTemplate's Constraint CRD
            # (pkg/controller/constrainttemplate/constrainttemplate_controller.go generateCRD returns at once
            # without it, so a webhook-only Gatekeeper never serves a Constraint: "no matches for kind").
            # `status` writes the template's `status.created` that start() waits for (the chart runs it in the
            # audit pod). `mutation-webhook` is left out: no mutating webhook is registered here.
            "--operation=webhook",
            "--operation=generate",
            "--operation=status",
            f"--exempt-namespace={GATEKEEPER_NS}",
            f"--metrics-addr=127.0.0.1:{free_port()}",
            f"--health-addr=127.0.0.1:{free_port()}",
            f"--prometheus-port={free_port()}",  # its metrics exporter's default 8888 may be taken
            "--log-level=WARNING",
        ]
        process = Process("gatekeeper", argv, self.workdir / "gatekeeper.log")
        process.start()
        self.processes = [process]
        # The template first; its Constraint kind exists only once Gatekeeper has made the CRD from it.
        template, *constraints = self._documents()
        _apply(plane, json.dumps(template))
        kind = template["spec"]["crd"]["spec"]["names"]["kind"].lower()
        name = template["metadata"]["name"]

        def created() -> bool:
            """The template compiled and its CRD made (status.created, set by the status operation from the pods'
            ConstraintTemplatePodStatus), and kube-apiserver serving that CRD (Established)."""
            process.check_alive()
            got = plane.kubectl("get", f"constrainttemplate/{name}", "-o", "jsonpath={.status.created}")
            if got.stdout.strip() != "true":
                return False
            crd = f"crd/{kind}.constraints.gatekeeper.sh"
            established = plane.kubectl("wait", "--for=condition=Established", "--timeout=5s", crd)
            return established.returncode == 0

        wait_for(created, READY_TIMEOUT, "Gatekeeper to compile the template and make the Constraint CRD")
        manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": constraints})
        wait_for(lambda: self._try_apply(manifest), 60, "the Constraints to be accepted")

    def _try_apply(self, manifest: str) -> bool:
        return self.plane.kubectl("apply", "-f", "-", stdin=manifest).returncode == 0

    def webhook_configuration(self) -> dict[str, Any]:
        assert self.ca is not None
        bundle = base64.b64encode(self.ca.cert_pem).decode()
        return {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": GATEKEEPER_WEBHOOK},
            "webhooks": [
                {
                    "name": "validation.gatekeeper.sh",
                    "admissionReviewVersions": ["v1", "v1beta1"],
                    "clientConfig": {"url": f"https://127.0.0.1:{self.port}/v1/admit", "caBundle": bundle},
                    "failurePolicy": "Ignore",
                    "matchPolicy": "Exact",
                    "namespaceSelector": {
                        "matchExpressions": [
                            {"key": "admission.gatekeeper.sh/ignore", "operator": "DoesNotExist"},
                            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [GATEKEEPER_NS]},
                        ]
                    },
                    "rules": [
                        {
                            "apiGroups": ["*"],
                            "apiVersions": ["*"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["*", *GATEKEEPER_SUBRESOURCES],
                            "scope": "*",
                        }
                    ],
                    "sideEffects": "None",
                    "timeoutSeconds": 3,
                }
            ],
        }

    def apply_policies(self) -> None:
        if self.ca is not None:
            _apply(self.plane, json.dumps(self.webhook_configuration()))

    def remove_policies(self) -> None:
        self.plane.kubectl("delete", "validatingwebhookconfiguration", GATEKEEPER_WEBHOOK, "--ignore-not-found")


EngineFactory = Callable[[ControlPlane, Path], Engine]


def make_engines(plane: ControlPlane, workdir: Path) -> list[Engine]:
    """baseline, ours, VAP, Kyverno (ValidatingPolicy, then ClusterPolicy), Gatekeeper: each alone in turn."""
    shared: dict[str, Process] = {}
    return [
        Engine("baseline", plane, workdir),
        Ours("apiserver-tls-guard", plane, workdir),
        Vap("vap", plane, workdir),
        HandwrittenVap("vap-handwritten", plane, workdir),
        Kyverno("kyverno", plane, workdir, shared=shared),
        Kyverno("kyverno-clusterpolicy", plane, workdir, shared=shared, policy_file="kyverno-clusterpolicy.yaml"),
        Gatekeeper("gatekeeper", plane, workdir),
    ]


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="apiserver-tls-guard-peers-"))
