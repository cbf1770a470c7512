"""The benchmark suites' core functions on tiny configurations: they measure what they say they measure."""

from __future__ import annotations

from datetime import datetime

import pytest

from benchmarks import gate_speed, hot_reload, peer
from engine.gate import OUTCOMES
from engine.stats import choose_draw


@pytest.mark.slow
def test_hot_reload_every_predictor_follows_every_swap(tmp_path):
    home = tmp_path / "home"
    hot_reload.build_home(home, per_intent=20)
    m = hot_reload.measure(home, processes=2, swaps=3, restarts=0)
    targets = [s["target"] for s in m["swaps"]]
    assert targets == ["v0001", "v0002", "v0001"]  # alternating, starting from v0002 (active after the build)
    for swap in m["swaps"]:
        assert swap["versions_after"] == [swap["target"]] * 2
        assert len(swap["per_process_s"]) == 2 and all(0 < t < hot_reload.SWAP_TIMEOUT for t in swap["per_process_s"])
    assert m["latencies_s"] == [max(s["per_process_s"]) for s in m["swaps"]]
    assert m["failed"] == m["errors"] + m["missed"] + m["died"] == sum(r["errors"] for r in m["reports"])
    assert m["failed"] == 0 and m["answers"] > 0
    assert m["restarts"] == []
    assert m["poll_s"] == pytest.approx(0.6)  # reload_seconds 0.5 on flush_seconds 0.2 ticks


def test_poll_interval_rounds_up_to_whole_ticks():
    from engine.config import Settings

    assert hot_reload.poll_interval(Settings(reload_seconds=0.5, flush_seconds=0.2)) == pytest.approx(0.6)
    assert hot_reload.poll_interval(Settings(reload_seconds=0.4, flush_seconds=0.2)) == pytest.approx(0.4)
    assert hot_reload.poll_interval(Settings(reload_seconds=0.1, flush_seconds=0.2)) == pytest.approx(0.2)


@pytest.fixture(scope="module")
def small_history():
    return peer.history(25)


def test_peer_our_store_reads_back_every_retrain_in_order(tmp_path, small_history):
    out = peer.ours(tmp_path / "ours", small_history)
    points = peer.ours_points(out["frame"])
    assert len(points) == 25
    assert points["retrain_id"].tolist() == list(range(1, 26))
    assert points["ts"].is_monotonic_increasing
    assert points["accuracy"].tolist() == [r.accuracy for r in small_history]
    assert points["macro_f1"].tolist() == [r.macro_f1 for r in small_history]
    assert points["status"].tolist() == ["accepted" if r.decision == "accepted" else "rejected" for r in small_history]
    champions = out["frame"][out["frame"]["role"] == "champion"]
    assert len(champions) == 24  # every retrain but the first had a champion
    assert out["total_s"] == out["write_s"] + out["read_s"]


def test_peer_history_is_seeded_and_mixed():
    first, again = peer.history(40), peer.history(40)
    assert [(r.accuracy, r.decision) for r in first] == [(r.accuracy, r.decision) for r in again]
    assert first[0].decision == "accepted" and first[0].champion is None
    assert {r.decision for r in first} >= {"accepted", "rejected"}


@pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")  # MLflow's own use of SQLAlchemy 2.1
def test_peer_mlflow_reads_back_every_run_in_order(tmp_path, small_history):
    if not peer.mlflow_available():
        pytest.skip("mlflow is a benchmark-only dependency: pip install -r requirements-bench.txt")
    out = peer.theirs(tmp_path / "mlflow", small_history)
    frame = out["frame"]
    assert len(frame) == 25
    assert frame["start_time"].is_monotonic_increasing
    assert frame["metrics.accuracy"].tolist() == [r.accuracy for r in small_history]
    assert frame["tags.decision"].tolist() == [r.decision for r in small_history]
    assert frame["params.trigger"].tolist() == [r.trigger for r in small_history]


@pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")  # MLflow's own use of SQLAlchemy 2.1
def test_peer_mlflow_full_runs_log_what_we_store_of_a_retrain(tmp_path, small_history):
    if not peer.mlflow_available():
        pytest.skip("mlflow is a benchmark-only dependency: pip install -r requirements-bench.txt")
    import json

    import mlflow

    store = peer._MlflowGrowth(tmp_path / "mlflow", small_history, 3, full=True)
    frame = mlflow.search_runs(experiment_ids=[store.experiment], order_by=["attributes.run_name ASC"])
    first = small_history[0]
    row = frame.iloc[0]
    assert (row["metrics.ece"], row["metrics.baseline_accuracy"], row["metrics.rows_in"]) == (
        first.report["ece"], 0.08, 12 * first.eval_rows)
    assert (row["tags.decision"], row["tags.trigger"], row["params.version"]) == (
        first.decision, first.trigger, first.version)
    path = mlflow.artifacts.download_artifacts(run_id=row["run_id"], artifact_path="report.json",
                                               dst_path=str(tmp_path / "download"))
    assert json.loads(open(path).read()) == first.report


def test_peer_suite_without_mlflow_measures_ours_and_says_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(peer, "mlflow_available", lambda: False)
    result = peer.report(peer.measure(tmp_path, n=3, runs=1))
    assert [r.note for r in result.rows if r.value is None] == [peer.INSTALL_HINT]
    assert all(r.baseline is None for r in result.rows)
    assert all(r.value > 0 for r in result.rows if r.value is not None)
    assert peer.INSTALL_HINT in result.details[0]


@pytest.fixture(scope="module")
def gate_prep(tmp_path_factory):
    return gate_speed.prepare(tmp_path_factory.mktemp("gate"), eval_rows=1500, champion_rows=400, candidate_rows=800)


def test_gate_speed_times_the_scoring_stage_and_agrees_with_sklearn(gate_prep):
    prep = gate_prep
    out = gate_speed.gate_once(prep, resamples=200)
    t = out["times"]
    assert t["total"] == pytest.approx(t["prediction"] + t["statistics"] + t["guard"])
    assert len(out["older"]) == gate_speed.OLDER_VERSIONS
    assert t["prediction"] == t["predict"]  # the candidate's labels and its ECE come from one pass
    assert out["paired"].rows == 1500 and out["paired"].resamples == 200
    assert {d.outcome for d in out["decisions"].values()} <= set(OUTCOMES)
    naive = gate_speed.naive_statistics(out["truth"], out["candidate_pred"], out["champion_pred"], resamples=3)
    for side in ("candidate", "champion"):
        scores = out[side]
        assert naive["point"][side] == pytest.approx((scores.accuracy, scores.macro_f1), abs=1e-12)
    assert naive["per_resample_s"] == pytest.approx(naive["bootstrap_s"] / 3)


def test_gate_speed_with_the_cache_scores_every_version_as_without_it(gate_prep):
    cache = gate_speed.prime_cache(gate_prep)
    texts = gate_prep["eval"]["text"].tolist()
    _, found = cache.lookup("v0001", gate_prep["older"][0].sha256, texts)
    seen = set(texts[:1485])  # 1% of 1,500 texts are new to every version (the demo repeats some texts)
    assert int((~found).sum()) == sum(t not in seen for t in texts[1485:]) > 0
    with_cache = gate_speed.gate_once(gate_prep, cache=cache, resamples=50)
    without = gate_speed.gate_once(gate_prep, resamples=50)
    assert with_cache["champion_pred"] == [str(x) for x in without["champion_pred"]]
    assert [(s.accuracy, s.macro_f1) for s in with_cache["older"]] == [(s.accuracy, s.macro_f1) for s in without["older"]]
    _, found = cache.lookup("v0001", gate_prep["older"][0].sha256, texts)
    assert found.all()  # the guard kept the new answers


def test_gate_speed_judge_through_the_retrain_cycle_decides_the_same_with_and_without_the_cache(gate_prep):
    import shutil

    from engine.retrain import prediction_cache

    ctx, data, candidate = gate_speed.judge_setup(gate_prep)
    gate_speed.prime_judge_cache(ctx, gate_prep)
    warm = gate_speed.judge_once(ctx, data, candidate, gate_prep)
    assert set(gate_speed.JUDGE_STEPS) | {"total", "cpu", "rest"} <= set(warm["times"])
    assert warm["times"]["rest"] == pytest.approx(
        warm["times"]["total"] - sum(warm["times"][name] for name in gate_speed.JUDGE_STEPS))
    gate_speed.prime_judge_cache(ctx, gate_prep)
    before = gate_speed.judge_once(ctx, data, candidate, gate_prep, before=True)["judgement"]
    gate_speed.empty_judge_caches(ctx)
    cold = gate_speed.judge_once(ctx, data, candidate, gate_prep)
    w, c = warm["judgement"], cold["judgement"]
    assert (w.champion_version, w.active_at_gate) == (c.champion_version, c.active_at_gate) == ("v0004", "v0004")
    assert (w.champion.accuracy, w.champion.macro_f1, w.candidate.accuracy) == (
        c.champion.accuracy, c.champion.macro_f1, c.candidate.accuracy)
    assert (w.decision.outcome, w.decision.evidence) == (c.decision.outcome, c.decision.evidence)
    # The code path before the evaluation counts and the per-cell bootstrap: the same scores and ECE; only
    # the bootstrap's draws differ.
    assert (before.candidate, before.champion, before.candidate_ece) == (w.candidate, w.champion, w.candidate_ece)
    texts = data.eval["text"].tolist()
    proba = gate_prep["candidate"].predict_proba(texts)
    cells = len(set(zip(data.eval["label"], gate_prep["candidate"].classes_[proba.argmax(axis=1)],
                        gate_prep["champion"].predict(texts))))
    assert (before.decision.evidence["paired"]["draw"], w.decision.evidence["paired"]["draw"]) == (
        "rows", choose_draw(cells, len(texts)))
    assert before.decision.evidence["paired"]["mcnemar"] == w.decision.evidence["paired"]["mcnemar"]
    cached = sorted(p.name.split("-")[0] for p in prediction_cache(ctx).folder.iterdir())
    assert cached == ["v0001", "v0002", "v0003", "v0004", "v0005"]  # the guard and the candidate kept their answers


def test_peer_prefill_leaves_the_rows_a_retrain_writes(tmp_path, small_history):
    from engine.config import load_settings
    from engine.context import Context
    from store.views.performance import evaluations

    ctx = Context.open(load_settings(env={}, path=None, home=tmp_path / "home"))
    peer.prefill(ctx, small_history, 60)
    frame = evaluations(ctx.db)
    accepted = 1 + sum(r.decision == "accepted" for r in (small_history * 3)[1:60])
    assert len(frame[frame["role"] == "candidate"]) == 60
    assert len(frame[frame["role"] == "champion"]) == 59
    with ctx.db.read() as con:
        counts = con.execute("SELECT (SELECT count(*) FROM deployments), (SELECT count(*) FROM events), "
                             "(SELECT count(*) FROM models WHERE status = 'champion'), (SELECT max(id) FROM retrains)").fetchall()[0]
    assert counts == (accepted, 60 + accepted, 1, 60)
    peer._ours_write(ctx, small_history[1])  # the next retrain gets the next id from the sequence
    with ctx.db.read() as con:
        assert con.execute("SELECT max(id), count(*) FROM retrains").fetchall()[0] == (61, 61)


def test_peer_prefill_in_chunks_stores_the_same_rows_as_in_one_go(tmp_path, small_history):
    from engine.config import load_settings
    from engine.context import Context

    tables = ("retrains", "models", "evaluations", "events", "alias_history")
    contents = []
    for chunk in (None, 7):
        # One fixed clock: the rows' times come from it, and two runs a second apart must not differ.
        ctx = Context.open(load_settings(env={}, path=None, home=tmp_path / f"home-{chunk}"),
                           clock=lambda: datetime(2026, 3, 1, 12, 0, 0))
        peer.prefill(ctx, small_history, 30, chunk=chunk)
        with ctx.db.read() as con:
            contents.append({t: con.execute(f"SELECT * EXCLUDE (ts) FROM {t} ORDER BY ALL").fetchall()
                             if t in ("events", "evaluations", "alias_history")
                             else con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in tables})
    assert contents[0] == contents[1]
    assert len(contents[0]["retrains"]) == 30


def _count_writes(monkeypatch) -> list[int]:
    from store.db import Database

    writes = [0]
    opened = Database.write

    def counted(self):
        writes[0] += 1
        return opened(self)

    monkeypatch.setattr(Database, "write", counted)
    return writes


def test_peer_writes_a_retrain_through_the_cycles_own_recording_in_three_or_four_transactions(
        tmp_path, small_history, monkeypatch):
    from engine.config import load_settings
    from engine.context import Context
    from store.models import get_model
    from store.retrains import get_retrain

    ctx = Context.open(load_settings(env={}, path=None, home=tmp_path / "home"))
    peer.prefill(ctx, small_history, 10, chunk=4)
    writes = _count_writes(monkeypatch)
    rejected = next(r for r in small_history if r.decision == "rejected" and r.champion)
    accepted = next(r for r in small_history if r.decision == "accepted" and r.champion)
    for number, r in ((11, rejected), (12, accepted)):
        before = writes[0]
        peer._ours_write(ctx, peer.Retrain(**{**r.__dict__, "number": number, "version": f"v{number:06d}",
                                              "champion": "v000010"}))
        assert writes[0] - before == (4 if r is accepted else 3)
    first, second = get_retrain(ctx.db, 11), get_retrain(ctx.db, 12)
    assert (first["status"], first["decision"], first["candidate_version"], first["champion_version"]) == (
        "rejected", "rejected", "v000011", "v000010")
    assert (second["status"], second["decision"], second["candidate_version"]) == ("accepted", "accepted", "v000012")
    assert first["finished_at"] is not None and second["candidate_macro_f1"] == accepted.macro_f1
    assert [get_model(ctx.db, v)["status"] for v in ("v000010", "v000011", "v000012")] == [
        "retired", "rejected", "champion"]
    assert get_model(ctx.db, "v000012")["report"] == {**accepted.scores.report(), "ece": accepted.report["ece"]}


def test_peer_growth_writes_the_same_retrains_onto_each_history(tmp_path, small_history):
    measured = peer.growth(tmp_path, small_history, history_sizes=(10, 30), k=3, rounds=2)
    more = small_history[len(small_history) // 2:][:3]
    points = sum(2 if r.champion else 1 for r in more)  # a candidate's point, and its champion's when it had one
    assert [(g["history"], g["k"], g["rounds"], len(g["runs_ms"]), g["rows"]) for g in measured["ours"]] == [
        (10, 3, 2, 2, 19 + 2 * points), (30, 3, 2, 2, 59 + 2 * points)]
    assert measured["mlflow"] is None  # no peer_history asked for
    result = peer.growth_report(measured)
    assert [r.figure for r in result.rows] == [
        "write one retrain's history, 10 stored", "  the same, CPU time of this process, 10 stored",
        "write one retrain's history, 30 stored", "  the same, CPU time of this process, 30 stored"]
    assert [r.target for r in result.rows[::2]] == ["–", "flat (same as at 10)"]
    assert all(r.baseline is None and peer.INSTALL_HINT in r.note for r in result.rows[::2])


def test_peer_kept_open_what_if_attaches_once_and_writes_what_the_normal_path_writes(
        tmp_path, small_history, monkeypatch):
    import subprocess
    import sys

    from engine.config import load_settings
    from engine.context import Context
    from store.db import Database
    from store.retrains import get_retrain

    measured = peer.growth(tmp_path / "growth", small_history, history_sizes=(10,), k=3, rounds=2,
                           what_if_kept_open=True)
    normal, kept = measured["ours"][0], measured["kept_open"]
    assert (kept["history"], kept["kept_open"], len(kept["runs_ms"])) == (10, True, 2)
    assert kept["rows"] == normal["rows"]  # the same chart points either way
    rows = peer.growth_report(measured).rows
    assert [r.figure for r in rows] == [
        "write one retrain's history, 10 stored", "  the same, CPU time of this process, 10 stored",
        "  what-if: the store kept open between transactions, 10 stored"]
    assert "not how Retrainer runs" in rows[-1].note

    ctx = Context.open(load_settings(env={}, path=None, home=tmp_path / "home"))
    peer.prefill(ctx, small_history, 10, chunk=4)
    original, attaches = Database._attached, []
    real_attach = Database._attach
    monkeypatch.setattr(Database, "_attach", lambda self, con, *, write: (attaches.append(write),
                                                                          real_attach(self, con, write=write))[1])
    accepted = next(r for r in small_history if r.decision == "accepted" and r.champion)
    with peer.kept_open(ctx.db):
        for number in (11, 12):
            peer._ours_write(ctx, peer.Retrain(**{**accepted.__dict__, "number": number, "version": f"v{number:06d}",
                                                  "champion": f"v{number - 1:06d}"}))
    assert attaches == [True]  # eight write transactions, one attach
    assert Database._attached is original
    assert get_retrain(ctx.db, 12)["status"] == "accepted" and attaches == [True, False]
    # detached and unlocked: another process can open the file
    out = subprocess.run([sys.executable, "-c", "import duckdb, sys; print(duckdb.connect(sys.argv[1], read_only=True)"
                          ".execute('SELECT count(*) FROM retrains').fetchone()[0])", str(ctx.settings.db_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "12", out.stderr


def test_scale_import_file_goes_in_whole_both_ways(tmp_path):
    import pandas as pd

    from benchmarks import scale

    file = tmp_path / "log.parquet"
    scale.write_import_file(file, 3000)
    frame = pd.read_parquet(file)
    labelled = int(frame["label"].notna().sum())
    assert len(frame) == 3000 and 200 < labelled < 400  # 10% labelled
    assert frame["ts"].is_monotonic_increasing
    bulk = scale.child_bulk(tmp_path / "bulk", file, batch=1000)
    assert (bulk["rows"], bulk["queries"], bulk["labels"]) == (3000, 3000, labelled)
    imported = scale.child_import(tmp_path / "imported", file)
    assert (imported["rows"], imported["queries"], imported["labels"], imported["rejected"]) == (3000, 3000, labelled, 0)
