"""`apiserver-tls-guard controls`: the catalog as the current policy would apply it, before anything is installed."""

from __future__ import annotations

import json
from typing import Any

from webhook.core.operators import passes_when
from webhook.core.policy import Policy


def rows(policy: Policy) -> list[dict[str, Any]]:
    """One row per control: key, CIS id in the policy's benchmark, scored, what passes, and its mode."""
    benchmark = policy.benchmark_for(None)
    return [
        {
            "key": control.key,
            "cisId": control.cis_id(benchmark),
            "benchmark": benchmark,
            "scored": control.scored,
            "passesWhen": passes_when(control.check),
            "mode": policy.mode_for(control).value,
            "title": control.title,
        }
        for control in policy.catalog.controls
    ]


def as_text(policy: Policy) -> str:
    """A table for people, with a line saying which benchmark's ids it shows."""
    table = rows(policy)
    head = ("KEY", "CIS", "SCORED", "MODE", "PASSES WHEN")
    cells = [
        (r["key"], r["cisId"] or "-", "yes" if r["scored"] else "manual", r["mode"], r["passesWhen"]) for r in table
    ]
    widths = [max(len(str(row[i])) for row in [head, *cells]) for i in range(4)]
    lines = [f"CIS Kubernetes Benchmark v{table[0]['benchmark']}; modes under the policy given"]
    for row in [head, *cells]:
        lines.append("  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])
    return "\n".join(lines)


def as_json(policy: Policy) -> str:
    return json.dumps(rows(policy), indent=2)
