"""How much work reading one object's command lines may take, and what happens when it is spent.

The object under review writes the command line, so it must not choose how long the guard works on it: a few
hundred bytes of nested wrappers or substitutions must not stall the server past kube-apiserver's webhook timeout
(under `failurePolicy: Ignore` everything would then be admitted unjudged). The reader checks these bounds as it
goes; past any of them it stops and the container is judged as "could not read the command line", which fails
every control that reads a flag (fail closed where a control enforces).
"""

from __future__ import annotations

import time

# CPU time one evaluation may spend reading command lines. A real control-plane pod takes well under 1 ms; the
# adversarial benchmark (benchmarks/adversarial.py) must stay under 50 ms a review including judging.
CPU_SECONDS = 0.01
# Work units between two looks at the clock: thread_time() is a system call (~0.3 µs), a unit ~50 ns.
_CHECK_EVERY = 512
# Static bounds, far above anything real (a kubeadm kube-apiserver has ~40 items and no script; the longest
# script in the shared corpus is ~4 KB).
MAX_ARGV_ITEMS = 4096
MAX_SCRIPT_BYTES = 64 * 1024
MAX_NESTING = 32  # `$( ... )`, `${ ... }`, quotes inside each other
MAX_SHELL_DEPTH = 8  # `sh -c 'sh -c "..."'`, eval, function calls inside each other
MAX_RUNS = 64  # kube-apiserver runs found in one container
# One argv item, word or variable once expanded (`A=$A$A` doubles at each step). The longest real items, a
# --feature-gates or --tls-cipher-suites list, are ~2 KB; judging a 1 MB list item took 130 ms.
MAX_VALUE_BYTES = 64 * 1024


class Unreadable(Exception):
    """The command line cannot be read within the bounds; `reason` says which one, for the finding."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Budget:
    """The CPU time left for one evaluation (time.thread_time: the server's other threads do not count)."""

    __slots__ = ("_deadline", "_units")

    def __init__(self, seconds: float | None = None) -> None:
        self._deadline = time.thread_time() + (CPU_SECONDS if seconds is None else seconds)
        self._units = 0

    def spend(self, units: int = 1) -> None:
        self._units += units
        if self._units >= _CHECK_EVERY:
            self._units = 0
            if time.thread_time() > self._deadline:
                raise Unreadable("reading it took more than this reader's time budget")
