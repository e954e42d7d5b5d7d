"""`make cluster`: the end-to-end suite's control plane, by hand. Prints a kubeconfig path; Ctrl-C stops it.

make cluster
kubectl --kubeconfig <printed path> get ns
"""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
from pathlib import Path

from tests.e2e.controlplane import KUBE_BIN, ControlPlane, missing_binaries


def main() -> int:
    missing = missing_binaries()
    if missing:
        print(f"missing in {KUBE_BIN}: {', '.join(missing)}; run `make kube`", file=sys.stderr)
        return 2
    directory = Path(tempfile.mkdtemp(prefix="apiserver-tls-guard-cluster-"))
    plane = ControlPlane(directory)
    plane.start()
    assert plane.apiserver is not None
    print(f"kube-apiserver {plane.apiserver.url} (etcd, kube-controller-manager running; logs in {directory})")
    print(f"export KUBECONFIG={plane.kubeconfig}")
    print(f"audit log: {plane.apiserver.audit_log}")
    print("Ctrl-C stops it.", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    errors = plane.stop()
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
