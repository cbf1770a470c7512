"""Retrain suite (issue 5, item 2): one full retrain cycle as the log grows, beside a plain pipeline.

Stores (built once per size, copied fresh for every run): ``n`` logged queries of the
demo's intents over 60 days, each with the serving model's prediction and confidence
(right 88% of the time; wrong predictions get lower confidences), 10% of them with a
person's true label (feedback), plus the 2,000 imported labelled rows that trained the
serving model v0001. So the cycle's input is ``1.1 n + 2,000`` labelled rows: ``n``
pseudo labels and ``0.1 n + 2,000`` human labels.

Each run is a fresh child process that calls :func:`engine.retrain.run_cycle` (trigger
"manual"): read the log from DuckDB, build and filter the training set, fit, save, score
candidate and champion with the paired statistics, gate, validate, deploy. Wall time,
the time of each stage (as the cycle records it) and the peak RSS of the process.

Baseline (same data, same run): the cycle's own clean training and evaluation sets fed to
a plain scikit-learn ``TfidfVectorizer(ngram_range=(1, 2))`` + ``LogisticRegression``
pipeline; its fit + predict time and accuracy, at 10k and 100k (at 1M lbfgs would take
many minutes on two cores; DESIGN.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import shutil
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import Row, SuiteResult, deploy_first_model, run_child, say

DAYS = 60
RIGHT = 0.88
FEEDBACK = 0.10
BUILD_TAG = "retrain-store-1"


def _settings(home: Path, **overrides: Any):
    from engine.config import load_settings

    return load_settings(env={}, path=None, home=home, **overrides)


def _peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not getrusage's ru_maxrss: Linux carries
    ru_maxrss across exec, so a child would report at least its parent's size at fork time."""
    with contextlib.suppress(OSError):  # not Linux: fall back below
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def store_home(work: Path, n: int) -> Path:
    return work / f"retrain-store-{n}"


def build_store(work: Path, n: int) -> Path:
    """The pristine store for ``n`` logged queries (kept and reused; runs copy it)."""
    home = store_home(work, n)
    marker = home / "BENCH_READY"
    if marker.exists() and marker.read_text().strip() == BUILD_TAG:
        return home
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    started = time.perf_counter()
    say(f"retrain: building a store with {n:,} logged queries")
    run_child("benchmarks.retrain", "--child", "build", "--home", str(home), "--n", str(n), timeout=1800)
    marker.write_text(BUILD_TAG + "\n")
    say(f"retrain: store of {n:,} built in {time.perf_counter() - started:.0f} s")
    return home


def child_build(home: Path, n: int) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    from engine.clock import utcnow
    from engine.context import Context
    from demo.intents import INTENTS, IntentGenerator
    from store.querylog import insert_labels, insert_queries

    ctx = Context.open(_settings(home))
    deploy_first_model(ctx, seed=3)
    examples = IntentGenerator(seed=17).sample(n, progress=0.5)
    rng = np.random.default_rng(n)
    texts = [e.text for e in examples]
    truth = np.array([e.label for e in examples], dtype=object)
    right = rng.random(n) < RIGHT
    wrong_label = np.array(INTENTS, dtype=object)[rng.integers(0, len(INTENTS), n)]
    predicted = np.where(right, truth, wrong_label)
    confidence = np.where(right, 0.35 + 0.65 * np.sqrt(rng.random(n)), 0.15 + 0.6 * rng.random(n))
    now = utcnow().replace(microsecond=0)
    offsets = np.sort(rng.integers(0, DAYS * 86_400_000, n))[::-1]
    ts = pd.Timestamp(now) - pd.to_timedelta(offsets, unit="ms")
    ids = [f"q{i:08d}" for i in range(n)]
    queries = pd.DataFrame({"id": ids, "ts": ts, "text": texts, "predicted_label": predicted, "confidence": confidence,
                            "model_version": "v0001", "source": "classifier"})
    labelled = np.flatnonzero(rng.random(n) < FEEDBACK)
    labels = pd.DataFrame({"id": [f"f{i:08d}" for i in labelled], "ts": ts[labelled] + timedelta(minutes=30),
                           "query_id": [ids[i] for i in labelled], "text": None, "label": truth[labelled],
                           "source": "feedback"})
    with ctx.db.write() as con:
        insert_queries(con, queries)
        insert_labels(con, labels)
    return {"queries": n, "feedback": len(labels)}


def child_cycle(home: Path, *, max_train_rows: int | None = None) -> dict[str, Any]:
    """One retrain cycle in this (fresh) process: wall time, stages, peak RSS, the load average at its
    start and end. ``max_train_rows``: the setting for this cycle (None: the default)."""
    import os

    from engine.context import Context
    from engine.retrain import run_cycle
    from store.retrains import get_retrain

    rss_before = _peak_rss_mb()
    load_at_start = os.getloadavg()[0]
    settings = _settings(home) if max_train_rows is None else _settings(home, max_train_rows=max_train_rows)
    ctx = Context.open(settings)
    started = time.perf_counter()
    result = run_cycle(ctx, trigger="manual", force=True)
    wall = time.perf_counter() - started
    row = get_retrain(ctx.db, result.retrain_id)
    return {"status": result.status, "reason": result.reason, "wall_s": wall, "stages": result.stages,
            "peak_rss_mb": _peak_rss_mb(), "rss_at_start_mb": rss_before,
            "load": f"{load_at_start:.1f} -> {os.getloadavg()[0]:.1f}", "max_train_rows": settings.max_train_rows,
            "rows_in": row["rows_in"], "train_rows": row["train_rows"], "eval_rows": row["eval_rows"],
            "accuracy": row["candidate_accuracy"], "macro_f1": row["candidate_macro_f1"],
            "funnel": {k: row[k] for k in ("malformed", "low_confidence", "conflicts", "duplicates", "reserved_for_eval",
                                           "over_training_cap")}}


def child_baseline(home: Path) -> dict[str, Any]:
    """The plain pipeline on the cycle's own clean sets (read and cleaned the same way, untimed)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline

    from engine.context import Context
    from engine.dataset import build_training_set, normalize_label
    from store import querylog

    settings = _settings(home)
    ctx = Context.open(settings)
    rows = querylog.training_rows(ctx.db, include_pseudo=settings.use_pseudo_labels)
    known = {normalize_label(x) for x in querylog.known_labels(ctx.db)} - {None}
    data = build_training_set(rows, known_labels=known, min_confidence=settings.min_confidence,
                              max_text_length=settings.max_text_length, eval_percent=settings.eval_percent)
    del rows
    pipeline = make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression(max_iter=1000))
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipeline.fit(data.train["text"].tolist(), data.train["label"].to_numpy())
    fitted = time.perf_counter() - started
    predicted = pipeline.predict(data.eval["text"].tolist())
    seconds = time.perf_counter() - started
    truth = data.eval["label"].to_numpy()
    return {"fit_s": fitted, "fit_predict_s": seconds, "train_rows": len(data.train), "eval_rows": len(data.eval),
            "accuracy": float(accuracy_score(truth, predicted)),
            "macro_f1": float(f1_score(truth, predicted, average="macro")), "peak_rss_mb": _peak_rss_mb()}


def _fresh_copy(work: Path, n: int) -> Path:
    run_home = work / f"retrain-run-{n}"
    shutil.rmtree(run_home, ignore_errors=True)
    shutil.copytree(store_home(work, n), run_home)
    return run_home


def measure(work: Path, n: int, *, runs: int, baseline: bool, max_train_rows: int | None = None) -> dict[str, Any]:
    """``runs`` cycles on fresh copies of the ``n`` store (median by wall time), and the plain baseline if asked;
    ``max_train_rows``: the cycles' setting (None: the default)."""
    build_store(work, n)
    cycles = []
    cap = [] if max_train_rows is None else ["--max-train-rows", str(max_train_rows)]
    for k in range(runs):
        say(f"retrain: {n:,} queries, cycle run {k + 1} of {runs}" + (f", max_train_rows {max_train_rows:,}" if cap else ""))
        cycles.append(run_child("benchmarks.retrain", "--child", "cycle", "--home", str(_fresh_copy(work, n)), *cap,
                                timeout=3600))
        say(f"retrain: {n:,} queries: {cycles[-1]['wall_s']:.1f} s, {cycles[-1]['peak_rss_mb']:,.0f} MB "
            f"(load {cycles[-1]['load']})")
        if cycles[-1]["status"] != "accepted":
            raise RuntimeError(f"retrain benchmark at {n:,}: the cycle ended {cycles[-1]['status']}: {cycles[-1]['reason']}")
    cycles.sort(key=lambda c: c["wall_s"])
    out: dict[str, Any] = {"n": n, "cycle": cycles[len(cycles) // 2], "cycles": cycles}
    if baseline:
        bases = []
        for k in range(runs):
            say(f"retrain: {n:,} queries, baseline TF-IDF + LogisticRegression run {k + 1} of {runs}")
            bases.append(run_child("benchmarks.retrain", "--child", "baseline", "--home", str(store_home(work, n)),
                                   timeout=3600))
        bases.sort(key=lambda b: b["fit_predict_s"])
        out["baseline"], out["baselines"] = bases[len(bases) // 2], bases
    shutil.rmtree(work / f"retrain-run-{n}", ignore_errors=True)
    return out


STAGE_SHORT = {"reading the log": "read", "cleaning the training set": "clean", "fitting": "fit", "saving": "save",
               "scoring": "score+gate", "validating and deploying": "validate+deploy"}


def run(work: Path, *, quick: bool) -> SuiteResult:
    sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    runs = 1 if quick else 3
    result = SuiteResult()
    measured = [measure(work, n, runs=runs, baseline=n <= 100_000) for n in sizes]
    by_n = {m["n"]: m for m in measured}
    for m in measured:
        n, c = m["n"], m["cycle"]
        base = m.get("baseline")
        label = f"{n // 1000:,}k" if n < 1_000_000 else f"{n // 1_000_000}M"
        is_1m = n == 1_000_000
        result.rows.append(Row(
            "retrain", f"cycle end to end, {label} queries", c["wall_s"], "s",
            baseline=base["fit_predict_s"] if base else None,
            target="< 90 s" if is_1m else "–", passed=(c["wall_s"] < 90) if is_1m else None,
            note=f"baseline = plain TF-IDF + LogisticRegression fit + predict only ({base['train_rows']:,} rows)"
            if base else ""))
        result.rows.append(Row("retrain", f"peak RSS, {label} queries", c["peak_rss_mb"], "MB",
                               baseline=base["peak_rss_mb"] if base else None,
                               target="< 3 GB" if is_1m else "–", passed=(c["peak_rss_mb"] < 3072) if is_1m else None))
    if 100_000 in by_n and 1_000_000 in by_n:
        growth = by_n[1_000_000]["cycle"]["wall_s"] / by_n[100_000]["cycle"]["wall_s"]
        result.rows.append(Row("retrain", "time growth 100k -> 1M queries", growth, "x", target="<= 12x",
                               passed=growth <= 12))
    if 100_000 in by_n and by_n[100_000].get("baseline"):
        ours, base = by_n[100_000]["cycle"]["accuracy"], by_n[100_000]["baseline"]["accuracy"]
        result.rows.append(Row("retrain", "accuracy at 100k (points vs plain LR)", 100 * (ours - base), "points",
                               target="within 1 point", passed=abs(ours - base) <= 0.01,
                               note=f"ours {ours:.4f}, plain LR {base:.4f}"))
    lines = [
        f"### Retrain cycle: median of {runs} fresh processes per size",
        "",
        f"Stores: n logged queries of the demo's intents over {DAYS} days (prediction right {RIGHT:.0%} of the time, "
        f"wrong ones less confident), {FEEDBACK:.0%} with a person's label, plus the 2,000 labelled rows that "
        "trained the serving model; the cycle reads all of it. Baseline: plain `TfidfVectorizer(ngram_range=(1, 2))` + "
        "`LogisticRegression(max_iter=1000)` on the cycle's own clean training set, fit + predict timed.",
        "",
        "| queries | rows in | train rows | eval rows | wall (s) | " + " | ".join(STAGE_SHORT.values())
        + " | peak RSS (MB) | accuracy | baseline fit+predict (s) | baseline accuracy | baseline RSS (MB) |",
        "|" + "---|" * (10 + len(STAGE_SHORT)),
    ]
    for m in measured:
        c, b = m["cycle"], m.get("baseline")
        stages = [f"{c['stages'].get(name, 0.0):.2f}" for name in STAGE_SHORT]
        lines.append(
            f"| {m['n']:,} | {c['rows_in']:,} | {c['train_rows']:,} | {c['eval_rows']:,} | {c['wall_s']:.1f} | "
            + " | ".join(stages)
            + f" | {c['peak_rss_mb']:,.0f} | {c['accuracy']:.4f} | "
            + (f"{b['fit_predict_s']:.1f} | {b['accuracy']:.4f} | {b['peak_rss_mb']:,.0f} |" if b else "– | – | – |"))
    lines.append("")
    lines.append("Runs (wall s): " + "; ".join(
        f"{m['n']:,}: " + ", ".join(f"{c['wall_s']:.1f}" for c in m["cycles"]) for m in measured) + ".")
    result.details.append("\n".join(lines))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.retrain")
    parser.add_argument("--child", choices=["build", "cycle", "baseline"])
    parser.add_argument("--home", type=Path)
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--max-train-rows", type=int, default=None, help="the cycle child's max_train_rows (0: no cap)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--work", type=Path, default=Path("/tmp/retrainer-bench"))
    args = parser.parse_args(argv)
    if args.child == "build":
        print(json.dumps(child_build(args.home, args.n)))
    elif args.child == "cycle":
        print(json.dumps(child_cycle(args.home, max_train_rows=args.max_train_rows)))
    elif args.child == "baseline":
        print(json.dumps(child_baseline(args.home)))
    else:
        from benchmarks.common import print_outcome

        started = time.perf_counter()
        print_outcome("retrain", run(args.work, quick=args.quick), started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
