"""`make node`: the node suite's node, by hand. Prints a kubeconfig for the host; Ctrl-C stops it.

make node
kubectl --kubeconfig <printed path> get pods -A
"""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
from pathlib import Path

from tests.e2e.node.fixture import node_images, node_unavailable
from tests.e2e.node.node import NODE_NAME, Node


def main() -> int:
    reason = node_unavailable()
    if reason:
        print(f"cannot start the node: {reason}", file=sys.stderr)
        return 2
    directory = Path(tempfile.mkdtemp(prefix="apiserver-tls-guard-node-"))
    one = Node(directory, node_images())
    one.start()
    print(f"node {NODE_NAME} Ready in {one.timings['up']:.1f} s; logs in {directory}")
    print(f"export KUBECONFIG={one.kubeconfig}")
    print(f"static pods: {one.static_pods}; audit log: {one.audit_log}")
    print("Ctrl-C stops it.", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    errors = one.stop()
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
