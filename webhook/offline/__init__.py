"""The bootstrap guardrail: judging files (`check`), a node's processes (`check --node`) and a live cluster
(`scan`), and the reports they print."""
