"""Gate-speed suite: the retrain cycle's scoring stage, statistics included, on a 20,000-row evaluation set.

Models: two real pipelines (``engine.training.fit``) trained on demo intents
(``demo.intents.IntentGenerator``): the champion on 2,000 balanced rows, the candidate
on 6,000 rows drawn later in the demo's drift. Evaluation set: 20,000 labelled demo rows
from later still. Nothing of this is timed.

Timed, in the order ``engine.retrain._cycle`` runs it: ``predict_and_calibrate`` with the
candidate (labels and ECE from one ``predict_proba`` pass), ``score_predictions``,
``majority_baseline``, ``predict_labels`` with the champion, ``score_predictions``,
``stats.compare`` (McNemar and the paired bootstrap, the default 1,000 resamples), then
``decide`` in both modes (point and noninferiority, each with the guards the defaults
switch on). Split: prediction (the model calls, calibration included) and statistics
(everything else). Median of 3 runs. Left out: the slow-decay guard re-scores up to 3 more
deployed versions (each a load and a ``score_model``; the details give one re-score's time).

Baseline (same run, same predictions): what the statistics would cost with scikit-learn's
metrics, ``accuracy_score`` and ``f1_score(average="macro")`` for both models, and a
bootstrap that resamples the rows and calls both again for each resample. It is capped at
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
TARGET_S = 2.0


def prepare(*, eval_rows: int = EVAL_ROWS, champion_rows: int = 2000, candidate_rows: int = 6000) -> dict[str, Any]:
    """Two fitted models and an evaluation set from the demo's intents (untimed)."""
    import pandas as pd

    from demo.intents import INTENTS, IntentGenerator
    from engine.training import fit

    frame = lambda examples: pd.DataFrame({"text": [e.text for e in examples], "label": [e.label for e in examples]})  # noqa: E731
    champion_train = frame(IntentGenerator(seed=21).balanced(max(1, champion_rows // len(INTENTS))))
    candidate_train = frame(IntentGenerator(seed=22).sample(candidate_rows, progress=0.4))
    eval_set = frame(IntentGenerator(seed=23).sample(eval_rows, progress=0.5))
    return {"champion": fit(champion_train, seed=0).pipeline, "candidate": fit(candidate_train, seed=0).pipeline,
            "train": candidate_train, "eval": eval_set}


def gate_once(prep: dict[str, Any], *, resamples: int = RESAMPLES) -> dict[str, Any]:
    """The scoring stage's gate work, each step timed (seconds)."""
    from engine.config import Settings
    from engine.evaluation import majority_baseline, predict_and_calibrate, predict_labels, score_predictions
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

    cpu = time.process_time()
    truth = eval_set["label"].tolist()
    cand_pred, ece = timed("predict", predict_and_calibrate, prep["candidate"], eval_set)
    candidate = timed("score", score_predictions, truth, cand_pred)
    baseline = timed("score", majority_baseline, prep["train"], eval_set)
    champ_pred = timed("predict", predict_labels, prep["champion"], eval_set)
    champion = timed("score", score_predictions, truth, champ_pred)
    paired = timed("compare", compare, truth, cand_pred, champ_pred, resamples=resamples, seed=s.seed)
    decisions = {}
    for mode in ("point", "noninferiority"):
        decisions[mode] = timed("decide", decide, candidate=candidate, champion=champion, baseline=None,
                                tolerance=s.tolerance, mode=mode, paired=paired, min_eval_rows=s.min_eval_rows,
                                min_class_support=s.min_class_support, per_class_tolerance=s.per_class_tolerance,
                                per_class_min_support=s.per_class_min_support, best=champion,
                                best_version="v0001", cumulative_tolerance=s.cumulative_tolerance)
    t["prediction"] = t["predict"]
    t["statistics"] = t["score"] + t["compare"] + t["decide"]
    t["total"] = t["prediction"] + t["statistics"]
    t["cpu"] = time.process_time() - cpu  # this process's CPU time, all its threads: what load on the machine cannot inflate
    t["cpu_prediction"] = t["cpu_predict"]
    t["cpu_statistics"] = t["cpu"] - t["cpu_prediction"]
    return {"times": t, "truth": truth, "candidate_pred": cand_pred, "champion_pred": champ_pred,
            "candidate": candidate, "champion": champion, "baseline": baseline, "ece": ece, "paired": paired,
            "decisions": decisions}


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
    say(f"gate_speed: training two demo models, making a {EVAL_ROWS:,}-row evaluation set")
    prep = prepare()
    say(f"gate_speed: the gate's scoring stage, 3 runs, {RESAMPLES:,} bootstrap resamples")
    gate_once(prep)  # warm up (imports, first-call costs)
    runs = sorted((gate_once(prep) for _ in range(3)), key=lambda r: r["times"]["total"])
    mid = runs[1]
    t = {k: median([r["times"][k] for r in runs]) for k in mid["times"]}
    say(f"gate_speed: baseline, scikit-learn metrics and a {naive_resamples}-resample naive bootstrap "
        f"(scaled to {RESAMPLES:,})")
    naive = naive_statistics(mid["truth"], mid["candidate_pred"], mid["champion_pred"], resamples=naive_resamples)
    naive_boot = naive["per_resample_s"] * RESAMPLES
    naive_stats = naive["scoring_s"] + naive_boot
    ours_point = {"candidate": (mid["candidate"].accuracy, mid["candidate"].macro_f1),
                  "champion": (mid["champion"].accuracy, mid["champion"].macro_f1)}
    agree = max(abs(x - y) for side in ours_point for x, y in zip(ours_point[side], naive["point"][side]))
    rescore = _rescore_seconds(prep)
    result = SuiteResult()
    scaled = f"naive bootstrap: {naive_resamples} resamples timed, scaled to {RESAMPLES:,}"
    result.rows += [
        Row(SUITE, f"gate evaluation, {EVAL_ROWS // 1000}k rows, {RESAMPLES:,} resamples (total)", 1000 * t["total"], "ms",
            baseline=1000 * (t["prediction"] + naive_stats), target="< 2 s", passed=t["total"] < TARGET_S,
            note=f"baseline: same predictions + scikit-learn metrics; {scaled}"),
        Row(SUITE, "  the same, CPU time of the process", 1000 * t["cpu"], "ms", note=f"load average {_loadavg()}"),
        Row(SUITE, "  of which prediction (2 models, calibration included)", 1000 * t["prediction"], "ms"),
        Row(SUITE, "  of which statistics (scores, bootstrap, decide x2)", 1000 * t["statistics"], "ms",
            baseline=1000 * naive_stats),
        Row(SUITE, f"paired bootstrap, {RESAMPLES:,} resamples", 1000 * t["compare"], "ms", baseline=1000 * naive_boot),
    ]
    p = mid["paired"]
    d = mid["decisions"]
    result.details.append("\n".join([
        f"### Gate speed: {EVAL_ROWS:,} evaluation rows, {RESAMPLES:,} resamples, median of 3 runs",
        "",
        f"- Total {1000 * t['total']:.0f} ms (runs: " + ", ".join(f"{1000 * r['times']['total']:.0f}" for r in runs)
        + f" ms): predicting {1000 * t['predict']:.0f} ms (both models; the candidate's labels and ECE from one "
        f"`predict_proba` pass), scores and majority baseline {1000 * t['score']:.0f} ms, "
        f"`stats.compare` {1000 * t['compare']:.0f} ms, `decide` x2 {1000 * t['decide']:.1f} ms.",
        f"- CPU time of the process over the same steps: {1000 * t['cpu']:.0f} ms (prediction "
        f"{1000 * t['cpu_prediction']:.0f} ms, statistics {1000 * t['cpu_statistics']:.0f} ms of which `stats.compare` "
        f"{1000 * t['cpu_compare']:.0f} ms); load average {_loadavg()}. Other work shares the 2 cores, so wall time above "
        "CPU time is time spent waiting for a core; CPU time above wall time is the bootstrap's matrix products "
        "running on both cores.",
        f"- Outcome: candidate accuracy {mid['candidate'].accuracy:.3f} vs champion {mid['champion'].accuracy:.3f}; "
        f"macro-F1 difference {p.macro_f1.difference:+.4f}, 95% interval [{p.macro_f1.low:+.4f}, {p.macro_f1.high:+.4f}]; "
        f"McNemar p = {p.mcnemar.p_value:.3g}; point mode: {d['point'].outcome}, noninferiority: "
        f"{d['noninferiority'].outcome}.",
        f"- Baseline: `accuracy_score` + `f1_score` for both models {1000 * naive['scoring_s']:.0f} ms (same figures as "
        f"ours to {agree:.1e}); a row-resampling bootstrap calling them per resample, {naive_resamples} resamples in "
        f"{naive['bootstrap_s']:.2f} s = {1000 * naive['per_resample_s']:.0f} ms a resample, so {naive_boot:.1f} s for "
        f"{RESAMPLES:,} (scaled, not run). Its macro-F1 interval: [{naive['macro_f1_interval'][0]:+.4f}, "
        f"{naive['macro_f1_interval'][1]:+.4f}] (other draws than ours).",
        f"- Left out of the total: the slow-decay guard re-scores up to 3 other deployed versions; one `score_model` "
        f"on these rows takes {1000 * rescore:.0f} ms (plus loading the model), so up to "
        f"{1000 * (t['total'] + 3 * rescore):.0f} ms with all three.",
    ]))
    return result


def _loadavg() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _rescore_seconds(prep: dict[str, Any]) -> float:
    from engine.evaluation import score_model

    started = time.perf_counter()
    score_model(prep["champion"], prep["eval"])
    return time.perf_counter() - started


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
