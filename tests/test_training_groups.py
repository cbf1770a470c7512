"""The grouped log and the training cap (issue 15): ``store.querylog.training_groups`` reads the log as
one row per raw text, label and flag with its count, ``engine.dataset.build_training_set`` counts those
weights, and ``max_train_rows`` bounds the texts a fit sees without touching the evaluation set.

The grouped path must give exactly what the row-by-row path gives (training set, evaluation set, every
count, the data hash), on logs with duplicates, conflicts, low-confidence and malformed pseudo labels,
quarantined rows, versions never deployed and old pseudo labels: checked on random logs in a real store.
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from engine.dataset import build_training_set, eval_bucket
from engine.errors import InputError
from store.db import Database
from store.models import add_assignment
from store.quarantine import add_rule
from store.querylog import insert_labels, insert_queries, known_labels, training_groups, training_rows
from store.schema import migrate
from store.views.funnel import steps
from store.vocabulary import Alias, AssignmentKind

T0 = datetime(2026, 3, 1)


def same(a, b) -> None:
    """Two training sets are the same: sets, counts, labels and hash."""
    assert a.funnel == b.funnel
    assert a.train.equals(b.train) and a.eval.equals(b.eval)
    assert (a.labels, a.labels_without_eval, a.data_hash) == (b.labels, b.labels_without_eval, b.data_hash)


# --- a weight counts as that many identical rows (engine.dataset alone, hostile frames) ---------------

TEXTS = ["where is my order", "Where is  MY order", "cancel my order", "refund please", "", "   ", "x" * 30, None, 7]
LABELS = ["track", " Track ", "cancel", "refund", "", None, "bogus"]
CONFIDENCES = [0.2, 0.5, 0.55, 0.7, 0.9, 1.0, None, float("nan"), float("inf"), 1.5, -0.1, "0.9", True]
SOURCES = ["human", "pseudo", "pseudo", "bot"]

row_strategy = st.tuples(
    st.sampled_from(TEXTS), st.sampled_from(LABELS), st.sampled_from(CONFIDENCES), st.sampled_from(SOURCES),
    st.one_of(st.none(), st.integers(0, 5)), st.booleans(), st.booleans(), st.integers(1, 4),
)


def weighted_frame(rows) -> pd.DataFrame:
    return pd.DataFrame({
        "text": pd.Series([r[0] for r in rows], dtype=object),
        "label": pd.Series([r[1] for r in rows], dtype=object),
        "confidence": pd.Series([r[2] for r in rows], dtype=object),
        "source": [r[3] for r in rows],
        "ts": pd.to_datetime([None if r[4] is None else T0 + timedelta(minutes=r[4]) for r in rows]),
        "quarantined": [r[5] for r in rows],
        "deployed": [r[6] for r in rows],
        "rows": np.array([r[7] for r in rows], dtype=np.int64),
    })


@hypothesis_settings(max_examples=200, deadline=None)
@given(rows=st.lists(row_strategy, max_size=40), min_confidence=st.sampled_from([0.5, 0.7]),
       eval_percent=st.sampled_from([0, 20, 50]), use_pseudo=st.booleans(),
       since_minute=st.one_of(st.none(), st.integers(0, 5)), cap=st.sampled_from([0, 1, 2, 5]))
def test_a_row_of_weight_k_counts_as_k_identical_rows(rows, min_confidence, eval_percent, use_pseudo, since_minute, cap):
    weighted = weighted_frame(rows)
    repeated = weighted.loc[weighted.index.repeat(weighted["rows"])].drop(columns="rows").reset_index(drop=True)
    options = dict(known_labels=["track", "cancel", "refund"], min_confidence=min_confidence, max_text_length=20,
                   eval_percent=eval_percent, use_pseudo_labels=use_pseudo, max_train_rows=cap,
                   pseudo_since=None if since_minute is None else T0 + timedelta(minutes=since_minute))
    grouped, by_row = build_training_set(weighted, **options), build_training_set(repeated, **options)
    same(grouped, by_row)
    f = grouped.funnel
    assert f.rows_in == int(weighted["rows"].sum()) - f.quarantined - f.pseudo_not_deployed - f.pseudo_too_old - (
        0 if use_pseudo else int(weighted.loc[weighted["source"] == "pseudo", "rows"].sum()))
    assert f.rows_in == (f.malformed + f.low_confidence + f.conflicts + f.duplicates + f.reserved_for_eval
                         + f.train_rows + f.eval_rows + f.over_training_cap)


@pytest.mark.parametrize("bad", [0, -2, 1.5, float("nan"), "3", True], ids=["zero", "negative", "fraction", "nan",
                                                                           "text", "bool"])
def test_a_weight_that_is_not_a_whole_number_of_at_least_one_is_refused(bad):
    rows = weighted_frame([("refund please", "refund", None, "human", 1, False, False, 1)])
    rows["rows"] = pd.Series([bad], dtype=object if isinstance(bad, (str, bool)) else None)
    with pytest.raises(InputError, match="column 'rows' .* not a whole number of at least 1"):
        build_training_set(rows)


# --- the store's grouping gives exactly the row-by-row result (real DuckDB) ---------------------------

STORE_TEXTS = ["where is my order", "Where is  MY order", "cancel my order", "refund please", "reset password",
               "   ", "x" * 30]
STORE_LABELS = ["track", "Track ", "cancel", "refund", "reset", "", "bogus"]
STORE_CONFIDENCES = [0.2, 0.5, 0.55, 0.7, 0.9, 1.0, None, float("nan"), 1.5, -0.1]

query_strategy = st.tuples(st.sampled_from(STORE_TEXTS), st.one_of(st.none(), st.sampled_from(STORE_LABELS)),
                           st.sampled_from(STORE_CONFIDENCES), st.integers(0, 6),
                           st.sampled_from(["v1", "v2", None]), st.sampled_from(["classifier", "bad_client"]))
label_strategy = st.tuples(st.one_of(st.integers(0, 30), st.sampled_from(STORE_TEXTS)),
                           st.sampled_from(STORE_LABELS[:5] + ["", "bogus"]), st.integers(0, 6),
                           st.sampled_from(["feedback", "import"]))


def store_with(queries, labels, *, quarantine: str | None, home: Path) -> Database:
    db = Database(home / "retrainer.duckdb")
    migrate(db)
    q = pd.DataFrame({
        "id": [f"q{i}" for i in range(len(queries))],
        "ts": [T0 + timedelta(hours=r[3]) for r in queries],
        "text": [r[0] for r in queries],
        "predicted_label": pd.Series([r[1] for r in queries], dtype=object),
        "confidence": pd.Series([r[2] for r in queries], dtype=float),
        "model_version": pd.Series([r[4] for r in queries], dtype=object),
        "source": [r[5] for r in queries],
    })
    rows = []
    for i, (ref, label, hours, source) in enumerate(labels):
        by_query = isinstance(ref, int) and ref < len(queries)
        rows.append({"id": f"l{i}", "ts": T0 + timedelta(hours=hours, minutes=30),
                     "query_id": f"q{ref}" if by_query else None,
                     "text": None if by_query else (ref if isinstance(ref, str) else "refund please"),
                     "label": label, "source": source})
    with db.write() as con:
        insert_queries(con, q)
        if rows:
            insert_labels(con, pd.DataFrame(rows).astype({"query_id": object, "text": object}))
        add_assignment(con, ts=T0, alias=Alias.CHAMPION, version="v1", previous_version=None,
                       kind=AssignmentKind.DEPLOY, actor="test", reason="the deployed version")
        if quarantine:
            add_rule(con, ts=T0, source=quarantine, version=None, since=None, until=None, reason="a broken source")
    return db


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(queries=st.lists(query_strategy, max_size=40), labels=st.lists(label_strategy, max_size=15),
       quarantine=st.sampled_from([None, "bad_client", "import"]), min_confidence=st.sampled_from([0.5, 0.7]), use_pseudo=st.booleans(),
       since_hours=st.one_of(st.none(), st.integers(0, 6)), cap=st.sampled_from([0, 1, 3]))
def test_the_grouped_log_gives_the_same_sets_and_counts_as_row_by_row(queries, labels, quarantine, min_confidence,
                                                                     use_pseudo, since_hours, cap):
    with tempfile.TemporaryDirectory() as home:
        db = store_with(queries, labels, quarantine=quarantine, home=Path(home))
        since = None if since_hours is None else T0 + timedelta(hours=since_hours)
        options = dict(known_labels=known_labels(db) or None, min_confidence=min_confidence, max_text_length=20,
                       eval_percent=20, use_pseudo_labels=use_pseudo, pseudo_since=since, max_train_rows=cap)
        by_row = build_training_set(training_rows(db, include_pseudo=use_pseudo), **options)
        groups = training_groups(db, include_pseudo=use_pseudo, min_confidence=min_confidence, pseudo_since=since)
        grouped = build_training_set(groups, **options)
    same(grouped, by_row)
    assert int(groups["rows"].sum()) == len(labels) + (
        sum(r[1] is not None for r in queries) if use_pseudo else 0)


def test_training_groups_counts_each_raw_text_label_and_confidence_class(tmp_path):
    queries = [("refund please", "refund", 0.9, 0, "v1", "classifier"), ("refund please", "refund", 0.7, 2, "v1", "classifier"),
               ("refund please", "refund", 0.2, 1, "v1", "classifier"), ("refund please", "refund", None, 1, "v1", "classifier"),
               ("Refund please", "refund", 0.9, 3, "v1", "classifier"), ("refund please", "cancel", 0.9, 4, "v2", "classifier")]
    db = store_with(queries, [(0, "refund", 5, "feedback"), (1, "refund", 6, "feedback")], quarantine=None,
                    home=tmp_path)
    groups = training_groups(db, min_confidence=0.5)
    got = sorted((r.source, r.text, r.label, -1 if pd.isna(r.confidence) else round(r.confidence, 6), r.rows,
                  r.ts.hour, r.ts.minute, bool(r.deployed) if r.source == "pseudo" else "-")
                 for r in groups.itertuples())
    assert got == [
        ("human", "refund please", "refund", -1, 2, 6, 30, "-"),          # two labels, the newest time
        ("pseudo", "Refund please", "refund", 0.9, 1, 3, 0, True),        # another raw text: its own row
        ("pseudo", "refund please", "cancel", 0.9, 1, 4, 0, False),       # a version never deployed
        ("pseudo", "refund please", "refund", -1, 1, 1, 0, True),         # no confidence: malformed
        ("pseudo", "refund please", "refund", 0.2, 1, 1, 0, True),        # below min_confidence
        ("pseudo", "refund please", "refund", 0.8, 2, 2, 0, True),        # kept: mean 0.8 of 0.9 and 0.7
    ]
    assert list(groups.columns) == ["text", "label", "confidence", "source", "ts", "quarantined", "deployed", "rows"]


# --- the training cap -------------------------------------------------------------------------------

def cap_rows() -> tuple[pd.DataFrame, list[str], str]:
    """Four human-labelled training texts, three pseudo-only ones, one evaluation text of the same label as the
    human ones (so no label lends a text to evaluation); times in minutes, one human text without one."""
    train_texts = [t for t in (f"order number {i}" for i in range(40)) if eval_bucket(t) >= 20][:7]
    eval_text = next(t for t in (f"order number {i}" for i in range(40)) if eval_bucket(t) < 20)
    records = [(train_texts[0], "a", "human", None, 1), (train_texts[1], "a", "human", None, 5),
               (train_texts[2], "a", "human", None, 3), (train_texts[3], "a", "human", None, None),
               (train_texts[4], "a", "pseudo", 0.9, 9), (train_texts[5], "b", "pseudo", 0.9, 8),
               (train_texts[6], "a", "pseudo", 0.9, 7), (eval_text, "a", "human", None, 2),
               (train_texts[4], "a", "pseudo", 0.8, 1)]  # a duplicate: still counted as one
    frame = pd.DataFrame({"text": [r[0] for r in records], "label": [r[1] for r in records],
                          "source": [r[2] for r in records], "confidence": [r[3] for r in records],
                          "ts": [pd.NaT if r[4] is None else pd.Timestamp(T0) + pd.Timedelta(minutes=r[4])
                                 for r in records]})
    return frame, train_texts, eval_text


@pytest.mark.parametrize("cap, kept", [(0, range(7)), (7, range(7)), (5, [0, 1, 2, 3, 4]), (3, [0, 1, 2]),
                                       (1, [1])], ids=["off", "at-size", "humans+newest-pseudo", "newest-humans",
                                                       "one"])
def test_the_cap_keeps_human_texts_first_then_the_newest_and_counts_the_rest(cap, kept):
    rows, texts, eval_text = cap_rows()
    result = build_training_set(rows, max_train_rows=cap)
    assert result.train["text"].tolist() == sorted(texts[i] for i in kept)
    assert result.eval["text"].tolist() == [eval_text]  # the evaluation set never changes because of the cap
    assert result.funnel.train_rows == len(kept)
    assert result.funnel.over_training_cap == 7 - len(kept)
    assert (result.funnel.duplicates, result.funnel.eval_rows, result.funnel.rows_in) == (1, 1, 9)


def test_the_cap_option_is_checked():
    rows, _, _ = cap_rows()
    with pytest.raises(InputError, match="max_train_rows = -1 is out of range: use a whole number, 0 for no cap"):
        build_training_set(rows, max_train_rows=-1)


def test_the_funnel_shows_the_cap_only_when_it_left_texts_out():
    counts = {"rows_in": 100, "malformed": 1, "low_confidence": 2, "conflicts": 3, "duplicates": 4,
              "reserved_for_eval": 5, "train_rows": 60, "eval_rows": 5}
    assert "over the training cap" not in steps({**counts, "over_training_cap": 0})["name"].tolist()
    shown = steps({**counts, "over_training_cap": 20})
    capped = shown[shown["step"] == "over_training_cap"].iloc[0]
    assert (capped["name"], capped["kind"], capped["rows"], capped["share"], capped["left"]) == (
        "over the training cap", "removed", 20, "20.0%", 65)
    assert shown["name"].tolist()[-3:] == ["over the training cap", "training rows", "evaluation rows"]


# --- a cycle with the cap -----------------------------------------------------------------------------

def test_a_capped_cycle_trains_on_the_cap_records_it_and_judges_on_the_same_evaluation_set(settings, clock, tmp_path):
    from engine.context import Context
    from engine.importer import import_file
    from engine.retrain import run_cycle
    from store.models import get_model
    from store.retrains import get_retrain
    from tests.conftest import labelled_frame

    path = tmp_path / "labelled.csv"
    labelled_frame(40, seed=1).to_csv(path, index=False)
    uncapped = Context.open(settings, clock=clock)
    assert import_file(uncapped, path, labeled=True).labels == 800
    rows = training_rows(uncapped.db)
    whole = build_training_set(rows, known_labels=known_labels(uncapped.db), max_text_length=settings.max_text_length)
    capped_settings = settings.replace(max_train_rows=300)
    expected = build_training_set(rows, known_labels=known_labels(uncapped.db), max_text_length=settings.max_text_length,
                                  max_train_rows=300)
    assert (expected.funnel.train_rows, expected.funnel.over_training_cap) == (300, whole.funnel.train_rows - 300)

    ctx = Context.open(capped_settings, clock=clock)
    result = run_cycle(ctx, trigger="manual", force=True)
    assert result.status == "accepted"
    row = get_retrain(ctx.db, result.retrain_id)
    assert (row["train_rows"], row["over_training_cap"], row["eval_rows"], row["rows_in"]) == (
        300, whole.funnel.train_rows - 300, whole.funnel.eval_rows, whole.funnel.rows_in)
    model = get_model(ctx.db, result.candidate)
    assert (model["train_rows"], model["train_hash"]) == (300, expected.data_hash)
    assert model["params"]["training_cap"] == {
        "max_train_rows": 300, "over_training_cap": whole.funnel.train_rows - 300,
        "keeps": "human-labelled texts first, then pseudo-labelled ones, newest first within each"}
    # The History page's funnel of that retrain shows the cap's step with its count (as the Data page's does).
    from store.views import history as history_view
    from store.views.funnel import steps as funnel_steps

    shown = funnel_steps(history_view.retrain(ctx.db, result.retrain_id)["funnel"])
    capped_step = shown[shown["step"] == "over_training_cap"].iloc[0]
    assert (capped_step["name"], capped_step["rows"]) == ("over the training cap", whole.funnel.train_rows - 300)
    assert capped_step["left"] == 300 + whole.funnel.eval_rows
