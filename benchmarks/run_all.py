"""`make bench`: the engine benchmark, the hot path in process (webhook vs bare FastAPI, with its profile), then
end to end (webhook vs bare FastAPI and bare ASGI apps, same server and TLS)."""

from __future__ import annotations

import sys

from benchmarks import e2e, engine, hot_path


def main() -> int:
    print("== engine: µs per kube-apiserver pod ==")
    engine.main()
    print("\n== hot path in process: CPU µs per request, webhook vs bare FastAPI app ==")
    sys.argv = [sys.argv[0], "--profile", "--top", "15"]
    hot_path.main()
    print("\n== end to end: webhook vs bare FastAPI app (and bare ASGI app), same server and TLS ==")
    sys.argv = [sys.argv[0], "--compare-parsers"]
    return e2e.main()


if __name__ == "__main__":
    sys.exit(main())
