"""The engine alone: microseconds per kube-apiserver pod as pods grow (containers, flags on the command line).

The baseline in the same run is `json.loads` of the same pod: work the webhook must do for every review anyway,
so `engine / json` says what judging costs next to merely reading the object. The cost per flag shows whether
judging grows linearly with the command line.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from webhook.core.engine import evaluate
from webhook.core.policy import Mode, Policy

REAL_FLAGS = [
    "--advertise-address=10.0.0.10",
    "--allow-privileged=true",
    "--authorization-mode=Node,RBAC",
    "--client-ca-file=/etc/kubernetes/pki/ca.crt",
    "--enable-admission-plugins=NodeRestriction",
    "--etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt",
    "--etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt",
    "--etcd-keyfile=/etc/kubernetes/pki/apiserver-etcd-client.key",
    "--etcd-servers=https://127.0.0.1:2379",
    "--kubelet-client-certificate=/etc/kubernetes/pki/apiserver-kubelet-client.crt",
    "--kubelet-client-key=/etc/kubernetes/pki/apiserver-kubelet-client.key",
    "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
    "--proxy-client-cert-file=/etc/kubernetes/pki/front-proxy-client.crt",
    "--secure-port=6443",
    "--service-account-key-file=/etc/kubernetes/pki/sa.pub",
    "--service-cluster-ip-range=10.96.0.0/12",
    "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
    "--tls-private-key-file=/etc/kubernetes/pki/apiserver.key",
]


def pod(containers: int, flags: int) -> dict[str, Any]:
    argv = (REAL_FLAGS * (flags // len(REAL_FLAGS) + 1))[:flags]
    sidecars = [
        {"name": f"sidecar-{i}", "image": "registry.k8s.io/pause:3.9", "command": ["/pause", f"--id={i}"]}
        for i in range(containers - 1)
    ]
    apiserver = {
        "name": "kube-apiserver",
        "image": "registry.k8s.io/kube-apiserver:v1.30.2",
        "command": ["kube-apiserver", *argv],
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kube-apiserver-cp-1", "namespace": "kube-system"},
        "spec": {"containers": [*sidecars, apiserver]},
    }


def per_call(fn: Any, seconds: float = 0.4) -> float:
    """Microseconds per call: the best of 5 rounds, each long enough to be measured."""
    calls = 1
    while True:
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - started
        if elapsed > seconds / 5:
            break
        calls *= 2
    best = elapsed
    for _ in range(4):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, time.perf_counter() - started)
    return best / calls * 1e6


def main() -> int:
    policy = Policy(mode=Mode.ENFORCE)
    print(f"{'containers':>10} {'flags':>6} {'engine µs':>10} {'json µs':>8} {'engine/json':>11} {'µs/flag':>8}")
    rows = []
    for containers, flags in [(1, 10), (1, 18), (1, 100), (1, 1000), (10, 18), (100, 18), (100, 1000)]:
        obj = pod(containers, flags)
        text = json.dumps(obj)
        engine = per_call(lambda obj=obj: evaluate(obj, policy))
        decode = per_call(lambda text=text: json.loads(text))
        rows.append((containers, flags, engine))
        ratio = engine / decode
        print(f"{containers:>10} {flags:>6} {engine:>10.1f} {decode:>8.1f} {ratio:>10.1f}x {engine / flags:>8.2f}")
    base = next(e for c, f, e in rows if (c, f) == (1, 100))
    big = next(e for c, f, e in rows if (c, f) == (1, 1000))
    print(f"\n10x the flags (100 -> 1000) costs {big / base:.1f}x the time (linear: about 10x)")
    typical = next(e for c, f, e in rows if (c, f) == (1, 18))
    print(f"a kubeadm-sized pod (1 container, 18 flags): {typical:.1f} µs  (target <= 20 µs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
