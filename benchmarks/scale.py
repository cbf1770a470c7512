"""Scale suite (issue 15): the log at 1M and 10M logged queries, 10% of them labelled.

For each size ``n`` (quick: 100k and 1M):

1. **Import**: a Parquet file of ``n`` logged queries (text from a pool of demo queries,
   predicted label, confidence, time over 90 days, a person's label on 10% of the rows)
   imported by ``engine.importer.import_file`` into a new store, in a fresh process:
   rows/s, peak RSS, the store's size on disk after it.
2. **Retrain cycle**, end to end (``benchmarks.retrain``'s store and child: n queries of the
   demo generator, 10% with feedback; one fresh process): wall time, each stage, peak RSS,
   the store's size on disk.
3. **Page reads**: the dashboard suite's store built with ``n`` queries (10% with feedback)
   and every page's first-render data functions, each page in a fresh process (median of 3).

Baselines in the same run: each figure at 10M beside the same figure at 1M (the growth
factor is printed; 10x the log is the reference), and the targets of issue 15: retrain
< 5 min and < 6 GB, import >= 200k rows/s, every page < 300 ms at 10M and Overview,
Performance and Data < 150 ms at 1M. The load average is printed beside every figure:
the machine is shared, so compare ratios within a run.

Run: ``python -m benchmarks.scale [--quick] [--sizes 1000000,10000000]``; the page reads alone beside
another checkout's (before and after in one run): ``python -m benchmarks.scale --before CHECKOUT --sizes 10000000``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import dashboard, retrain
from benchmarks.common import Row, SuiteResult, median, print_outcome, run_child, say

SUITE = "scale"
LABELLED = 0.10
DAYS = 90
FAST_PAGES = ("overview", "performance", "data")
# engine.importer checks rows as columns (about 200-280k rows/s here, benchmarks/import_memory.py): up to this
# many rows the suite also times it; the store's side of an import alone is timed at every size.
IMPORTER_MAX = 10_000_000


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def _label(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000:,}k"


# -- 1. import -------------------------------------------------------------------------------------------

def write_import_file(path: Path, n: int, *, seed: int = 5) -> None:
    """``n`` logged queries as Parquet (columns text, predicted_label, confidence, ts, label), made with numpy."""
    import numpy as np
    import pandas as pd

    from demo.intents import INTENTS, IntentGenerator

    rng = np.random.default_rng(seed)
    pool = IntentGenerator(seed=seed).sample(20_000, progress=0.5)
    texts = np.array([e.text for e in pool], dtype=object)
    truth = np.array([e.label for e in pool], dtype=object)
    pick = rng.integers(0, len(pool), n)
    right = rng.random(n) < 0.88
    predicted = np.where(right, truth[pick], np.array(INTENTS, dtype=object)[rng.integers(0, len(INTENTS), n)])
    ts = pd.Timestamp("2026-09-01") + pd.to_timedelta(np.sort(rng.integers(0, DAYS * 86_400_000, n)), unit="ms")
    label = np.where(rng.random(n) < LABELLED, truth[pick], None)
    frame = pd.DataFrame({"text": pd.array(texts[pick], dtype="string"), "predicted_label": pd.array(predicted, dtype="string"),
                          "confidence": np.round(0.3 + 0.7 * rng.random(n), 4), "ts": ts,
                          "label": pd.array(label, dtype="string")})
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False, row_group_size=500_000)


def child_import(home: Path, file: Path) -> dict[str, Any]:
    """Import ``file`` into a new store at ``home`` (this fresh process): rows/s, peak RSS, store size."""
    from engine.config import load_settings
    from engine.context import Context
    from engine.importer import import_file

    shutil.rmtree(home, ignore_errors=True)
    ctx = Context.open(load_settings(env={}, path=None, home=home))
    started = time.perf_counter()
    report = import_file(ctx, file, labeled=False)
    seconds = time.perf_counter() - started
    ctx.db.checkpoint()
    db = ctx.settings.db_path
    return {"rows": report.rows, "queries": report.queries, "labels": report.labels, "rejected": report.rejected,
            "seconds": seconds, "rows_per_s": report.rows / seconds, "peak_rss_mb": retrain._peak_rss_mb(),
            "db_bytes": db.stat().st_size, "load": _load()}


def child_bulk(home: Path, file: Path, *, batch: int = 1_000_000) -> dict[str, Any]:
    """The store's side of an import alone: the same file's rows, already clean, written with
    ``store.querylog.insert_queries``/``insert_labels`` in batches of ``batch`` rows (one write each)."""
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    from engine.config import load_settings
    from engine.context import Context
    from store.querylog import insert_labels, insert_queries

    shutil.rmtree(home, ignore_errors=True)
    ctx = Context.open(load_settings(env={}, path=None, home=home))
    rows = queries = labels = 0
    started = time.perf_counter()
    for part in pq.ParquetFile(file).iter_batches(batch_size=batch):
        frame = part.to_pandas()
        ids = np.char.add("b", np.arange(rows, rows + len(frame)).astype(str)).astype(object)
        q = pd.DataFrame({"id": ids, "ts": frame["ts"], "text": frame["text"], "predicted_label": frame["predicted_label"],
                          "confidence": frame["confidence"], "model_version": None, "source": "import"})
        has = frame["label"].notna().to_numpy()
        lab = pd.DataFrame({"id": np.char.add("l", ids[has].astype(str)).astype(object), "ts": frame["ts"][has],
                            "query_id": ids[has], "text": frame["text"][has], "label": frame["label"][has],
                            "source": "import"}).astype({"query_id": object})
        with ctx.db.write() as con:
            queries += insert_queries(con, q)
            labels += insert_labels(con, lab)
        rows += len(frame)
    ctx.db.checkpoint()
    seconds = time.perf_counter() - started
    return {"rows": rows, "queries": queries, "labels": labels, "seconds": seconds, "rows_per_s": rows / seconds,
            "peak_rss_mb": retrain._peak_rss_mb(), "db_bytes": ctx.settings.db_path.stat().st_size, "load": _load()}


def measure_import(work: Path, n: int, *, importer: bool) -> dict[str, Any]:
    """The store-side bulk write of ``n`` rows, and (``importer``) ``import_file`` on them, each in a fresh process."""
    file = work / f"scale-import-{n}.parquet"
    if not file.exists():
        say(f"scale: writing {n:,} logged queries as Parquet")
        write_import_file(file, n)
    say(f"scale: {n:,} rows written to a new store in 1M-row batches (fresh process)")
    out = run_child("benchmarks.scale", "--child", "bulk", "--home", str(work / f"scale-import-{n}"),
                    "--file", str(file), timeout=7200)
    out["file_bytes"] = file.stat().st_size
    if importer:
        say(f"scale: importing {n:,} rows with engine.importer into a new store (fresh process)")
        out["importer"] = run_child("benchmarks.scale", "--child", "import", "--home", str(work / f"scale-import-{n}"),
                                    "--file", str(file), timeout=7200)
    shutil.rmtree(work / f"scale-import-{n}", ignore_errors=True)
    return out


# -- 2. retrain ------------------------------------------------------------------------------------------

def measure_retrain(work: Path, n: int) -> dict[str, Any]:
    """One cycle with the default settings; when its training cap (``max_train_rows``) left texts out, a
    second cycle on a fresh copy with the cap off (``uncapped``): what the cap saves and what it costs in
    accuracy, judged on the same evaluation set (the cap never changes it)."""
    started = time.perf_counter()
    retrain.build_store(work, n)
    built = time.perf_counter() - started
    m = retrain.measure(work, n, runs=1, baseline=False)
    c = m["cycle"]
    if c["status"] != "accepted":
        raise RuntimeError(f"scale: the {n:,} retrain ended {c['status']}: {c['reason']}")
    out = {**c, "build_s": built, "db_bytes": (retrain.store_home(work, n) / "retrainer.duckdb").stat().st_size}
    if c["funnel"]["over_training_cap"]:
        out["uncapped"] = retrain.measure(work, n, runs=1, baseline=False, max_train_rows=0)["cycle"]
    return out


# -- 3. pages --------------------------------------------------------------------------------------------

def page_store(work: Path, n: int) -> Path:
    """The dashboard suite's store with ``n`` queries, 10% of them with a person's label (built once)."""
    home = work / f"scale-pages-{n}"
    marker = home / "BENCH_READY"
    if marker.exists() and marker.read_text().strip() == f"{dashboard.BUILD_TAG} {n}":
        return home
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    saved = dashboard.N_QUERIES, dashboard.FEEDBACK_PERCENT
    dashboard.N_QUERIES, dashboard.FEEDBACK_PERCENT = n, int(100 * LABELLED)
    try:
        say(f"scale: building the dashboard store with {n:,} queries")
        dashboard._build(home)
    finally:
        dashboard.N_QUERIES, dashboard.FEEDBACK_PERCENT = saved
    from store import open_store

    open_store(home / "retrainer.duckdb").checkpoint()
    marker.write_text(f"{dashboard.BUILD_TAG} {n}\n")
    return home


def measure_pages(work: Path, n: int, *, runs: int) -> dict[str, Any]:
    home = page_store(work, n)
    pages: dict[str, Any] = {}
    for page in dashboard.PAGE_NAMES:
        results = [run_child("benchmarks.dashboard", "--child", "functions", "--home", str(home), "--page", page)
                   for _ in range(runs)]
        results.sort(key=lambda r: r["total_ms"])
        mid = results[len(results) // 2]
        pages[page] = {"total_ms": mid["total_ms"], "functions": mid["functions"],
                       "runs": [r["total_ms"] for r in results], "load": _load()}
        say(f"scale: {_label(n)} {page}: {mid['total_ms']:.0f} ms (load {pages[page]['load']})")
    return {"pages": pages, "db_bytes": (home / "retrainer.duckdb").stat().st_size}


def compare_pages(work: Path, n: int, *, before_root: Path, runs: int) -> str:
    """Every page's reads at ``n`` logged queries with this code and with the code at ``before_root`` (e.g. a
    checkout of main) on the same rows, alternating fresh processes: a Markdown table with the load."""
    home = page_store(work, n)
    before_home = dashboard.before_copy(home, work / f"scale-pages-{n}-before", before_root=before_root)
    results = dashboard.compare(home, before_home, before_root=before_root, runs=runs)
    return dashboard.compare_table(results, title=f"### Page reads at {_label(n)} logged queries ({LABELLED:.0%} labelled), "
                                                  f"median of {runs} fresh processes each (before: {before_root})")


# -- the suite -------------------------------------------------------------------------------------------

def run(work: Path, *, quick: bool, sizes: tuple[int, ...] | None = None) -> SuiteResult:
    sizes = sizes or ((100_000, 1_000_000) if quick else (1_000_000, 10_000_000))
    runs = 1 if quick else 3
    measured = {}
    for n in sizes:
        measured[n] = {"import": measure_import(work, n, importer=n <= IMPORTER_MAX),
                       "retrain": measure_retrain(work, n),
                       "pages": measure_pages(work, n, runs=runs)}
    return report(measured)


def report(measured: dict[int, dict[str, Any]]) -> SuiteResult:
    """The table's rows (each size beside the one before it) and the details."""
    result = SuiteResult()
    sizes = sorted(measured)
    for i, n in enumerate(sizes):
        m, label = measured[n], _label(n)
        prev = measured[sizes[i - 1]] if i else None
        big = n >= 10_000_000
        imp, cyc = m["import"], m["retrain"]
        result.rows += [
            Row(SUITE, f"import (store side, 1M-row writes), {label} logged queries", imp["rows_per_s"], "rows/s",
                baseline=prev["import"]["rows_per_s"] if prev else None, higher_is_better=True,
                target=">= 200k rows/s", passed=imp["rows_per_s"] >= 200_000,
                note=(f"baseline: the same at {_label(sizes[i - 1])}; " if prev else "") + f"load {imp['load']}"),
            Row(SUITE, f"import with engine.importer (row checks in Python), {label}",
                imp["importer"]["rows_per_s"] if "importer" in imp else None, "rows/s", higher_is_better=True,
                baseline=imp["rows_per_s"],
                note="baseline: the store side alone" if "importer" in imp
                else f"not run above {IMPORTER_MAX:,} rows (it would take too long on this machine)"),
            Row(SUITE, f"retrain cycle end to end, {label}", cyc["wall_s"], "s",
                baseline=prev["retrain"]["wall_s"] if prev else None,
                target="< 300 s" if big else "–", passed=(cyc["wall_s"] < 300) if big else None,
                note=f"load {cyc['load']}"),
            Row(SUITE, f"retrain peak RSS, {label}", cyc["peak_rss_mb"], "MB",
                baseline=prev["retrain"]["peak_rss_mb"] if prev else None,
                target="< 6 GB" if big else "–", passed=(cyc["peak_rss_mb"] < 6144) if big else None),
            *([Row(SUITE, f"retrain accuracy with the training cap, {label} (points vs no cap)",
                   100 * (cyc["accuracy"] - cyc["uncapped"]["accuracy"]), "points",
                   note=f"cap {cyc['max_train_rows']:,}: {cyc['accuracy']:.4f}; no cap: {cyc['uncapped']['accuracy']:.4f} "
                        f"({cyc['uncapped']['wall_s']:,.0f} s, {cyc['uncapped']['peak_rss_mb']:,.0f} MB, load "
                        f"{cyc['uncapped']['load']})")] if cyc.get("uncapped") else []),
            Row(SUITE, f"store on disk, {label} (retrain store)", cyc["db_bytes"] / 1e6, "MB",
                baseline=prev["retrain"]["db_bytes"] / 1e6 if prev else None),
        ]
        for page, p in m["pages"]["pages"].items():
            limit = 300 if big else (150 if page in FAST_PAGES and n >= 1_000_000 else None)
            result.rows.append(Row(
                SUITE, f"page reads {page}, {label}", p["total_ms"], "ms",
                baseline=prev["pages"]["pages"][page]["total_ms"] if prev else None,
                target=f"< {limit} ms" if limit else "–", passed=(p["total_ms"] < limit) if limit else None,
                note=f"load {p['load']}"))
    lines = [f"### Scale: {', '.join(_label(n) for n in sizes)} logged queries, {LABELLED:.0%} labelled", ""]
    lines.append("| figure | " + " | ".join(_label(n) for n in sizes) + " | growth |")
    lines.append("|---|" + "---|" * (len(sizes) + 1))

    def line(name: str, values: list[float], fmt: str) -> None:
        growth = f"{values[-1] / values[0]:.1f}x" if len(values) > 1 and values[0] else "–"
        lines.append(f"| {name} | " + " | ".join(format(v, fmt) for v in values) + f" | {growth} |")

    line("import, store side (rows/s)", [measured[n]["import"]["rows_per_s"] for n in sizes], ",.0f")
    line("import, store side, peak RSS (MB)", [measured[n]["import"]["peak_rss_mb"] for n in sizes], ",.0f")
    line("store after import (MB)", [measured[n]["import"]["db_bytes"] / 1e6 for n in sizes], ",.0f")
    line("the same rows as Parquet, zstd (MB)", [measured[n]["import"]["file_bytes"] / 1e6 for n in sizes], ",.0f")
    for n in sizes:
        if "importer" in measured[n]["import"]:
            i = measured[n]["import"]["importer"]
            lines.append(f"| engine.importer at {_label(n)} | {i['rows_per_s']:,.0f} rows/s, peak RSS "
                         f"{i['peak_rss_mb']:,.0f} MB (load {i['load']}) | |")
    line("retrain wall (s)", [measured[n]["retrain"]["wall_s"] for n in sizes], ",.1f")
    for stage, short in retrain.STAGE_SHORT.items():
        line(f"  {short} (s)", [measured[n]["retrain"]["stages"].get(stage, 0.0) for n in sizes], ",.2f")
    line("retrain peak RSS (MB)", [measured[n]["retrain"]["peak_rss_mb"] for n in sizes], ",.0f")
    line("rows in (human + pseudo)", [measured[n]["retrain"]["rows_in"] for n in sizes], ",.0f")
    line("train rows after cleaning", [measured[n]["retrain"]["train_rows"] for n in sizes], ",.0f")
    line("  left out over the training cap", [measured[n]["retrain"]["funnel"]["over_training_cap"] for n in sizes],
         ",.0f")
    line("evaluation rows", [measured[n]["retrain"]["eval_rows"] for n in sizes], ",.0f")
    line("candidate accuracy", [measured[n]["retrain"]["accuracy"] for n in sizes], ".4f")
    line("candidate macro-F1", [measured[n]["retrain"]["macro_f1"] for n in sizes], ".4f")
    line("retrain store on disk (MB)", [measured[n]["retrain"]["db_bytes"] / 1e6 for n in sizes], ",.0f")
    for page in dashboard.PAGE_NAMES:
        line(f"page {page} (ms)", [measured[n]["pages"]["pages"][page]["total_ms"] for n in sizes], ",.0f")
    for n in sizes:
        cyc, off = measured[n]["retrain"], measured[n]["retrain"].get("uncapped")
        if off:
            lines.append(
                f"| {_label(n)} without the training cap (max_train_rows 0) | {off['wall_s']:,.1f} s, "
                f"{off['peak_rss_mb']:,.0f} MB, {off['train_rows']:,} training rows, accuracy {off['accuracy']:.4f}, "
                f"macro-F1 {off['macro_f1']:.4f} on the same {off['eval_rows']:,} evaluation rows (load {off['load']}) | "
                f"with the cap ({cyc['max_train_rows']:,}): {cyc['wall_s']:,.1f} s, accuracy {cyc['accuracy']:.4f}, "
                f"macro-F1 {cyc['macro_f1']:.4f} |")
    lines.append("")
    lines.append("Load average beside each figure: " + "; ".join(
        f"{_label(n)}: import {measured[n]['import']['load']}, retrain {measured[n]['retrain']['load']}"
        for n in sizes) + ".")
    for n in sizes:
        slow = {page: max(p["functions"].items(), key=lambda kv: kv[1]) for page, p in measured[n]["pages"]["pages"].items()}
        lines.append(f"Slowest function per page at {_label(n)}: "
                     + ", ".join(f"{page} {name} ({ms:.0f} ms)" for page, (name, ms) in slow.items()) + ".")
    result.details.append("\n".join(lines))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale")
    parser.add_argument("--child", choices=["import", "bulk"])
    parser.add_argument("--home", type=Path)
    parser.add_argument("--file", type=Path)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", default="")
    parser.add_argument("--work", type=Path, default=Path("/tmp/retrainer-bench"))
    parser.add_argument("--before", type=Path, help="only the page reads, beside the code at this checkout (e.g. main)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    if args.before is not None:
        for n in tuple(int(s) for s in args.sizes.split(",") if s.strip()) or (10_000_000,):
            print(compare_pages(args.work, n, before_root=args.before, runs=args.runs) + "\n", flush=True)
        return 0
    if args.child:
        child = {"import": child_import, "bulk": child_bulk}[args.child]
        print(json.dumps(child(args.home, args.file)))
        return 0
    started = time.perf_counter()
    sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip()) or None
    print_outcome(SUITE, run(args.work, quick=args.quick, sizes=sizes), started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
