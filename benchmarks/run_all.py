"""`make bench`: the engine benchmark, then the end-to-end comparison with the bare app."""

from __future__ import annotations

import sys

from benchmarks import e2e, engine


def main() -> int:
    print("== engine: µs per kube-apiserver pod ==")
    engine.main()
    print("\n== end to end: webhook vs bare ASGI app, same server and TLS ==")
    sys.argv = [sys.argv[0], "--compare-parsers"]
    return e2e.main()


if __name__ == "__main__":
    sys.exit(main())
