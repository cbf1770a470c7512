"""The Classifier's input rules (issue 13, cases 5-8): nothing a caller passes stops logging or reloading.

Every case was found against a running Classifier: a lone UTF-16 surrogate killed its background
thread (the buffered queries were lost and hot reload stopped), a generator gave ``[]`` and logged
nothing, a 50 MB text was answered and stored whole, and feedback for an id that predict never
issued was stored. Models are trained by the real retrain cycle; the store is a real DuckDB file.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from engine import spool
from engine.classifier import Classifier
from engine.errors import InputError
from engine.importer import import_file
from engine.ingest import ingest_spool
from engine.retrain import run_cycle
from store.retrains import get_retrain

TEXTS = ["Where is my parcel?", "i want my money back for the blender", "how do I reset my password",
         "are you open on sundays", "my package never arrived"]


def wait_until(condition, *, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def spooled(spool_dir) -> list[dict]:
    return [r for path in spool.pending(spool_dir) for r in spool.read_batch(path)]


@pytest.fixture
def trained(ctx, labelled_csv):
    assert import_file(ctx, labelled_csv, labeled=True).labels == 800
    result = run_cycle(ctx, trigger="manual")
    assert (result.status, result.candidate) == ("accepted", "v0001"), result.reason
    return ctx


@pytest.fixture
def make_classifier(settings, clock):
    made = []

    def make(**options):
        clf = Classifier(settings=options.pop("settings", settings), clock=clock, **options)
        made.append(clf)
        return clf

    yield make
    for clf in made:
        clf.close()


# --- 5: a lone surrogate --------------------------------------------------------------------------


def test_a_lone_surrogate_is_refused_and_logging_and_reload_go_on(make_classifier, trained):
    clf = make_classifier()  # background thread: flush every 0.05 s, reload every 0.1 s
    before = clf.predict_many(TEXTS)
    with pytest.raises(InputError) as caught:
        clf.predict("\ud800 hello")
    assert str(caught.value) == ("the query holds a lone UTF-16 surrogate (U+D800 at character 0), which is not "
                                 "Unicode text: decode the client's bytes as UTF-8")
    with pytest.raises(InputError, match=r"^the query holds a lone UTF-16 surrogate \(U\+DFFF at character 3\), "):
        clf.predict_many(["fine", "abc\udfff"])
    after = clf.predict("where is my refund")

    spool_dir = trained.settings.spool_dir
    assert wait_until(lambda: len(spooled(spool_dir)) == 6)
    assert [r["id"] for r in spooled(spool_dir)] == [p.query_id for p in before] + [after.query_id]
    assert clf._thread.is_alive()

    # Hot reload still works: a new deployment is served without a restart.
    assert run_cycle(trained, trigger="manual", force=True).candidate == "v0002"  # the same data: forced
    assert wait_until(lambda: clf.version == "v0002")
    assert clf.predict(TEXTS[0]).version == "v0002"


def test_the_spool_drops_only_a_record_that_is_not_unicode(trained, clock):
    """The second line of defence: a record that slipped past the call rules costs itself, not its batch."""
    good = {"k": "q", "id": "a" * 32, "ts": clock().isoformat(), "text": "fine", "predicted_label": "x",
            "confidence": 0.9, "model_version": "v0001", "source": "test"}
    bad = {**good, "id": "b" * 32, "text": "bad \udc80"}
    path = spool.write_batch(trained.settings.spool_dir, [good, bad])
    assert [r["id"] for r in spool.read_batch(path)] == ["a" * 32]
    assert spool.write_batch(trained.settings.spool_dir, [bad]) is None


def test_any_text_is_answered_or_refused_and_never_stops_the_thread(make_classifier, trained):
    """Property: any text (surrogates, controls, marks, blanks) is answered and logged, or refused by name."""
    clf = make_classifier()
    answered = []

    @hsettings(max_examples=80, deadline=None, database=None)
    @given(text=st.text(alphabet=st.characters(categories=["Cs", "Lu", "Ll", "Nd", "Zs", "Cc", "Po", "So", "Mn"]),
                        max_size=30))
    def check(text):
        has_surrogate = any(0xD800 <= ord(c) <= 0xDFFF for c in text)
        try:
            p = clf.predict(text)
        except InputError as exc:
            assert has_surrogate or "empty" in str(exc), str(exc)
        else:
            assert not has_surrogate and p.version == "v0001"
            answered.append(p.query_id)

    check()
    assert wait_until(lambda: len(spooled(trained.settings.spool_dir)) == len(answered))
    assert clf._thread.is_alive()
    assert sorted(r["id"] for r in spooled(trained.settings.spool_dir)) == sorted(answered)


# --- 6: one input contract -------------------------------------------------------------------------


def test_predict_many_takes_any_iterable_of_texts(make_classifier, trained):
    clf = make_classifier(background=False)
    from_generator = clf.predict_many(t for t in TEXTS[:3])
    from_tuple = clf.predict_many(tuple(TEXTS[:3]))
    assert [p.label for p in from_generator] == [p.label for p in from_tuple] == [
        "track_order", "request_refund", "reset_password"]
    clf.flush()
    logged = spooled(trained.settings.spool_dir)
    assert [r["text"] for r in logged] == TEXTS[:3] * 2
    assert clf.predict_many(iter([])) == []


@pytest.mark.parametrize(("texts", "message"), [
    (None, "predict_many takes a list of texts, not None: use predict(text) for one text"),
    ("where is my parcel", "predict_many takes a list of texts, not one str: use predict(text) for one text"),
    (b"where is my parcel", "predict_many takes a list of texts, not one bytes: use predict(text) for one text"),
    (42, "predict_many takes a list of texts, not int"),
], ids=["none", "str", "bytes", "int"])
def test_predict_many_refuses_what_is_not_a_list_of_texts(make_classifier, trained, texts, message):
    clf = make_classifier(background=False)
    with pytest.raises(InputError) as caught:
        clf.predict_many(texts)
    assert str(caught.value) == message
    with pytest.raises(InputError, match=r"^a query must be text \(str\), not NoneType$"):
        clf.predict(None)
    clf.flush()
    assert spool.pending(trained.settings.spool_dir) == []


# --- 7: a serving-time size limit ---------------------------------------------------------------------


def test_a_text_longer_than_max_text_length_is_refused_and_not_logged(make_classifier, trained):
    small = trained.settings.replace(max_text_length=60)
    clf = make_classifier(settings=small, background=False)
    at_limit = ("where is my parcel " * 4)[:60]
    assert clf.predict(at_limit).version == "v0001"  # answered: the limit itself is allowed
    with pytest.raises(InputError) as caught:
        clf.predict(at_limit + "x")
    assert str(caught.value) == ("the query is 61 characters long; at most 60 are accepted (setting max_text_length)")
    huge = "x" * 50_000_000  # the 50 MB text of the report: refused before any normalising or model work
    started = time.perf_counter()
    with pytest.raises(InputError, match=r"^the query is 50,000,000 characters long; at most 60 "):
        clf.predict_many(["fine", huge])
    assert time.perf_counter() - started < 30  # a guard against a hang, not a timing claim
    clf.flush()
    assert [r["text"] for r in spooled(trained.settings.spool_dir)] == [at_limit]


# --- 8: feedback for an id predict never issued -------------------------------------------------------------


@pytest.mark.parametrize(("query_id", "message"), [
    ("abc", "feedback needs the query_id returned by predict() (32 hexadecimal characters), not 'abc' (3 characters)"),
    ("z" * 32, "feedback needs the query_id returned by predict() (32 hexadecimal characters), not "
               "'zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz' (32 characters)"),
    ("a" * 10_000_000, "feedback needs the query_id returned by predict() (32 hexadecimal characters), not "
                       f"'{'a' * 40}'… (10,000,000 characters)"),
], ids=["short", "not-hex", "10MB"])
def test_feedback_refuses_an_id_predict_never_issues(make_classifier, trained, query_id, message):
    clf = make_classifier(background=False)
    with pytest.raises(InputError) as caught:
        clf.feedback(query_id, "track_order")
    assert str(caught.value) == message
    clf.flush()
    assert spool.pending(trained.settings.spool_dir) == []


def test_feedback_for_a_well_formed_unknown_id_never_becomes_training_data(make_classifier, trained, clock):
    clf = make_classifier(background=False)
    p = clf.predict(TEXTS[0])
    clf.feedback(p.query_id.upper(), "track_order")   # case and spaces do not matter
    clf.feedback("f" * 32, "request_refund")          # an id no query has: accepted by the rule
    clf.flush()
    ingested = ingest_spool(trained.db, trained.settings.spool_dir, clock=clock)
    assert (ingested.queries, ingested.labels) == (1, 2)
    with trained.db.read() as con:
        stored = con.execute("SELECT query_id, label FROM labels WHERE source = 'feedback' ORDER BY label").fetchall()
    assert stored == [("f" * 32, "request_refund"), (p.query_id, "track_order")]
    result = run_cycle(trained, trigger="manual")
    retrain = get_retrain(trained.db, result.retrain_id)
    # 800 imported + 1 feedback with its query's text + 1 pseudo label; the orphan has no text: malformed.
    assert (retrain["rows_in"], retrain["malformed"]) == (803, 1)
