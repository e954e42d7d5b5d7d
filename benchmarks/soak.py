"""A bounded soak: a fixed rate of kube-apiserver reviews for a fixed time; errors and memory over time.

Loopback only, bounded in count and time. RSS is sampled after each slice; growth is measured from the end of
the first slice (after warm-up: imports, caches and TLS session state settle) to the end of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from benchmarks.e2e import NAME, prepare, rss_mb, start
from benchmarks.loadgen import open_loop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--slices", type=int, default=6)
    args = parser.parse_args()

    work, files, context, body = prepare("bench-soak-")
    process, port = start(files.directory, "webhook.runtime.serving:build_app", "httptools", work / "soak.log")
    errors = requests = 0
    samples: list[float] = []
    try:
        per_slice = args.seconds / args.slices
        for i in range(args.slices):
            result = asyncio.run(open_loop(port, context, NAME, body, args.rate, per_slice))
            requests += result.requests
            errors += result.errors
            samples.append(rss_mb(process.pid))
            print(f"slice {i + 1}/{args.slices}: {result.summary()}, RSS {samples[-1]:.1f} MB", flush=True)
    finally:
        process.terminate()
        process.wait(timeout=30)
    growth = (samples[-1] - samples[0]) / samples[0] * 100
    print(
        f"\nsoak: {requests} requests in {args.seconds} s at {args.rate:.0f}/s, {errors} errors, "
        f"RSS {samples[0]:.1f} -> {samples[-1]:.1f} MB ({growth:+.1f} %, target < 10 %)"
    )
    return 1 if errors or growth >= 10 else 0


if __name__ == "__main__":
    sys.exit(main())
