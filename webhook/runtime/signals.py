"""SIGTERM and SIGINT stop `serve` promptly from its first line, before uvicorn has installed its own handlers.

In a container the server is PID 1 of its PID namespace, and the kernel gives PID 1 no default action: a signal
it has no handler for is dropped, whether it comes from inside the namespace or from containerd's (kernel/signal.c,
sig_task_ignored: SIGNAL_UNKILLABLE and SIG_DFL; only SIGKILL and SIGSTOP from an ancestor namespace are forced).
uvicorn sets its handlers only when it starts serving (uvicorn/server.py, Server.capture_signals), so a pod stuck
in `--cluster-certs` bootstrap (an API it cannot reach) ignored SIGTERM until the kubelet's SIGKILL, a whole
grace period later.

`install` sets a handler that raises `Stopped` in the main thread, which ends whatever bootstrap is doing (a
sleep between retries, a connect: the system call is interrupted and the handler runs) through the ordinary
`finally` blocks. `Stopped` is a BaseException, as KeyboardInterrupt is, so no `except Exception` retry loop
swallows it. Once uvicorn serves, its handlers replace ours and drain in-flight reviews; on its way out it puts
ours back and raises the signal again (capture_signals), which `serving.serve` takes as the clean end it is.
"""

from __future__ import annotations

import signal
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(BaseException):
    """A stop signal arrived; `exit_code` is 128 + its number, what a shell and containerd report for a process the
    signal's default action ended (containerd pkg/sys/reaper, exitStatus: exitSignalOffset + signal)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise(signum: int, _: FrameType | None) -> None:
    raise Stopped(signum)


def install() -> None:
    """Make SIGTERM and SIGINT raise `Stopped` (main thread only, as every Python signal handler)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _raise)
