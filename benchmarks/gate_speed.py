"""Gate-speed suite: the retrain cycle's scoring stage, statistics and slow-decay guard included, on 20,000 rows.

Models: real pipelines (``engine.training.fit``) trained on demo intents
(``demo.intents.IntentGenerator``): the champion on 2,000 balanced rows, the candidate
on 6,000 rows drawn later in the demo's drift, and three older deployed versions (2,000
rows each, other seeds) saved in a registry folder as the worker saves them. Evaluation
set: 20,000 labelled demo rows from later still. Nothing of this is timed.

Timed, in the order ``engine.retrain._cycle`` runs it: ``predict_and_calibrate`` with the
candidate (labels and ECE from one ``predict_proba`` pass) and keeping its answers in the
prediction cache, ``score_predictions``, ``majority_baseline``, the champion's answers,
``score_predictions``, ``stats.compare`` (McNemar and the paired bootstrap, the default
1,000 resamples), the slow-decay guard (three older versions re-scored: each loaded from
the registry and predicted, or answered from the cache), then ``decide`` in both modes.

Two ways, same run, same rows: *without the caches* (as before issue 15: the champion and
each older version predict all 20,000 texts, the candidate's TF-IDF analyses every text, the
bootstrap draws 20 million row indices) and *with the caches* in their steady state: every
version answered the previous retrain's evaluation set and its n-grams were counted
(engine/evaluation_counts.py), 1% of today's texts (200) are new, so only those are predicted
and analysed, and the bootstrap draws counts per cell (engine/stats.py). The caches' first run
(every version cold) costs what *without* costs plus writing the files; it is given in the
details. Median of 3 runs.

The same gate as the retrain cycle runs it: ``engine.retrain._judge`` on a real data directory
in which v0001-v0004 were registered and deployed through the lifecycle (pointer, alias history),
with the caches in the same steady state, against (same run, alternating) the code path before
the evaluation counts and the per-cell bootstrap (``before=True``: every model answers through
its own ``predict``/``predict_proba``, the bootstrap draws row indices; the prediction cache, the
text keys hashed once, the label encoding and the bootstrap's whole-number arithmetic landed with
them and are the same in both, so this baseline is faster than the code before them was), and
against the same call with empty caches; its steps (the candidate's prediction, loading the
champion, the statistics, the guard) timed one by one.

Baseline of the statistics (same run, same predictions): scikit-learn's metrics,
``accuracy_score`` and ``f1_score(average="macro")`` for both models, and a bootstrap that
resamples the rows and calls both again for each resample. It is capped at
``NAIVE_RESAMPLES`` resamples and its time scaled to 1,000 (it is linear in resamples).

Run: ``python -m benchmarks.gate_speed [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Row, SuiteResult, median, print_outcome, say

SUITE = "gate_speed"
EVAL_ROWS = 20_000
RESAMPLES = 1000
TARGET_S = 1.0
OLDER_VERSIONS = 3   # engine.retrain.BEST_TO_RESCORE
NEW_SHARE = 0.01     # texts new since the previous retrain, in the cache's steady state


def prepare(work: Path, *, eval_rows: int = EVAL_ROWS, champion_rows: int = 2000,
            candidate_rows: int = 6000) -> dict[str, Any]:
    """The fitted models (older ones saved in a registry under ``work``) and the evaluation set (untimed)."""
    import shutil

    import pandas as pd

    from engine import registry
    from demo.intents import INTENTS, IntentGenerator
    from engine.training import fit

    frame = lambda examples: pd.DataFrame({"text": [e.text for e in examples], "label": [e.label for e in examples]})  # noqa: E731
    champion_train = frame(IntentGenerator(seed=21).balanced(max(1, champion_rows // len(INTENTS))))
    candidate_train = frame(IntentGenerator(seed=22).sample(candidate_rows, progress=0.4))
    eval_set = frame(IntentGenerator(seed=23).sample(eval_rows, progress=0.5))
    folder = work / "gate_speed"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "models").mkdir(parents=True)
    champion = fit(champion_train, seed=0).pipeline
    older = []
    for k in range(OLDER_VERSIONS):
        pipeline = fit(frame(IntentGenerator(seed=31 + k).sample(champion_rows, progress=0.1 * k)), seed=0).pipeline
        older.append(registry.save_model(folder / "models", registry.version_name(k + 1), pipeline))
    return {"champion": champion, "champion_saved": registry.save_model(folder / "models", "v0004", champion),
            "candidate": fit(candidate_train, seed=0).pipeline, "older": older, "folder": folder,
            "train": candidate_train, "eval": eval_set}


def prime_cache(prep: dict[str, Any], *, new_share: float = NEW_SHARE):
    """A prediction cache in which every version answered all but the last ``new_share`` of the texts (untimed)."""
    import shutil

    from engine import registry
    from engine.prediction_cache import PredictionCache

    folder = prep["folder"] / "cache"
    shutil.rmtree(folder, ignore_errors=True)
    cache = PredictionCache(folder)
    texts = prep["eval"]["text"].tolist()
    seen = texts[:len(texts) - int(round(new_share * len(texts)))]
    if not seen:
        return cache
    for saved in [prep["champion_saved"], *prep["older"]]:
        model = registry.load_model(prep["folder"] / "models", saved.version, sha256=saved.sha256,
                                    sklearn_version=saved.sklearn_version)
        cache.store(saved.version, saved.sha256, seen, model.predict(seen))
    return cache


def prime_counts(prep: dict[str, Any], *, new_share: float = NEW_SHARE) -> Path:
    """A folder of evaluation counts in which all but the last ``new_share`` of the texts were counted (untimed)."""
    import shutil

    from engine.evaluation_counts import EvaluationCounts

    folder = prep["folder"] / "counts"
    shutil.rmtree(folder, ignore_errors=True)
    texts = prep["eval"]["text"].tolist()
    seen = texts[:len(texts) - int(round(new_share * len(texts)))]
    if seen:
        EvaluationCounts(seen, folder=folder).predict(prep["champion"], seen)
    return folder


def gate_once(prep: dict[str, Any], *, cache=None, counts_folder: Path | None = None,
              resamples: int = RESAMPLES) -> dict[str, Any]:
    """The scoring stage's gate work, each step timed (seconds). ``cache``: a PredictionCache, or None
    for the code path before issue 15 (no cache, no evaluation counts, the bootstrap drawing rows);
    ``counts_folder``: where the evaluation counts are kept (with ``cache``; None: counted in memory)."""
    from engine import registry
    from engine.config import Settings
    from engine.evaluation import majority_baseline, predict_and_calibrate, predict_labels, score_model, score_predictions
    from engine.evaluation_counts import EvaluationCounts
    from engine.gate import decide
    from engine.stats import compare

    s = Settings()
    eval_set, clock = prep["eval"], time.perf_counter
    t: dict[str, float] = {}

    def timed(name: str, fn, *args, **kwargs):
        started, cpu_started = clock(), time.process_time()
        out = fn(*args, **kwargs)
        t[name] = t.get(name, 0.0) + clock() - started
        t[f"cpu_{name}"] = t.get(f"cpu_{name}", 0.0) + time.process_time() - cpu_started
        return out

    def load(saved):
        return registry.load_model(prep["folder"] / "models", saved.version, sha256=saved.sha256,
                                   sklearn_version=saved.sklearn_version)

    def guard():  # engine.retrain._best_deployed's re-scoring of the older versions
        scores = []
        for saved in prep["older"]:
            if cache is None:
                scores.append(score_model(load(saved), eval_set))
            else:
                scores.append(score_predictions(truth, cache.predict(saved.version, saved.sha256, texts,
                                                                     load=lambda saved=saved: load(saved),
                                                                     predict=counts.predict)))
        return scores

    cpu = time.process_time()
    truth, texts = eval_set["label"].tolist(), eval_set["text"].tolist()
    counts = None if cache is None else timed("predict", EvaluationCounts, texts, folder=counts_folder)
    cand_pred, ece = timed("predict", predict_and_calibrate, prep["candidate"], eval_set, counts=counts)
    if cache is not None:
        timed("predict", cache.store, "v0005", "ef" * 32, texts, cand_pred)
    candidate = timed("score", score_predictions, truth, cand_pred)
    baseline = timed("score", majority_baseline, prep["train"], eval_set)
    if cache is None:
        champ_pred = timed("predict", predict_labels, prep["champion"], eval_set)
    else:
        saved = prep["champion_saved"]
        champ_pred = timed("predict", cache.predict, saved.version, saved.sha256, texts, load=lambda: prep["champion"],
                           predict=counts.predict)
    champion = timed("score", score_predictions, truth, champ_pred)
    paired = timed("compare", compare, truth, cand_pred, champ_pred, resamples=resamples, seed=s.seed,
                   draw="rows" if cache is None else "auto")
    older = timed("guard", guard)
    best_version, best = max([("v0004", champion)] + [(o.version, sc) for o, sc in zip(prep["older"], older)],
                             key=lambda vs: (vs[1].macro_f1, vs[1].accuracy))
    decisions = {}
    for mode in ("point", "noninferiority"):
        decisions[mode] = timed("decide", decide, candidate=candidate, champion=champion, baseline=None,
                                tolerance=s.tolerance, mode=mode, paired=paired, min_eval_rows=s.min_eval_rows,
                                min_class_support=s.min_class_support, per_class_tolerance=s.per_class_tolerance,
                                per_class_min_support=s.per_class_min_support, best=best,
                                best_version=best_version, cumulative_tolerance=s.cumulative_tolerance)
    t["prediction"] = t["predict"]
    t["statistics"] = t["score"] + t["compare"] + t["decide"]
    t["total"] = t["prediction"] + t["statistics"] + t["guard"]
    t["cpu"] = time.process_time() - cpu  # this process's CPU time, all its threads: what load on the machine cannot inflate
    t["cpu_prediction"] = t["cpu_predict"]
    t["cpu_statistics"] = t["cpu"] - t["cpu_prediction"] - t["cpu_guard"]
    return {"times": t, "truth": truth, "candidate_pred": cand_pred, "champion_pred": champ_pred, "older": older,
            "candidate": candidate, "champion": champion, "baseline": baseline, "ece": ece, "paired": paired,
            "decisions": decisions}


# -- the gate as the retrain cycle runs it (engine.retrain._judge), on a real data directory ---------------

JUDGE_STEPS = {  # engine.retrain's names that _judge calls, timed one by one
    "predict_and_calibrate": "candidate's labels and ECE",
    "_champion": "loading the champion as predictors do",
    "compare": "paired bootstrap and McNemar",
    "_best_deployed": "slow-decay guard",
}


def judge_setup(prep: dict[str, Any]):
    """A data directory in which v0001-v0003 (the older versions) and v0004 (the champion) were each
    deployed through the lifecycle, the pointer names v0004, and the candidate is saved as v0005.

    Returns (ctx, TrainingSet of the suite's train and evaluation rows, the candidate's SavedModel).
    Untimed; the prediction cache starts empty (``prime_judge_cache`` fills it).
    """
    import hashlib
    import shutil
    from datetime import datetime

    from engine import registry
    from engine.config import load_settings
    from engine.context import Context
    from engine.dataset import Funnel, TrainingSet
    from engine.lifecycle import ModelRegistry
    from store.vocabulary import AssignmentKind

    home = prep["folder"] / "judge-home"
    shutil.rmtree(home, ignore_errors=True)
    ctx = Context.open(load_settings(env={}, path=None, home=home))
    models = ModelRegistry(ctx)
    ts = datetime(2026, 11, 1)
    saved_all = [*prep["older"], prep["champion_saved"]]
    for saved in saved_all:
        shutil.copy(registry.model_file(prep["folder"] / "models", saved.version), registry.model_file(ctx.settings.registry_dir, saved.version))
        with ctx.db.write() as con:
            models.register(con, {"version": saved.version, "created_at": ts, "file": saved.file, "sha256": saved.sha256,
                                  "size_bytes": saved.size_bytes, "sklearn_version": saved.sklearn_version,
                                  "labels": sorted(prep["train"]["label"].unique()), "params": {}, "train_rows": 0},
                            ts=ts)
        version = models.get(saved.version)
        models.switch(version, kind=AssignmentKind.DEPLOY, ts=ts)
        with ctx.db.write() as con:
            models.promote(con, saved.version, previous=None, kind=AssignmentKind.DEPLOY, actor="benchmark",
                           reason=f"Deployed {saved.version}.", ts=ts)
    candidate = registry.save_model(ctx.settings.registry_dir, "v0005", prep["candidate"])
    train, evaluation = prep["train"], prep["eval"]
    data = TrainingSet(train=train, eval=evaluation,
                       funnel=Funnel(len(train) + len(evaluation), 0, 0, 0, 0, len(evaluation), len(train), len(evaluation)),
                       labels=tuple(sorted(train["label"].unique())),
                       data_hash=hashlib.sha256(train.to_json().encode()).hexdigest())
    return ctx, data, candidate


def prime_judge_cache(ctx, prep: dict[str, Any], *, new_share: float = NEW_SHARE) -> None:
    """The data directory's caches in their steady state: every deployed version answered all but the
    last ``new_share`` of the evaluation texts, whose n-grams were counted too (untimed)."""
    import shutil

    from engine import registry
    from engine.retrain import evaluation_counts, prediction_cache

    cache = prediction_cache(ctx)
    shutil.rmtree(cache.folder, ignore_errors=True)
    texts = prep["eval"]["text"].tolist()
    seen = texts[:len(texts) - int(round(new_share * len(texts)))]
    counts = evaluation_counts(ctx, seen)
    shutil.rmtree(counts.folder, ignore_errors=True)
    for saved in [*prep["older"], prep["champion_saved"]]:
        model = registry.load_model(ctx.settings.registry_dir, saved.version, sha256=saved.sha256,
                                    sklearn_version=saved.sklearn_version)
        cache.store(saved.version, saved.sha256, seen, counts.predict(model, seen))


def empty_judge_caches(ctx) -> None:
    """Delete the data directory's prediction cache and evaluation counts."""
    import shutil

    from engine.retrain import evaluation_counts, prediction_cache

    shutil.rmtree(prediction_cache(ctx).folder, ignore_errors=True)
    shutil.rmtree(evaluation_counts(ctx, []).folder, ignore_errors=True)


class _Ordinary:
    """What the gate did before the evaluation counts: each model answers through its own methods."""

    @staticmethod
    def predict_proba(model, texts):
        return model.predict_proba(texts)

    @staticmethod
    def predict(model, texts):
        return model.predict(texts)


def judge_once(ctx, data, candidate_saved, prep: dict[str, Any], *, before: bool = False) -> dict[str, Any]:
    """``engine.retrain._judge`` once, as a retrain's scoring stage runs it: total and the steps of
    ``JUDGE_STEPS`` in seconds (wall), and the whole call's CPU time of this process.

    ``before``: the code path before the evaluation counts and the per-cell bootstrap (every model
    answers through its own predict/predict_proba; ``compare`` draws row indices)."""
    import functools

    from engine import retrain
    from engine.training import FittedModel

    fitted = FittedModel(prep["candidate"], {}, len(data.train), data.labels, 0.0, candidate_saved.sklearn_version)
    t: dict[str, float] = {}
    originals = {name: getattr(retrain, name) for name in [*JUDGE_STEPS, "evaluation_counts"]}
    if before:
        retrain.evaluation_counts = lambda ctx, texts, keys=None: _Ordinary()
        retrain.compare = functools.partial(originals["compare"], draw="rows")

    def timed(name: str, fn):
        def call(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                t[name] = t.get(name, 0.0) + time.perf_counter() - started
        return call

    for name in JUDGE_STEPS:
        setattr(retrain, name, timed(name, getattr(retrain, name)))
    try:
        cpu, started = time.process_time(), time.perf_counter()
        judgement = retrain._judge(ctx, fitted, data, candidate_saved.version, candidate_saved.sha256)
        t["total"] = time.perf_counter() - started
        t["cpu"] = time.process_time() - cpu
    finally:
        for name, fn in originals.items():
            setattr(retrain, name, fn)
    t["rest"] = t["total"] - sum(t.get(name, 0.0) for name in JUDGE_STEPS)
    return {"times": t, "judgement": judgement}


def measure_judge(prep: dict[str, Any], *, runs: int = 3) -> dict[str, Any]:
    """``judge_once`` ``runs`` times each, alternating: with the caches in their steady state (now),
    the same before the evaluation counts and the per-cell bootstrap (``before=True``), and with
    empty caches; the run with the median total of each, every total, and the load average."""
    ctx, data, candidate = judge_setup(prep)
    prime_judge_cache(ctx, prep)
    judge_once(ctx, data, candidate, prep)  # warm up (imports, first-call costs)
    judge_once(ctx, data, candidate, prep, before=True)
    warm, before, cold = [], [], []
    for _ in range(runs):
        prime_judge_cache(ctx, prep)
        warm.append(judge_once(ctx, data, candidate, prep)["times"])
        prime_judge_cache(ctx, prep)
        before.append(judge_once(ctx, data, candidate, prep, before=True)["times"])
        empty_judge_caches(ctx)
        cold.append(judge_once(ctx, data, candidate, prep)["times"])
    mid = lambda xs: sorted(xs, key=lambda t: t["total"])[len(xs) // 2]  # noqa: E731
    return {"warm": mid(warm), "before": mid(before), "cold": mid(cold), "warm_runs": [t["total"] for t in warm],
            "before_runs": [t["total"] for t in before], "cold_runs": [t["total"] for t in cold],
            "load": _loadavg()}


def naive_statistics(truth: list[str], cand: list[str], champ: list[str], *, resamples: int,
                     seed: int = 0) -> dict[str, Any]:
    """scikit-learn's metrics for both models, and a row-resampling bootstrap calling them per resample."""
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score

    y, a, b = (np.asarray(v, dtype=object) for v in (truth, cand, champ))
    clock = time.perf_counter

    def macro(t, p):  # our definition: the labels present in the truth
        return f1_score(t, p, labels=sorted(set(t.tolist())), average="macro", zero_division=0)

    started = clock()
    point = {"candidate": (accuracy_score(y, a), macro(y, a)), "champion": (accuracy_score(y, b), macro(y, b))}
    scoring = clock() - started
    rng = np.random.default_rng(seed)
    acc, f1 = np.empty(resamples), np.empty(resamples)
    started = clock()
    for i in range(resamples):
        rows = rng.integers(0, len(y), size=len(y))
        yt, at, bt = y[rows], a[rows], b[rows]
        acc[i] = accuracy_score(yt, at) - accuracy_score(yt, bt)
        f1[i] = macro(yt, at) - macro(yt, bt)
    boot = clock() - started
    return {"scoring_s": scoring, "bootstrap_s": boot, "per_resample_s": boot / resamples, "point": point,
            "accuracy_interval": tuple(np.quantile(acc, [0.025, 0.975])),
            "macro_f1_interval": tuple(np.quantile(f1, [0.025, 0.975]))}


def run(work: Path, *, quick: bool) -> SuiteResult:
    naive_resamples = 20 if quick else 50
    say(f"gate_speed: training {2 + OLDER_VERSIONS} demo models, making a {EVAL_ROWS:,}-row evaluation set")
    prep = prepare(work)
    say(f"gate_speed: the gate's scoring stage with the guard, 3 runs each without and with the caches")
    gate_once(prep)  # warm up (imports, first-call costs)
    cold_cache = prime_cache(prep, new_share=1.0)  # nothing answered or counted yet: the caches' first run
    started = time.perf_counter()
    gate_once(prep, cache=cold_cache, counts_folder=prime_counts(prep, new_share=1.0))
    cold = time.perf_counter() - started
    without, with_cache = [], []
    for _ in range(3):  # alternate, so load on the machine falls on both alike
        without.append(gate_once(prep))
        with_cache.append(gate_once(prep, cache=prime_cache(prep), counts_folder=prime_counts(prep)))
    runs = sorted(with_cache, key=lambda r: r["times"]["total"])
    mid = runs[1]
    t = {k: median([r["times"][k] for r in runs]) for k in mid["times"]}
    w = {k: median([r["times"][k] for r in without]) for k in without[0]["times"]}
    same = all(a.accuracy == b.accuracy and a.macro_f1 == b.macro_f1 for r, q in zip(with_cache, without)
               for a, b in zip([r["champion"], *r["older"]], [q["champion"], *q["older"]]))
    say(f"gate_speed: baseline, scikit-learn metrics and a {naive_resamples}-resample naive bootstrap "
        f"(scaled to {RESAMPLES:,})")
    naive = naive_statistics(mid["truth"], mid["candidate_pred"], mid["champion_pred"], resamples=naive_resamples)
    naive_boot = naive["per_resample_s"] * RESAMPLES
    naive_stats = naive["scoring_s"] + naive_boot
    ours_point = {"candidate": (mid["candidate"].accuracy, mid["candidate"].macro_f1),
                  "champion": (mid["champion"].accuracy, mid["champion"].macro_f1)}
    agree = max(abs(x - y) for side in ours_point for x, y in zip(ours_point[side], naive["point"][side]))
    say("gate_speed: engine.retrain._judge on a data directory with 4 deployed versions, 3 runs each with the "
        "caches in their steady state, the same before the evaluation counts and the per-cell bootstrap, and "
        "with empty caches")
    judged = measure_judge(prep)
    load = _loadavg()
    result = SuiteResult()
    scaled = f"naive bootstrap: {naive_resamples} resamples timed, scaled to {RESAMPLES:,}"
    jw, jb, jc = judged["warm"], judged["before"], judged["cold"]
    result.rows += [
        Row(SUITE, f"gate as the retrain cycle runs it (engine.retrain._judge), {EVAL_ROWS // 1000}k rows, guard "
            "included", 1000 * jw["total"], "ms", baseline=1000 * jb["total"], target="< 1 s",
            passed=jw["total"] < TARGET_S,
            note=f"baseline: the same call, same run, without the evaluation counts and with the row bootstrap "
                 f"(before); load average {judged['load']}"),
        Row(SUITE, "  the same, CPU time of the process", 1000 * jw["cpu"], "ms", baseline=1000 * jb["cpu"]),
    ] + [Row(SUITE, f"  of which {what} ({name})", 1000 * jw.get(name, 0.0), "ms", baseline=1000 * jb.get(name, 0.0))
         for name, what in JUDGE_STEPS.items()] + [
        Row(SUITE, "  of which the rest (scores, baseline, champion's answers, decide)", 1000 * jw["rest"], "ms",
            baseline=1000 * jb["rest"]),
        Row(SUITE, "  the same with empty caches (first retrain on this evaluation set)", 1000 * jc["total"], "ms"),
    ]
    result.rows += [
        Row(SUITE, f"gate with statistics and guard, {EVAL_ROWS // 1000}k rows, caches (total)",
            1000 * t["total"], "ms", baseline=1000 * w["total"], target="< 1 s", passed=t["total"] < TARGET_S,
            note=f"baseline: the same without the caches (every version predicts every text, the bootstrap draws "
                 f"rows); load average {load}"),
        Row(SUITE, "  the same, CPU time of the process", 1000 * t["cpu"], "ms", baseline=1000 * w["cpu"],
            note=f"load average {load}"),
        Row(SUITE, "  of which prediction (candidate + champion)", 1000 * t["prediction"], "ms",
            baseline=1000 * w["prediction"]),
        Row(SUITE, f"  of which slow-decay guard ({OLDER_VERSIONS} older versions)", 1000 * t["guard"], "ms",
            baseline=1000 * w["guard"]),
        Row(SUITE, "  of which statistics (scores, bootstrap, decide x2)", 1000 * t["statistics"], "ms",
            baseline=1000 * naive_stats, note=f"baseline: scikit-learn metrics; {scaled}"),
        Row(SUITE, f"paired bootstrap, {RESAMPLES:,} resamples", 1000 * t["compare"], "ms", baseline=1000 * naive_boot),
    ]
    p = mid["paired"]
    d = mid["decisions"]
    result.details.append("\n".join([
        f"### Gate speed: {EVAL_ROWS:,} evaluation rows, {RESAMPLES:,} resamples, slow-decay guard over "
        f"{OLDER_VERSIONS} older versions, median of 3 runs (load average {load})",
        "",
        f"- With the caches (steady state: {NEW_SHARE:.0%} of the texts new since the last retrain): total "
        f"{1000 * t['total']:.0f} ms (runs: " + ", ".join(f"{1000 * r['times']['total']:.0f}" for r in runs)
        + f" ms): predicting {1000 * t['predict']:.0f} ms (the candidate's labels and ECE from one `predict_proba` "
        f"pass over the kept n-gram counts, and keeping them; the champion's {EVAL_ROWS * NEW_SHARE:,.0f} new texts), "
        f"guard "
        f"{1000 * t['guard']:.0f} ms, scores and majority baseline {1000 * t['score']:.0f} ms, `stats.compare` "
        f"{1000 * t['compare']:.0f} ms, `decide` x2 {1000 * t['decide']:.1f} ms.",
        f"- Without the caches (every version predicts every text, the bootstrap draws rows, as before): total "
        f"{1000 * w['total']:.0f} ms "
        f"(runs: " + ", ".join(f"{1000 * r['times']['total']:.0f}" for r in without) + f" ms): predicting "
        f"{1000 * w['predict']:.0f} ms, guard {1000 * w['guard']:.0f} ms. Same scores for every version both ways: "
        f"{'yes' if same else 'NO'}. The caches' first run (nothing kept yet): {1000 * cold:.0f} ms.",
        f"- CPU time of the process: {1000 * t['cpu']:.0f} ms with the caches, {1000 * w['cpu']:.0f} ms without; "
        f"load average {load}. Other work shares the 2 cores, so wall time above CPU time is time spent waiting for "
        "a core; CPU time above wall time is the bootstrap's matrix products running on both cores.",
        f"- Outcome: candidate accuracy {mid['candidate'].accuracy:.3f} vs champion {mid['champion'].accuracy:.3f}; "
        f"macro-F1 difference {p.macro_f1.difference:+.4f}, 95% interval [{p.macro_f1.low:+.4f}, {p.macro_f1.high:+.4f}]; "
        f"McNemar p = {p.mcnemar.p_value:.3g}; point mode: {d['point'].outcome}, noninferiority: "
        f"{d['noninferiority'].outcome}.",
        f"- Baseline of the statistics: `accuracy_score` + `f1_score` for both models {1000 * naive['scoring_s']:.0f} ms "
        f"(same figures as ours to {agree:.1e}); a row-resampling bootstrap calling them per resample, "
        f"{naive_resamples} resamples in {naive['bootstrap_s']:.2f} s = {1000 * naive['per_resample_s']:.0f} ms a "
        f"resample, so {naive_boot:.1f} s for {RESAMPLES:,} (scaled, not run). Its macro-F1 interval: "
        f"[{naive['macro_f1_interval'][0]:+.4f}, {naive['macro_f1_interval'][1]:+.4f}] (other draws than ours).",
        f"- The same gate through `engine.retrain._judge` (what a retrain's scoring stage calls: the candidate's "
        f"answers from the kept n-gram counts and stored in the cache, the champion loaded as predictors load it and "
        f"answered from the cache, the paired statistics, the slow-decay guard's ranked query and cached answers, "
        f"`decide`), on a data directory where v0001-v0004 were deployed through the lifecycle: "
        f"{1000 * jw['total']:.0f} ms (runs: " + ", ".join(f"{1000 * x:.0f}" for x in judged["warm_runs"])
        + f" ms; CPU {1000 * jw['cpu']:.0f} ms): "
        + ", ".join(f"{name} {1000 * jw.get(name, 0.0):.0f} ms" for name in JUDGE_STEPS)
        + f", the rest {1000 * jw['rest']:.0f} ms. Before (same run, alternating: no evaluation counts, the bootstrap "
        f"drawing rows): {1000 * jb['total']:.0f} ms (runs: " + ", ".join(f"{1000 * x:.0f}" for x in judged["before_runs"])
        + f" ms; CPU {1000 * jb['cpu']:.0f} ms): "
        + ", ".join(f"{name} {1000 * jb.get(name, 0.0):.0f} ms" for name in JUDGE_STEPS)
        + f", the rest {1000 * jb['rest']:.0f} ms. With empty caches: {1000 * jc['total']:.0f} ms (runs: "
        + ", ".join(f"{1000 * x:.0f}" for x in judged["cold_runs"]) + f" ms). Load average {judged['load']}.",
        "- Where the cache lives and when it is dropped: `engine/prediction_cache.py` (one Parquet file per version "
        "in `<home>/cache/predictions`, keyed by the model file's SHA-256, the scikit-learn version and a 64-bit hash "
        "of each text; a file for another model file or scikit-learn is never read and is deleted at the next store); "
        "`engine/evaluation_counts.py` (one file per analyzer configuration in `<home>/cache/counts`, named after a "
        "fingerprint of the analyzer's settings and the scikit-learn version, rows keyed by the same text hash).",
    ]))
    return result


def _loadavg() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gate_speed")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--work", type=Path, default=Path("/tmp/retrainer-bench"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    outcome = run(args.work, quick=args.quick)
    print_outcome("gate_speed", outcome, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
