"""`make bench-peers`: the product, our own ValidatingAdmissionPolicy, Kyverno and Gatekeeper, each alone on one real
kube-apiserver: right answers on the shared corpus, then (unless --no-cost) the pod-create cost loop. Prints the
tables, writes benchmarks/results/peers.json and (with matplotlib) benchmarks/results/peers.png.

KUBE_BIN holds the control plane (`make kube`), PEERS_BIN the peers (`make peers`; defaults to KUBE_BIN). An
engine that is not built is left out, saying so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.peers import corpus, cost
from benchmarks.peers.engines import Engine, Kyverno, make_engines, scratch_dir
from tests.e2e.controlplane import KUBE_BIN, ControlPlane, missing_binaries

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="engine names to run (default: all that are built)")
    parser.add_argument("--no-cost", action="store_true", help="right answers only")
    parser.add_argument("--pods", type=int, default=int(os.environ.get("PEERS_PODS", "300")))
    parser.add_argument("--concurrency", type=int, default=int(os.environ.get("PEERS_CONCURRENCY", "4")))
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("PEERS_ROUNDS", "5")))
    parser.add_argument("--out", type=Path, default=RESULTS / "peers.json")
    args = parser.parse_args(argv)
    if os.environ.get("PEERS_COST") == "0":
        args.no_cost = True
    return args


def _headline(name: str, answers: list[corpus.Answer], costs: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "right": sum(a.right for a in answers),
        "total": len(answers),
        "right_by_control": {
            key: f"{sum(a.right for a in answers if a.control == key)}/{sum(a.control == key for a in answers)}"
            for key in corpus.SEED
        },
        "wrong": [f"{a.name} {a.control}: said {a.got}, expected {a.expected}" for a in answers if not a.right],
    }
    right, files = corpus.refused(answers)
    entry["pods_refused_right"] = f"{right}/{files}"
    if costs:
        entry["ordinary_p99_added_ms"] = costs.get("ordinary", {}).get("p99_added_ms")
        entry["apiserver_p99_added_ms"] = costs.get("apiserver", {}).get("p99_added_ms")
        heavy = costs.get("apiserver", {})
        if name.startswith("vap"):  # no process of its own: its work is kube-apiserver's
            entry["cpu_s"] = heavy.get("apiserver_cpu_added_s")
            entry["rss_mb"] = None
        else:
            entry["cpu_s"] = heavy.get("cpu_s")
            entry["rss_mb"] = heavy.get("rss_mb")
        entry["cost"] = costs
    return entry


HOOK = "apiserver_admission_webhook_admission_duration_seconds"
MATCH = "apiserver_admission_match_condition_evaluation_seconds"
VAP_CHECK = "apiserver_validating_admission_policy_check_duration_seconds"


def _calls(kind: dict[str, Any]) -> str:
    """kube-apiserver's own count and mean of webhook calls (or VAP checks) per loop, and of matchConditions."""
    metrics = kind.get("metrics", {})
    parts = []
    for family, label in ((HOOK, "webhook"), (VAP_CHECK, "VAP"), (MATCH, "matchConditions")):
        if family in metrics:
            parts.append(f"{label} {metrics[family]['count']:.0f} x {metrics[family]['mean_ms']} ms")
    return ", ".join(parts) or "none"


def _cost_table(results: dict[str, Any]) -> str:
    head = (
        "| engine | ordinary pods: p50 / p99 added (ms) | kube-apiserver pods: p50 / p99 added (ms) | "
        "engine CPU s | engine peak RSS MB | kube-apiserver CPU s added | kube-apiserver's metrics, ordinary | "
        "kube-apiserver's metrics, kube-apiserver pods |"
    )
    rows = [head, "|---|---|---|---|---|---|---|---|"]
    for name, entry in results.items():
        c = entry.get("cost")
        if not c:
            continue
        o, a = c.get("ordinary", {}), c.get("apiserver", {})
        own = a.get("engine_handler_mean_ms")
        rows.append(
            f"| {name} | {o.get('p50_added_ms')} / {o.get('p99_added_ms')} | {a.get('p50_added_ms')} / "
            f"{a.get('p99_added_ms')} | {a.get('cpu_s')} | {a.get('rss_mb')} | {a.get('apiserver_cpu_added_s')} | "
            f"{_calls(o)} | {_calls(a)}{f'; its own handler {own} ms' if own is not None else ''} |"
        )
    rows += [
        "",
        "The noise: per engine's run, each round's baseline (engine off) p50 / p99 and the p99 the engine added.",
        "",
        "| engine's run | kind | baseline p50 per round (ms) | baseline p99 per round (ms) | "
        "p99 added per round (ms) |",
        "|---|---|---|---|---|",
    ]
    for name, entry in results.items():
        for kind, c in (entry.get("cost") or {}).items():
            rows.append(
                f"| {name} | {kind} | {c.get('baseline_p50_spread_ms')} | {c.get('baseline_p99_spread_ms')} | "
                f"{c.get('p99_added_spread_ms')} |"
            )
    return "\n".join(rows)


def plot(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return False
    names = [n for n, e in results.items() if e.get("cost")]
    if not names:
        return False
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    (latency, right), (cpu, rss) = axes
    width = 0.38
    xs = list(range(len(names)))
    series = ((-width / 2, "ordinary", "ordinary pods"), (width / 2, "apiserver", "kube-apiserver pods"))
    for offset, kind, label in series:
        values = [results[n]["cost"].get(kind, {}).get("p99_added_ms") or 0 for n in names]
        latency.bar([x + offset for x in xs], values, width, label=label)
    latency.set_ylabel("p99 added over the baseline (ms, median of rounds)")
    latency.axhline(0, color="black", linewidth=0.5)
    latency.legend()
    right.bar(xs, [results[n].get("right", 0) for n in names], color="tab:green")
    right.set_ylabel(f"right answers of {results[names[0]].get('total')} (corpus files x 2 controls)")
    cpu.bar(xs, [results[n].get("cpu_s") or 0 for n in names], color="tab:red")
    cpu.set_ylabel("CPU s over the kube-apiserver-pod loop\n(a VAP: kube-apiserver's added CPU)")
    rss.bar(xs, [results[n].get("rss_mb") or 0 for n in names], color="tab:purple")
    rss.set_ylabel("engine peak RSS MB (a VAP: none of its own)")
    for ax in (latency, right, cpu, rss):
        ax.set_xticks(xs, names, rotation=20, ha="right")
    fig.suptitle("Same pods, same kube-apiserver: apiserver-tls-guard beside its peers")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return True


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    missing = missing_binaries()
    if missing:
        print(f"missing in {KUBE_BIN}: {', '.join(missing)}; run `make kube`", file=sys.stderr)
        return 2
    workdir = scratch_dir()
    plane = ControlPlane(workdir / "control-plane", with_controller_manager=False)
    plane.start()
    answers: dict[str, list[corpus.Answer]] = {}
    fixtures: dict[str, list[corpus.Answer]] = {}
    results: dict[str, Any] = {}
    engines = [e for e in make_engines(plane, workdir) if e.name != "baseline"]
    try:
        for engine in engines:
            if args.only and engine.name not in args.only:
                continue
            if engine.available:
                print(f"== {engine.name}: skipped, {engine.available}", flush=True)
                continue
            print(f"== {engine.name}", flush=True)
            started = time.monotonic()
            try:
                engine.start()
                engine.enable()
                answers[engine.name] = corpus.run(plane, corpus.corpus_subjects())
                fixtures[engine.name] = corpus.run(plane, corpus.fixture_subjects())
                right = sum(a.right for a in answers[engine.name])
                fixed = sum(a.right for a in fixtures[engine.name])
                print(
                    f"   corpus: {right}/{len(answers[engine.name])} right; false-pass fixtures: "
                    f"{fixed}/{len(fixtures[engine.name])}; pods refused rightly: "
                    f"{'/'.join(map(str, corpus.refused(answers[engine.name])))} ({time.monotonic() - started:.0f} s)"
                )
                costs: dict[str, Any] = {}
                load_before = os.getloadavg()
                if not args.no_cost:
                    rounds = cost.measure(engine, args.pods, args.concurrency, args.rounds)
                    costs = cost.summarise(rounds)
                    for kind, c in costs.items():
                        print(f"   {kind}: p50 +{c['p50_added_ms']} ms, p99 +{c['p99_added_ms']} ms, "
                              f"cpu {c['cpu_s']} s, rss {c['rss_mb']} MB")  # fmt: skip
                results[engine.name] = _headline(engine.name, answers[engine.name], costs)
                results[engine.name]["seconds"] = round(time.monotonic() - started)
                results[engine.name]["load_1min_before_after"] = [
                    round(load_before[0], 2),
                    round(os.getloadavg()[0], 2),
                ]
                print(f"   {results[engine.name]['seconds']} s in all", flush=True)
                results[engine.name]["false_pass_fixtures"] = {
                    "right": sum(a.right for a in fixtures[engine.name]),
                    "total": len(fixtures[engine.name]),
                }
            except Exception as err:  # one engine that fails must not lose the others' results
                print(f"   {engine.name} failed: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
                results.setdefault(engine.name, {})["error"] = f"{type(err).__name__}: {err}"[:2000]
            _stop(engine, engines)
    finally:
        for engine in engines:
            _stop(engine, engines, final=True)
        errors = plane.stop()
        for error in errors:
            print(error, file=sys.stderr)
    print("\n## Right answers (✓ right, ✗ wrong; the verdict each engine gave)\n")
    print(corpus.table(answers))
    for name, wrong in corpus.wrong(answers).items():
        print(f"\n{name} wrong on {len(wrong)}:" + "".join(f"\n  - {w}" for w in wrong))
    print("\n## The project's false-pass fixtures (only the controls that must not pass are judged)\n")
    print(corpus.table(fixtures))
    if not args.no_cost:
        print("\n## Cost (medians over rounds)\n")
        print(_cost_table(results))
    document = {
        "engines": results,
        "corpus_table": corpus.table(answers),
        "false_pass_fixtures_table": corpus.table(fixtures),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": os.getloadavg()},
        "params": {"pods": args.pods, "concurrency": args.concurrency, "rounds": args.rounds},
        "logs": str(workdir),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwrote {args.out}")
    tables = [f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {document['params']}, load {os.getloadavg()}"]
    tables += ["## Right answers", corpus.table(answers), "## False-pass fixtures", corpus.table(fixtures)]
    if not args.no_cost:
        tables += ["## Cost", _cost_table(results)]
    args.out.with_suffix(".md").write_text("\n\n".join(tables) + "\n")
    if not args.no_cost and plot(results, args.out.with_suffix(".png")):
        print(f"wrote {args.out.with_suffix('.png')}")
    failed = [name for name, entry in results.items() if "error" in entry]
    if failed:
        print(f"failed: {', '.join(failed)} (see the error in the JSON and the logs in {workdir})", file=sys.stderr)
    return 1 if failed else 0


def _stop(engine: Engine, engines: list[Engine], final: bool = False) -> None:
    try:
        engine.stop()
    except Exception as err:  # a stop that fails must not hide the results, nor leave the others running
        print(f"stopping {engine.name}: {err}", file=sys.stderr)
    # Kyverno's process serves both policy kinds: stop it after the last of them, or at the end.
    kyvernos = [e for e in engines if isinstance(e, Kyverno)]
    if isinstance(engine, Kyverno) and (final or engine is kyvernos[-1]):
        engine.stop_shared()


if __name__ == "__main__":
    sys.exit(main())
