"""Serving suite (issue 5, item 1): what logging costs the serving path, and how fast logs reach DuckDB.

1. Added latency: ``Classifier.predict`` one query at a time, logging on and off, on the
   same trained demo model, alternating query by query (so drift hits both alike), in 5
   rounds; p50 and p99 per round, the median over rounds. Added = on - off.
2. Logging throughput, end to end: N predictions through ``Classifier.predict_many``
   (batches of 500, logging on, the background thread spooling) while a separate process
   (like the worker) runs ``engine.ingest.ingest_spool`` until all N rows are stored.
   Rows/s = N / (time from the first prediction to the last row stored).
   Baseline (same run, same schema, fresh store): the same logged rows, each inserted
   with its own ``INSERT`` (autocommit) on one DuckDB connection.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from benchmarks.common import ROOT, Row, SuiteResult, deploy_first_model, median, middle_of_three, percentile, say

ROUNDS = 5
BATCH = 500


def _settings(home: Path):
    from engine.config import load_settings

    return load_settings(env={}, path=None, home=home)


def build_model_store(home: Path) -> None:
    """2,000 labelled demo rows imported, one retrain cycle: v0001 serves."""
    from engine.context import Context

    shutil.rmtree(home, ignore_errors=True)
    deploy_first_model(Context.open(_settings(home)), seed=5)


def _texts(n: int) -> list[str]:
    from demo.intents import IntentGenerator

    return [e.text for e in IntentGenerator(seed=9).sample(n, progress=0.3)]


def added_latency(home: Path, n: int) -> dict[str, Any]:
    """Per-query latency with logging on and off (n predictions each), p50/p99 per round, medians."""
    from engine.classifier import Classifier

    settings = _settings(home)
    texts = _texts(n)
    off = Classifier(settings=settings, log_queries=False, source="bench")
    on = Classifier(settings=settings, log_queries=True, source="bench")
    for t in texts[:500]:  # warm both up
        off.predict(t)
        on.predict(t)
    pipeline = on._model.pipeline  # the bare fitted estimator the Classifier serves (the same object)
    bare = lambda text: pipeline.predict_proba([text])  # noqa: E731
    for t in texts[:500]:
        bare(t)
    per_round = n // ROUNDS
    rounds = []
    clock = time.perf_counter_ns
    for r in range(ROUNDS):
        times: dict[str, list[float]] = {"on": [], "off": [], "bare": []}
        calls = {"on": on.predict, "off": off.predict, "bare": bare}
        for i, text in enumerate(texts[r * per_round:(r + 1) * per_round]):
            order = ("on", "off", "bare") if i % 3 == 0 else ("off", "bare", "on") if i % 3 == 1 else ("bare", "on", "off")
            for name in order:  # the three in turn, each first a third of the time
                s = clock()
                calls[name](text)
                times[name].append((clock() - s) / 1e6)
        rounds.append({f"{k}_{q}": percentile(v, int(q[1:])) for k, v in times.items() for q in ("p50", "p99")})
    on.close()
    off.close()
    out = {k: median([r[k] for r in rounds]) for k in rounds[0]}
    out["added_p50"] = out["on_p50"] - out["off_p50"]
    out["added_p99"] = out["on_p99"] - out["off_p99"]
    out["rounds"] = rounds
    return out


def _stored(db) -> int:
    with db.read() as con:
        return con.execute("SELECT count(*) FROM queries").fetchone()[0]


def child_ingest(home: Path, n: int) -> dict[str, Any]:
    """The worker's side: ingest the spool until n queries are stored; print when that happened (time.time())."""
    from engine.clock import utcnow
    from engine.context import Context
    from engine.ingest import ingest_spool

    ctx = Context.open(_settings(home))
    stored = _stored(ctx.db)
    target = stored + n
    files = 0
    while stored < target:
        got = ingest_spool(ctx.db, ctx.settings.spool_dir, clock=utcnow)
        files += got.files
        stored += got.queries
        if not got.files:
            time.sleep(0.01)
    return {"done_at": time.time(), "files": files}


def logging_throughput(home: Path, n: int) -> dict[str, Any]:
    """Predictions logged through Classifier -> spool -> ingest_spool (another process), end to end."""
    from engine.classifier import Classifier

    settings = _settings(home)
    texts = _texts(n)
    clf = Classifier(settings=settings, log_queries=True, source="bench")
    clf.predict_many(texts[:10])  # warm up, then let those rows be part of nothing: ingest them first
    clf.flush()
    from engine.clock import utcnow
    from engine.context import Context
    from engine.ingest import ingest_spool

    ctx = Context.open(settings)
    ingest_spool(ctx.db, settings.spool_dir, clock=utcnow)
    worker = subprocess.Popen([sys.executable, "-m", "benchmarks.serving", "--child", "ingest", "--home", str(home),
                               "--n", str(n)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    time.sleep(1.0)  # let it start and import
    started = time.time()
    for i in range(0, n, BATCH):
        clf.predict_many(texts[i:i + BATCH])
    predicted = time.time()
    clf.close()
    out, _ = worker.communicate(timeout=600)
    if worker.returncode != 0:
        raise RuntimeError("the ingesting process failed")
    report = json.loads(out.strip().splitlines()[-1])
    elapsed = report["done_at"] - started
    return {"rows_per_s": n / elapsed, "elapsed_s": elapsed, "predict_s": predicted - started, "files": report["files"]}


def ingest_only(home: Path, n: int) -> dict[str, Any]:
    """The DuckDB side alone: n predictions logged to the spool first (no worker), then ``ingest_spool`` timed
    until all n rows are stored (the worker catching up on a backlog)."""
    from engine.classifier import Classifier
    from engine.clock import utcnow
    from engine.context import Context
    from engine.ingest import ingest_spool

    settings = _settings(home)
    texts = _texts(n)
    clf = Classifier(settings=settings, log_queries=True, source="bench")
    for i in range(0, n, BATCH):
        clf.predict_many(texts[i:i + BATCH])
    clf.close()
    ctx = Context.open(settings)
    before = _stored(ctx.db)
    started = time.perf_counter()
    files = 0
    while True:
        got = ingest_spool(ctx.db, settings.spool_dir, clock=utcnow)
        files += got.files
        if not got.files:
            break
    elapsed = time.perf_counter() - started
    stored = _stored(ctx.db) - before
    if stored != n:
        raise RuntimeError(f"ingest stored {stored} rows, expected {n}")
    return {"rows_per_s": n / elapsed, "elapsed_s": elapsed, "files": files}


def per_row_insert_baseline(home: Path, rows: int) -> dict[str, Any]:
    """The same kind of logged rows, one INSERT (autocommit) each, one connection, on a fresh store."""
    import uuid
    from datetime import datetime

    import duckdb

    from store import open_store

    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    path = home / "retrainer.duckdb"
    open_store(path)  # the real schema (the log has no id index since migration 3, as in the ingest)
    texts = _texts(rows)
    records = [(uuid.uuid4().hex, datetime.utcnow(), t, "track_order", 0.8, "v0001", "bench") for t in texts]
    import store.db as store_db
    store_db._memory_connection().close()  # make sure nothing in this process holds the file
    store_db._connection = None
    con = duckdb.connect(str(path))
    started = time.perf_counter()
    for r in records:
        con.execute("INSERT INTO queries (id, ts, text, predicted_label, confidence, model_version, source) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", r)
    elapsed = time.perf_counter() - started
    con.close()
    return {"rows_per_s": rows / elapsed, "rows": rows, "elapsed_s": elapsed}


def run(work: Path, *, quick: bool) -> SuiteResult:
    n_latency = 10_000 if quick else 100_000
    n_logged = 20_000 if quick else 100_000
    n_baseline = 2_000 if quick else 5_000
    result = SuiteResult()
    home = work / "serving-store"
    say("serving: training the demo model (2,000 labelled rows, one retrain)")
    build_model_store(home)
    say(f"serving: latency, {n_latency:,} predictions with logging on and {n_latency:,} off")
    lat = added_latency(home, n_latency)
    say(f"serving: logging throughput, {n_logged:,} predictions to DuckDB through the spool (3 runs)")

    def fresh_then(measure: Callable[[Path, int], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            build_model_store(home)
            return measure(home, n_logged)
        return run

    through, runs = middle_of_three(fresh_then(logging_throughput), key="rows_per_s")
    say(f"serving: spool -> DuckDB alone, {n_logged:,} rows (3 runs)")
    ingest, ingests = middle_of_three(fresh_then(ingest_only), key="rows_per_s")
    say(f"serving: baseline, {n_baseline:,} single-row INSERTs (3 runs)")
    base, bases = middle_of_three(lambda: per_row_insert_baseline(work / "serving-baseline", n_baseline), key="rows_per_s")
    result.rows += [
        Row("serving", "predict p50 added by logging", lat["added_p50"], "ms", baseline=None, target="–",
            note=f"on {lat['on_p50']:.3f} / off {lat['off_p50']:.3f} ms"),
        Row("serving", "predict p99 added by logging", lat["added_p99"], "ms", target="< 1 ms",
            passed=lat["added_p99"] < 1.0, note=f"on {lat['on_p99']:.3f} / off {lat['off_p99']:.3f} ms"),
        Row("serving", "single-query Classifier.predict p50 (logging on)", lat["on_p50"], "ms", baseline=lat["bare_p50"],
            target="<= 1.3x baseline", passed=lat["on_p50"] <= 1.3 * lat["bare_p50"],
            note=f"baseline: the bare fitted pipeline's predict_proba on the same texts, interleaved; "
                 f"{lat['on_p50'] / lat['bare_p50']:.2f}x; load average {_loadavg()}"),
        # End to end is bounded by the model's own predict speed, not by logging: shown, not judged.
        Row("serving", "predict + log + store, end to end", through["rows_per_s"], "rows/s",
            baseline=base["rows_per_s"], higher_is_better=True,
            note=f"{through['predict_s']:.2f} of {through['elapsed_s']:.2f} s is the model predicting"),
        Row("serving", "logging throughput: spool -> DuckDB", ingest["rows_per_s"], "rows/s",
            baseline=base["rows_per_s"], target=">= 100x baseline", passed=ingest["rows_per_s"] >= 100 * base["rows_per_s"],
            higher_is_better=True),
    ]
    result.details.append("\n".join([
        f"### Serving: median of {ROUNDS} rounds (latency), median of 3 runs (throughput)",
        "",
        f"- Latency: {n_latency:,} predictions each with logging on and off, alternating query by query; "
        f"p50 on {lat['on_p50']:.3f} ms vs off {lat['off_p50']:.3f} ms; p99 on {lat['on_p99']:.3f} ms vs off "
        f"{lat['off_p99']:.3f} ms; the bare pipeline's `predict_proba` p50 {lat['bare_p50']:.3f} ms, p99 "
        f"{lat['bare_p99']:.3f} ms (Classifier.predict with logging: {lat['on_p50'] / lat['bare_p50']:.2f}x at p50). "
        f"Load average {_loadavg()}. Per round (on/off p99): "
        + ", ".join(f"{r['on_p99']:.3f}/{r['off_p99']:.3f}" for r in lat["rounds"]) + ".",
        f"- Throughput: {n_logged:,} predictions (`predict_many`, batches of {BATCH}) logged and stored in "
        f"{through['elapsed_s']:.2f} s end to end ({through['predict_s']:.2f} s of it predicting, "
        f"{through['files']} spool files) = {through['rows_per_s']:,.0f} rows/s; runs: "
        + ", ".join(f"{r['rows_per_s']:,.0f}" for r in runs) + " rows/s.",
        f"- Spool -> DuckDB alone (the worker catching up on a backlog of {n_logged:,} logged predictions, "
        f"{ingest['files']} spool files): " + ", ".join(f"{r['rows_per_s']:,.0f}" for r in ingests) + " rows/s.",
        f"- Baseline: {n_baseline:,} rows, one `INSERT` each (autocommit, one connection, the same schema, no index on the log): "
        + ", ".join(f"{b['rows_per_s']:,.0f}" for b in bases) + " rows/s.",
    ]))
    return result


def _loadavg() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving")
    parser.add_argument("--child", choices=["ingest"], required=True)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--n", type=int, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(child_ingest(args.home, args.n)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
