"""The probe's report: findings as `check` reports them (webhook/offline/report.py: the same JSON findings and
SARIF), with what each endpoint showed and every control's state, passes and the unobservable included.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from webhook.core.catalog import Catalog
from webhook.core.engine import Finding, Verdict
from webhook.core.policy import Mode, Policy
from webhook.core.workloads import Subject
from webhook.offline import report
from webhook.offline.report import Judged
from webhook.probe import judge
from webhook.probe.judge import FAIL, PASS, Outcome
from webhook.probe.observe import Observation, key_type

KIND = "Endpoint"
# Findings are about what an endpoint serves: kube-apiserver itself, or a front end that terminates TLS for it.
CONTAINER = "endpoint"
WHERE = (
    "edit every kube-apiserver behind this endpoint (kubeadm: /etc/kubernetes/manifests/kube-apiserver.yaml), or "
    "the TLS settings of the load balancer or managed front end that terminates TLS for it,"
)


@dataclass(frozen=True)
class Probed:
    """One endpoint: what it showed and each control's state."""

    observation: Observation
    outcomes: tuple[Outcome, ...]


def findings(probed: Probed, policy: Policy, catalog: Catalog, benchmark: str) -> tuple[Finding, ...]:
    """A Finding (the engine's type) for every failing control whose mode is not off."""
    out = []
    for outcome in probed.outcomes:
        control = catalog.control(outcome.key)
        mode = policy.mode_for(control)
        if outcome.state != FAIL or mode is Mode.OFF:
            continue
        out.append(
            Finding(
                key=control.key,
                cis_id=control.cis_id(benchmark),
                benchmark=benchmark,
                container=CONTAINER,
                detail=outcome.detail,
                consequence=control.consequence,
                fix=control.fix,
                where=WHERE,
                mode=mode,
            )
        )
    return tuple(out)


def as_judged(results: Sequence[Probed], policy: Policy, catalog: Catalog, benchmark: str) -> list[Judged]:
    """Each endpoint as the offline reports' unit, so their JSON and SARIF renderers apply unchanged."""
    return [
        Judged(
            source=p.observation.endpoint.url,
            document=1,
            verdict=Verdict(
                Subject(KIND, "", p.observation.endpoint.url), (CONTAINER,), findings(p, policy, catalog, benchmark)
            ),
        )
        for p in results
    ]


def _label(catalog: Catalog, key: str, benchmark: str) -> str:
    cis = catalog.control(key).cis_id(benchmark)
    return f"CIS {cis} {key}" if cis else key


def _certificate_line(obs: Observation) -> str:
    leaf = obs.handshake.leaf
    public = leaf.public_key()
    size = getattr(public, "key_size", None) or getattr(getattr(public, "curve", None), "key_size", "?")
    return (
        f"certificate {leaf.subject.rfc4514_string() or '(empty subject)'}, issued by "
        f"{leaf.issuer.rfc4514_string() or '(empty)'}, {key_type(obs.handshake)} {size}, "
        f"valid until {leaf.not_valid_after_utc:%Y-%m-%d}"
    )


def text(results: Sequence[Probed], errors: Sequence[str], policy: Policy, catalog: Catalog, benchmark: str) -> str:
    """For people: per endpoint what it showed and each control's state; the unobservable once; a summary."""
    lines: list[str] = []
    for p in results:
        obs = p.observation
        hs = obs.handshake
        lines.append(f"{obs.endpoint.url}: endpoint posture, {hs.protocol} {hs.cipher}, probed in {obs.seconds:.2f} s")
        lines.append(f"  {_certificate_line(obs)}")
        for outcome in p.outcomes:
            mode = policy.mode_for(catalog.control(outcome.key))
            state = outcome.state
            tag = mode.value.upper() if state == FAIL else ("ok" if state == PASS else "n/a")
            if state == FAIL and mode is Mode.OFF:
                tag = "off"
            lines.append(f"  {tag:7} {_label(catalog, outcome.key, benchmark)}: {outcome.detail}")
    hidden = judge.unobservable(catalog)
    if results and hidden:
        lines.append("Not observable from the network (judge these with `check` on the manifest or `check --node`):")
        for control, reason in hidden:
            lines.append(f"  n/a     {_label(catalog, control.key, benchmark)}: {reason}")
    judged = as_judged(results, policy, catalog, benchmark)
    count = len(report.failing(judged))
    lines.append(
        f"{len(results)} endpoint{'s' if len(results) != 1 else ''} probed"
        + (f", {len(errors)} not reachable" if errors else "")
        + f", {count} finding{'s' if count != 1 else ''} (CIS Kubernetes Benchmark v{benchmark})"
    )
    return "\n".join(lines)


def _observed(obs: Observation) -> dict[str, Any]:
    hs = obs.handshake
    leaf = hs.leaf
    dns, ips = judge.sans(leaf)
    return {
        "protocol": hs.protocol,
        "cipher": hs.cipher,
        "seconds": round(obs.seconds, 3),
        "certificate": {
            "subject": leaf.subject.rfc4514_string(),
            "issuer": leaf.issuer.rfc4514_string(),
            "notBefore": leaf.not_valid_before_utc.isoformat(),
            "notAfter": leaf.not_valid_after_utc.isoformat(),
            "dnsNames": dns,
            "ipAddresses": ips,
            "keyType": key_type(hs),
            "chainLength": len(hs.chain),
        },
        "clientCertificateRequested": hs.requested_client_cert,
        "clientCAs": [n.text for n in hs.client_ca_names],
        "tls12SuitesOffered": len(obs.suites.offered),
        "tls12SuitesAccepted": list(obs.suites.accepted),
        "olderVersionsAccepted": {v: ok for v, ok in obs.old_versions.items()},
        "anonymous": {
            a.path: {"status": a.status, "message": a.message, "attempts": a.attempts} for a in obs.anonymous.values()
        },
    }


def as_json(results: Sequence[Probed], errors: Sequence[str], policy: Policy, catalog: Catalog, benchmark: str) -> str:
    """`check`'s JSON (objects, findings with `control` the catalog key) plus each endpoint's observations and
    states, the controls the network cannot show, and the endpoints that could not be probed."""
    data = json.loads(report.as_json(as_judged(results, policy, catalog, benchmark)))
    data.pop("apiservers", None)  # endpoints are not known to be kube-apiservers: a front end may answer
    data["endpoints"] = [
        {
            "url": p.observation.endpoint.url,
            "serverName": p.observation.endpoint.server_name,
            "observed": _observed(p.observation),
            "controls": [
                {
                    "control": o.key,
                    "cisId": catalog.control(o.key).cis_id(benchmark),
                    "state": o.state,
                    "detail": o.detail,
                }
                for o in p.outcomes
            ],
        }
        for p in results
    ]
    data["notObservable"] = [
        {"control": c.key, "cisId": c.cis_id(benchmark), "reason": r} for c, r in judge.unobservable(catalog)
    ]
    data["errors"] = list(errors)
    data["benchmark"] = benchmark
    return json.dumps(data, indent=2)


def as_sarif(results: Sequence[Probed], policy: Policy, catalog: Catalog, benchmark: str) -> str:
    return report.as_sarif(as_judged(results, policy, catalog, benchmark), catalog, benchmark)
