"""``python -m benchmarks [--quick] [--only serving,retrain,...] [--work DIR]``: one table, and benchmarks/RESULTS.md.

Every figure stands beside a baseline measured in the same run. The verdicts are printed
evidence, not assertions: nothing here fails a build.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from benchmarks import (api, browser, dashboard, gate_quality, gate_speed, hot_reload, peer, presets, retrain, scale, serving,
                        sql_limits)
from benchmarks.common import DEFAULT_WORK, ROOT, machine, say, table

SUITES = {"serving": serving.run, "retrain": retrain.run, "dashboard": dashboard.run, "browser": browser.run,
          "hot_reload": hot_reload.run, "peer": peer.run, "gate_speed": gate_speed.run, "gate_quality": gate_quality.run,
          "api": api.run, "presets": presets.run, "scale": scale.run, "sql_limits": sql_limits.run}
# The 10M-query suite takes an hour or more: run it on its own (``--only scale``), not in every ``make bench``.
DEFAULT_SUITES = [name for name in SUITES if name != "scale"]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and rows (a few minutes)")
    parser.add_argument("--only", default=",".join(DEFAULT_SUITES), help=f"comma-separated suites of {', '.join(SUITES)}")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="where the benchmark stores are built and kept")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the Markdown report to write")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite {', '.join(unknown)}: choose from {', '.join(SUITES)}")
    logging.basicConfig(level=logging.WARNING)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows, details = [], []
    for name in chosen:
        outcome = SUITES[name](args.work, quick=args.quick)
        rows += outcome.rows
        details += outcome.details
    elapsed = time.perf_counter() - started
    print(table(rows))
    notes = [f"{r.figure}: {r.note}" for r in rows if r.note]
    if notes:
        print("\nnotes:\n" + "\n".join(f"  {n}" for n in notes))
    info = machine()
    report = [
        "# Benchmark results",
        "",
        f"`python -m benchmarks{' --quick' if args.quick else ''} --only {','.join(chosen)}` on {info['date']}, "
        f"{elapsed / 60:.1f} min.",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']} memory, {info['os']}. "
        f"Python {info['python']}; " + ", ".join(f"{k} {v}" for k, v in info["packages"].items()) + ".",
        "",
        "Ratio: how many times better the figure is than its baseline (baseline / figure for times, "
        "figure / baseline for throughput). Verdicts are against the targets of issues 3 and 5.",
        "",
        table(rows, markdown=True),
        "",
        *(n for d in details for n in (d, "")),
    ]
    if notes:
        report += ["Notes: " + "; ".join(notes), ""]
    args.results.write_text("\n".join(report))
    say(f"wrote {args.results} ({elapsed:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
