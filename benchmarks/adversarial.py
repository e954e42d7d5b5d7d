"""Adversarial command lines: each one judged in at most 50 ms, and a normal review sent beside them answered within
100 ms (issue 20.1).

Each case is a kube-apiserver pod whose command line is built to make a reader work: wrappers after wrappers,
substitutions inside substitutions, huge argv, huge scripts, functions calling functions, variables that double.
Printed per case: the engine's time (best of 3, CPU time of this thread and wall time) and the verdict's first
"could not read" reason, if any; then, against a running `serve` over HTTPS (benchmarks/e2e.py's server), each
case's answer time and the answer time of a normal kubeadm review sent on a second connection while the
adversarial one is being judged.
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from benchmarks.e2e import NAME, prepare, start
from webhook.commands.review import review_for
from webhook.core.engine import evaluate
from webhook.core.policy import Policy

GOOD = [
    "--tls-cert-file=/pki/apiserver.crt",
    "--tls-private-key-file=/pki/apiserver.key",
    "--client-ca-file=/pki/ca.crt",
]
FLAGS = " ".join(GOOD)
ENGINE_LIMIT_MS = 50.0
BESIDE_LIMIT_MS = 100.0


def _pod(container: dict[str, Any], image: str = "registry.k8s.io/kube-apiserver:v1.30.0") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kube-apiserver-cp-1", "namespace": "kube-system"},
        "spec": {"containers": [{"name": "kube-apiserver", "image": image, **container}]},
    }


def _sh(script: str) -> dict[str, Any]:
    return _pod({"command": ["/bin/sh", "-c", script]}, "quay.io/example/tools:1")


def _doubling_env(steps: int) -> list[dict[str, str]]:
    env = [{"name": "V0", "value": "x" * 64}]
    env += [{"name": f"V{i}", "value": f"$(V{i - 1})$(V{i - 1})"} for i in range(1, steps)]
    return env


CASES: dict[str, Callable[[], dict[str, Any]]] = {
    "env x60": lambda: _pod({"command": ["env"] * 60}),
    "env x60 then kube-apiserver": lambda: _pod({"command": ["env"] * 60 + ["kube-apiserver", *GOOD]}),
    "env x4000": lambda: _pod({"command": ["env"] * 4000}),
    "timeout 1 x2000 (4000 items)": lambda: _pod({"command": ["timeout", "1"] * 2000 + ["kube-apiserver", *GOOD]}),
    "env -u X x1300": lambda: _pod({"command": ["env", "-u", "X"] * 1300 + ["kube-apiserver", *GOOD]}),
    "sh sh sh ... x4000": lambda: _pod({"command": ["go-runner", *["sh"] * 4000]}),
    "argv 4000 flags": lambda: _pod({"command": ["kube-apiserver", *GOOD, *["--v=2"] * 3990]}),
    "argv 20000 items": lambda: _pod({"command": ["kube-apiserver", *["--v=2"] * 20000]}),
    "one 1 MB item": lambda: _pod({"command": ["kube-apiserver", *GOOD, "--authorization-mode=" + "Node," * 200_000]}),
    '600 nested "$(': lambda: _sh('"$(' * 600 + "x" + ')"' * 600 + f"; exec kube-apiserver {FLAGS}"),
    "30 nested $( )": lambda: _sh("echo $(" * 30 + "kube-apiserver --v=2" + ")" * 30 + f"; kube-apiserver {FLAGS}"),
    "600 nested ${a:-": lambda: _sh("exec kube-apiserver " + "${a:-" * 600 + "x" + "}" * 600),
    "sh -c 'exec \"$@\"' nested x10": lambda: _pod(
        {"command": ["sh", "-c", 'exec "$@"', "x"] * 10 + ["kube-apiserver", *GOOD]}, "quay.io/example/tools:1"
    ),
    "script 64 KB of echo": lambda: _sh("echo x; " * 8000 + f"exec kube-apiserver {FLAGS}"),
    "script 200 KB": lambda: _sh("echo x; " * 25000 + f"exec kube-apiserver {FLAGS}"),
    "64 KB of kube-apiserver runs": lambda: _sh(f"kube-apiserver {FLAGS}; " * 600),
    "3000 assignments": lambda: _sh(
        "A0=x; " + "".join(f"A{i}=$A{i - 1}; " for i in range(1, 3000)) + "exec kube-apiserver"
    ),
    "doubling variable": lambda: _sh("A=xxxxxxxx; " + "A=$A$A; " * 40 + "exec kube-apiserver $A"),
    "doubling pod env": lambda: _pod({"command": ["kube-apiserver", "--v=$(V40)"], "env": _doubling_env(41)}),
    "40 functions deep": lambda: _sh(
        'f0() { exec kube-apiserver "$@"; }; '
        + "".join(f'f{i}() {{ f{i - 1} "$@"; }}; ' for i in range(1, 40))
        + f"f39 {FLAGS}"
    ),
    "recursive function": lambda: _sh('f() { f "$@" "$@"; }; f x'),
    "1000 functions called 1000 times": lambda: _sh(
        "".join(f"f{i}() {{ f{i - 1}; f{i - 1}; }}; " for i in range(1, 1000)) + "f999"
    ),
    "eval of eval x10": lambda: _sh("eval " * 10 + "kube-apiserver"),
    "loop with 3000 assignments": lambda: _sh(
        "while true; do " + "".join(f"B{i}=x; " for i in range(3000)) + f"done; exec kube-apiserver {FLAGS}"
    ),
    "$@ of 4000 words, 20 times": lambda: _pod(
        {"command": ["/bin/sh", "-c", "exec kube-apiserver " + '"$@" ' * 20, "sh", *["--v=2"] * 4000]},
        "quay.io/example/tools:1",
    ),
}


def reason(obj: dict[str, Any]) -> str:
    for finding in evaluate(obj, Policy()).findings:
        if finding.detail.startswith("could not read"):
            return finding.detail[len("could not read the command line: ") :][:70]
    return "(read whole)"


def engine_ms(obj: dict[str, Any]) -> tuple[float, float]:
    best_cpu = best_wall = float("inf")
    for _ in range(3):
        cpu, wall = time.thread_time(), time.perf_counter()
        evaluate(obj, Policy())
        best_cpu = min(best_cpu, time.thread_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return best_cpu * 1000, best_wall * 1000


def _post(port: int, context: ssl.SSLContext, body: bytes) -> tuple[float, dict[str, Any]]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    conn.connect()
    began = time.perf_counter()
    conn.request("POST", "/validate?timeout=10s", body, {"Content-Type": "application/json", "Host": NAME})
    answer = json.loads(conn.getresponse().read())
    elapsed = (time.perf_counter() - began) * 1000
    conn.close()
    return elapsed, answer


def served(port: int, context: ssl.SSLContext, normal: bytes, body: bytes) -> tuple[float, float, bool]:
    """(adversarial answer ms, normal answer ms sent 1 ms after it on another connection, adversarial allowed)."""
    result: dict[str, Any] = {}

    def adversarial() -> None:
        result["ms"], result["answer"] = _post(port, context, body)

    thread = threading.Thread(target=adversarial)
    thread.start()
    time.sleep(0.001)
    beside, _ = _post(port, context, normal)
    thread.join()
    return result["ms"], beside, bool(result["answer"]["response"]["allowed"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-server", action="store_true", help="the engine only")
    options = parser.parse_args()
    over = []
    print(f"{'case':34} {'cpu ms':>7} {'wall ms':>8}  could not read because")
    for name, build in CASES.items():
        obj = build()
        cpu, wall = engine_ms(obj)
        print(f"{name:34} {cpu:7.2f} {wall:8.2f}  {reason(obj)}")
        if cpu > ENGINE_LIMIT_MS:
            over.append(name)
    if not options.no_server:
        work, files, context, normal = prepare("adversarial-")
        process, port = start(files.directory, "webhook.runtime.serving:build_app", "h11", work / "server.log")
        try:
            _post(port, context, normal)  # warm up
            print(f"\n{'case (served over HTTPS)':34} {'answer ms':>9} {'normal beside ms':>17}  allowed")
            for name, build in CASES.items():
                body = json.dumps(review_for(build())).encode()
                ms, beside, allowed = served(port, context, normal, body)
                print(f"{name:34} {ms:9.1f} {beside:17.1f}  {allowed}")
                if beside > BESIDE_LIMIT_MS:
                    over.append(f"{name} (normal review beside it)")
        finally:
            process.terminate()
            process.wait(timeout=30)
    if over:
        print(f"\nover the limits: {', '.join(over)}")
        return 1
    limits = f"<= {ENGINE_LIMIT_MS:.0f} ms of CPU; normal reviews beside them <= {BESIDE_LIMIT_MS:.0f} ms"
    print(f"\nevery case judged in {limits}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
