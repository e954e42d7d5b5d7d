"""Apply a changed policy file without a restart.

A mounted ConfigMap is updated by the kubelet atomically: it writes the new files into a new timestamped folder
and swaps the `..data` symlink, so reading the file's path always gives either the old or the new content,
whole. The watcher re-reads it every few seconds; a valid new policy replaces the one in force (one assignment,
on the event loop's thread), an invalid one is logged and the policy in force is kept, so a typo in a ConfigMap
never switches the guard off or changes what it enforces.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from webhook.core.policy import ConfigError, PolicyInForce, load_policy, policy_digest
from webhook.runtime import logs, metrics

log = logging.getLogger("apiserver_tls_guard")


class PolicyReloader:
    """Re-reads the policy file every `interval` seconds and swaps a valid new policy into `in_force`."""

    def __init__(self, path: str | Path, overrides: dict[str, Any], in_force: PolicyInForce, interval: float) -> None:
        self.path, self.overrides, self.in_force, self.interval = Path(path), overrides, in_force, interval
        self._seen = in_force.digest  # the last content looked at, valid or not: an invalid file is logged once

    def check(self) -> bool:
        """Apply the file if it changed and is valid; True when a new policy is in force."""
        try:
            digest = policy_digest(self.path, self.overrides)
        except OSError as err:
            if self._seen != "unreadable":
                log.error(
                    "policy file unreadable; keeping the policy in force",
                    extra=logs.fields(file=str(self.path), error=err.strerror, policyHash=self.in_force.digest),
                )
                self._seen = "unreadable"
            return False
        if digest == self._seen:
            return False
        self._seen = digest
        try:
            policy = load_policy(self.path, **self.overrides)
        except ConfigError as err:
            metrics.POLICY_RELOAD_ERRORS.inc()
            log.error(
                "new policy refused; keeping the policy in force",
                extra=logs.fields(error=str(err), policyHash=self.in_force.digest, refusedHash=digest),
            )
            return False
        old = self.in_force.digest
        self.in_force.policy, self.in_force.digest = policy, digest
        metrics.record_policy(digest, old)
        log.info("policy reloaded", extra=logs.fields(policyHash=digest, previousHash=old, mode=policy.mode.value))
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.check()
