"""Apply a changed policy file without a restart.

A mounted ConfigMap is updated by the kubelet atomically: it writes the new files into a new timestamped folder
and swaps the `..data` symlink, so reading the file's path always gives either the old or the new content,
whole. The watcher re-reads it every few seconds; a valid new policy replaces the one in force (one assignment,
on the event loop's thread), an invalid one is logged and the policy in force is kept, so a typo in a ConfigMap
never switches the guard off or changes what it enforces.

The file is read once per look: the policy is parsed from, and known by the hash of, the same bytes. Whatever goes
wrong (unreadable, not UTF-8, not YAML, not a policy, a bug of ours) is a refused policy, logged with its reason
and counted in `policy_reload_errors_total`; the watcher itself never stops, so a later valid file still applies.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from webhook.core.policy import ConfigError, PolicyInForce, policy_digest, policy_from_bytes
from webhook.runtime import logs, metrics

log = logging.getLogger("apiserver_tls_guard")
UNREADABLE = "unreadable"


class PolicyReloader:
    """Re-reads the policy file every `interval` seconds and swaps a valid new policy into `in_force`."""

    def __init__(self, path: str | Path, overrides: dict[str, Any], in_force: PolicyInForce, interval: float) -> None:
        self.path, self.overrides, self.in_force, self.interval = Path(path), overrides, in_force, interval
        self._seen = in_force.digest  # the last content looked at, valid or not: an invalid file is logged once

    def _refuse(self, seen: str, reason: str, refused_hash: str | None) -> None:
        if seen == self._seen:
            return  # the same refused content as at the last look: logged and counted once
        self._seen = seen
        metrics.POLICY_RELOAD_ERRORS.inc()
        log.error(
            "new policy refused; keeping the policy in force",
            extra=logs.fields(
                file=str(self.path), error=reason, policyHash=self.in_force.digest, refusedHash=refused_hash
            ),
        )

    def check(self) -> bool:
        """Apply the file if it changed and is valid; True when a new policy is in force. Never raises."""
        try:
            return self._check()
        except Exception as err:  # a bug of ours must not end the watcher: refuse, say why, look again later
            self._refuse(f"error:{type(err).__name__}:{err}", f"{type(err).__name__}: {err}", None)
            return False

    def _check(self) -> bool:
        try:
            content = self.path.read_bytes()
        except OSError as err:
            self._refuse(UNREADABLE, f"cannot read: {err.strerror or err}", None)
            return False
        digest = policy_digest(self.path, self.overrides, content)
        if digest == self._seen:
            return False
        try:
            policy = policy_from_bytes(content, str(self.path), **self.overrides)
        except ConfigError as err:
            self._refuse(digest, str(err), digest)
            return False
        self._seen = digest
        old = self.in_force.digest
        self.in_force.policy, self.in_force.digest = policy, digest
        metrics.record_policy(digest, old)
        log.info("policy reloaded", extra=logs.fields(policyHash=digest, previousHash=old, mode=policy.mode.value))
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.check()
