"""Tests for engine.classifier: predictions, logging through the spool, hot reload, fallback.

Every model here is trained by the real retrain cycle on imported labelled data and
read back from the registry on disk; the store is a real DuckDB file.
"""

import re
import shutil
import threading
import time

import numpy as np
import pytest

from engine import classifier as classifier_module
from engine import registry, spool
from engine.classifier import Classifier, ClassifierStatus
from engine.dataset import normalize_text
from engine.deployment import rollback
from engine.errors import InputError, NoModelError, UnknownLabelError
from engine.importer import import_file
from engine.ingest import ingest_spool
from demo.intents import INTENTS
from engine.retrain import run_cycle
from store.events import recent_events

TEXTS = ["Where is my parcel?", "i want my money back for the blender", "how do I reset my password",
         "are you open on sundays"]
LABELS = ", ".join(sorted(INTENTS))


def wait_until(condition, *, timeout: float = 5.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; return whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def retrain(ctx) -> str:
    result = run_cycle(ctx, trigger="manual", force=True)
    assert (result.status, result.deployed) == ("accepted", True), result.reason
    return result.candidate


@pytest.fixture
def trained(ctx, labelled_csv):
    """A data directory with 800 imported labelled rows and v0001 deployed."""
    report = import_file(ctx, labelled_csv, labeled=True)
    assert report.labels == 800
    assert retrain(ctx) == "v0001"
    return ctx


@pytest.fixture
def two_versions(trained):
    """v0001 then v0002 deployed (same data and seed, so the gate accepts the equal candidate)."""
    assert retrain(trained) == "v0002"
    return trained


@pytest.fixture
def make_classifier(settings, clock):
    """Build classifiers on the test's data directory; every one is closed at teardown."""
    made = []

    def make(**options):
        clf = Classifier(settings=settings, clock=clock, **options)
        made.append(clf)
        return clf

    yield make
    for clf in made:
        clf.close()


def model_file(ctx, version):
    return registry.model_file(ctx.settings.registry_dir, version)


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def rewrite_pointer(ctx):
    """Same pointer, new file: what any deployment does to ACTIVE.json."""
    registry.write_active(ctx.settings.registry_dir, registry.read_active(ctx.settings.registry_dir))


# --- no model --------------------------------------------------------------------------------------


def test_without_a_model_predict_says_how_to_train_one(make_classifier, settings):
    clf = make_classifier()
    assert clf.status() == ClassifierStatus(None, None, None)
    assert (clf.version, clf.labels()) == (None, ())
    expected = (f"no model is deployed in {settings.home} yet: import labelled examples "
                "(`python -m engine import FILE --labeled`) and train one (`python -m engine retrain --wait`), "
                "or build the demo (`python -m engine demo`)")
    with pytest.raises(NoModelError) as caught:
        clf.predict("where is my parcel")
    assert str(caught.value) == expected


def test_a_damaged_pointer_leaves_nothing_to_serve(make_classifier, trained):
    (trained.settings.registry_dir / "ACTIVE.json").write_text("{not json")
    clf = make_classifier(background=False)
    assert clf.version is None
    assert clf.status().fallback
    with pytest.raises(NoModelError, match=r"^no model can serve: .*ACTIVE\.json is damaged"):
        clf.predict("where is my parcel")


# --- predictions --------------------------------------------------------------------------------------


def test_predict_answers_like_the_registry_model(make_classifier, trained):
    clf = make_classifier()
    assert clf.status() == ClassifierStatus("v0001", "v0001", None)
    assert clf.labels() == tuple(sorted(INTENTS))
    pointer = registry.read_active(trained.settings.registry_dir)
    model = registry.load_model(trained.settings.registry_dir, "v0001", sha256=pointer.active.sha256,
                                sklearn_version=pointer.active.sklearn_version)
    proba = model.predict_proba([normalize_text(TEXTS[0])])[0]
    order = np.argsort(-proba)[:3]

    p = clf.predict(TEXTS[0])

    assert (p.label, p.version, p.fallback) == ("track_order", "v0001", False)
    assert p.top == tuple((str(model.classes_[j]), float(proba[j])) for j in order)
    assert (p.label, p.confidence) == p.top[0]
    assert [c for _, c in p.top] == sorted((c for _, c in p.top), reverse=True)
    assert len(p.query_id) == 32 and int(p.query_id, 16) >= 0


def test_predict_many_equals_predict_one_by_one(make_classifier, trained):
    clf = make_classifier()
    many = clf.predict_many(TEXTS)
    one_by_one = [clf.predict(t) for t in TEXTS]
    assert [(p.label, p.top) for p in many] == [(p.label, p.top) for p in one_by_one]
    assert [p.label for p in many] == ["track_order", "request_refund", "reset_password", "store_hours"]
    assert len({p.query_id for p in many + one_by_one}) == 8
    assert clf.predict_many([]) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, r"^a query must be text \(str\), not NoneType$"),
        (42, r"^a query must be text \(str\), not int$"),
        (b"where is my parcel", r"^a query must be text \(str\), not bytes$"),
        ("", r"^the query is empty: type some words to classify$"),
        ("   \t\n", r"^the query is empty: type some words to classify$"),
    ],
    ids=["none", "int", "bytes", "empty", "blank"],
)
def test_bad_queries_are_refused(make_classifier, trained, text, message):
    clf = make_classifier(background=False)
    with pytest.raises(InputError, match=message):
        clf.predict(text)
    with pytest.raises(InputError, match=message):
        clf.predict_many(["where is my parcel", text])
    clf.flush()
    assert spool.pending(trained.settings.spool_dir) == []  # a refused batch logs nothing


def test_predict_many_wants_a_list(make_classifier, trained):
    with pytest.raises(InputError, match=r"^predict_many takes a list of texts, not one str: use predict\(text\) for one text$"):
        make_classifier().predict_many("where is my parcel")


def test_feedback_with_an_unknown_label_lists_the_valid_ones(make_classifier, trained):
    clf = make_classifier()
    p = clf.predict(TEXTS[0])
    with pytest.raises(UnknownLabelError) as caught:
        clf.feedback(p.query_id, "lost_parcel")
    assert str(caught.value) == f"unknown label 'lost_parcel': valid labels are {LABELS}"
    assert isinstance(caught.value, InputError)


@pytest.mark.parametrize(("query_id", "label", "message"),
                         [("", "track_order", "feedback needs the query_id returned by predict"),
                          (None, "track_order", "feedback needs the query_id returned by predict"),
                          ("0" * 32, "  ", "the true label is empty: give one of the model's labels")],
                         ids=["empty-id", "no-id", "blank-label"])
def test_feedback_needs_an_id_and_a_label(make_classifier, trained, query_id, label, message):
    with pytest.raises(InputError, match=message):
        make_classifier().feedback(query_id, label)


# --- logging: spool, then the worker's ingest -------------------------------------------------------------


def test_logged_queries_and_feedback_reach_the_store_once(make_classifier, trained, clock):
    clf = make_classifier(background=False)
    predictions = clf.predict_many(TEXTS[:3]) + [clf.predict(TEXTS[3])]
    clf.feedback(predictions[0].query_id, " Delivery_Delay ")
    assert spool.pending(trained.settings.spool_dir) == []  # buffered until flushed
    clf.flush()
    [path] = spool.pending(trained.settings.spool_dir)
    kept = path.read_bytes()

    result = ingest_spool(trained.db, trained.settings.spool_dir, clock=clock)
    assert (result.files, result.queries, result.labels, result.events, result.rejected_files) == (1, 4, 1, 0, 0)
    assert spool.pending(trained.settings.spool_dir) == []

    path.write_bytes(kept)  # the same file again (a crash between commit and delete): stored once
    again = ingest_spool(trained.db, trained.settings.spool_dir, clock=clock)
    assert (again.files, again.queries, again.labels) == (1, 0, 0)

    with trained.db.read() as con:
        queries = con.execute(
            "SELECT id, ts, text, predicted_label, confidence, model_version, source FROM queries ORDER BY ts, id"
        ).fetchall()
        feedback = con.execute("SELECT query_id, text, label, source, ts FROM labels WHERE source = 'feedback'").fetchall()
    expected = sorted(
        (p.query_id, clock(), text, p.label, p.confidence, "v0001", "classifier") for p, text in zip(predictions, TEXTS)
    )
    assert sorted(queries) == expected
    assert feedback == [(predictions[0].query_id, None, "delivery_delay", "feedback", clock())]


def test_a_record_in_two_spool_files_of_one_batch_is_stored_once(make_classifier, trained, clock):
    clf = make_classifier(background=False)
    predictions = clf.predict_many(TEXTS[:3])
    clf.feedback(predictions[2].query_id, "delivery_delay")
    clf.flush()
    [path] = spool.pending(trained.settings.spool_dir)
    copy = path.with_name(path.name.replace(".jsonl", "-copy.jsonl"))
    copy.write_bytes(path.read_bytes())  # the same records twice in one batch, alongside one new query
    clf.predict(TEXTS[3])
    clf.flush()
    result = ingest_spool(trained.db, trained.settings.spool_dir, clock=clock)
    assert (result.files, result.queries, result.labels) == (3, 4, 1)
    with trained.db.read() as con:
        counts = con.execute("SELECT (SELECT count(*) FROM queries WHERE source = 'classifier'), "
                             "(SELECT count(DISTINCT id) FROM queries WHERE source = 'classifier'), "
                             "(SELECT count(*) FROM labels WHERE source = 'feedback')").fetchall()[0]
    assert counts == (4, 4, 1)


def test_many_spool_files_go_in_together_and_a_bad_one_is_set_aside_alone(make_classifier, trained, clock):
    clf = make_classifier(background=False)
    first = clf.predict_many(TEXTS[:2])
    clf.flush()
    second = clf.predict_many(TEXTS[2:4])
    clf.feedback(second[1].query_id, "delivery_delay")
    clf.flush()
    spool_dir = trained.settings.spool_dir
    spool.write_batch(spool_dir, [{"k": "e", "ts": clock().isoformat(), "kind": "fallback", "severity": "error",
                                   "version": "v0001", "message": "from a predictor", "details": {"why": "test"}}])
    assert len(spool.pending(spool_dir)) == 3

    together = ingest_spool(trained.db, spool_dir, clock=clock)  # one parse, one transaction
    assert (together.files, together.queries, together.labels, together.events, together.rejected_files) == (3, 4, 1, 1, 0)
    [event] = [e for e in recent_events(trained.db) if e["message"] == "from a predictor"]
    assert (event["kind"], event["severity"], event["version"], event["details"]) == (
        "fallback", "error", "v0001", {"why": "test"})

    third = clf.predict_many(TEXTS[:2])  # asked again: new query ids
    clf.flush()
    bad = spool_dir / "00000000000000000001-1-00000000.jsonl"
    bad.write_text('{"k": "q", "id": "x", "ts": "not a time", "text": "t", "source": "s"}\n')
    one_by_one = ingest_spool(trained.db, spool_dir, clock=clock)  # the batch does not parse: file by file
    assert (one_by_one.files, one_by_one.queries, one_by_one.rejected_files) == (2, 2, 1)
    assert (spool_dir / "rejected" / bad.name).exists()
    with trained.db.read() as con:
        stored = {r[0] for r in con.execute("SELECT id FROM queries").fetchall()}
    assert {p.query_id for p in first + second + third} <= stored and "x" not in stored


def test_background_thread_flushes_the_spool(make_classifier, trained):
    clf = make_classifier()  # flush_seconds=0.05 in the test settings
    clf.predict(TEXTS[0])
    assert wait_until(lambda: len(spool.pending(trained.settings.spool_dir)) == 1)
    [path] = spool.pending(trained.settings.spool_dir)
    [record] = spool.read_batch(path)
    assert (record["k"], record["text"], record["model_version"]) == ("q", TEXTS[0], "v0001")


# --- hot reload -----------------------------------------------------------------------------------------------


def test_hot_reload_while_four_threads_predict(make_classifier, trained):
    clf = make_classifier()  # reload_seconds=0.1
    stop = threading.Event()
    errors: list[BaseException] = []
    latest: list[str | None] = [None] * 4
    seen: list[list[str]] = [[] for _ in range(4)]

    def work(i: int) -> None:
        while not stop.is_set():
            try:
                version = clf.predict(TEXTS[i]).version
            except BaseException as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)
                return
            latest[i] = version
            if not seen[i] or seen[i][-1] != version:
                seen[i].append(version)
            time.sleep(0.001)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        assert wait_until(lambda: latest == ["v0001"] * 4)
        assert retrain(trained) == "v0002"
        assert wait_until(lambda: latest == ["v0002"] * 4), latest
        result = rollback(trained)
        assert (result.deployed, result.version, result.previous) == (True, "v0001", "v0002")
        assert wait_until(lambda: latest == ["v0001"] * 4), latest
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert errors == []
    assert seen == [["v0001", "v0002", "v0001"]] * 4
    assert clf.status() == ClassifierStatus("v0001", "v0001", None)


def test_reload_reports_whether_the_model_changed(make_classifier, trained):
    clf = make_classifier(background=False)
    assert clf.reload() is False  # nothing changed
    assert retrain(trained) == "v0002"
    assert clf.version == "v0001"  # no background thread: nothing moves by itself
    assert clf.reload() is True
    assert clf.version == "v0002"


# --- fallback ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "why"),
    [(flip_a_byte, r"model v0002: checksum mismatch \(file [0-9a-f]{12}…, registry [0-9a-f]{12}…\)"),
     (lambda path: path.unlink(), r"model v0002: file .*/v0002\.\w+ is missing")],
    ids=["corrupt", "deleted"],
)
def test_new_classifier_falls_back_to_the_last_good_version(make_classifier, two_versions, clock, damage, why):
    damage(model_file(two_versions, "v0002"))
    clf = make_classifier()
    status = clf.status()
    assert (status.version, status.active_version, status.fallback) == ("v0001", "v0002", True)
    assert status.fallback_reason is not None
    assert re.fullmatch(rf"active model v0002 cannot be loaded \({why}[^)]*\); serving v0001",
                                      status.fallback_reason.replace("\n", " ")), status.fallback_reason
    p = clf.predict(TEXTS[0])
    assert (p.version, p.fallback, p.label) == ("v0001", True, "track_order")

    clf.close()  # flushes the buffered query and the fallback event
    result = ingest_spool(two_versions.db, two_versions.settings.spool_dir, clock=clock)
    assert (result.queries, result.events) == (1, 1)
    [event] = recent_events(two_versions.db, kind="fallback")
    assert (event["severity"], event["version"], event["details"]) == ("error", "v0002", {"serving": "v0001"})
    assert event["message"] == f"A serving process fell back: {status.fallback_reason}."


def test_running_classifier_falls_back_without_failing_a_prediction(make_classifier, two_versions):
    clf = make_classifier()
    assert clf.version == "v0002"
    flip_a_byte(model_file(two_versions, "v0002"))
    rewrite_pointer(two_versions)  # the watcher notices a new pointer file and reloads

    versions = []

    def serving_v0001() -> bool:
        versions.append(clf.predict(TEXTS[0]).version)  # raises if a prediction fails
        return versions[-1] == "v0001"

    assert wait_until(serving_v0001)
    assert versions == ["v0002"] * (len(versions) - 1) + ["v0001"]  # every prediction answered
    status = clf.status()
    assert (status.version, status.active_version) == ("v0001", "v0002")
    assert "active model v0002 cannot be loaded (model v0002: checksum mismatch" in status.fallback_reason


def test_when_nothing_on_disk_loads_the_model_in_memory_keeps_serving(make_classifier, two_versions):
    clf = make_classifier(background=False)
    for version in ("v0001", "v0002"):
        flip_a_byte(model_file(two_versions, version))
    rewrite_pointer(two_versions)
    assert clf.reload() is False  # the model in memory stays
    p = clf.predict(TEXTS[0])
    assert (p.version, p.fallback) == ("v0002", True)
    reason = clf.status().fallback_reason
    assert reason.startswith("no deployed version can be loaded: model v0002: checksum mismatch")
    assert " | model v0001: checksum mismatch" in reason


def test_fallback_retries_the_active_version_and_recovers(make_classifier, two_versions, monkeypatch):
    monkeypatch.setattr(classifier_module, "RETRY_FALLBACK_SECONDS", 0.0)
    path = model_file(two_versions, "v0002")
    backup = path.with_name("v0002.bak")
    shutil.copyfile(path, backup)
    flip_a_byte(path)
    clf = make_classifier(background=False)
    assert (clf.version, clf.status().fallback) == ("v0001", True)
    shutil.copyfile(backup, path)  # repaired, the pointer untouched
    assert clf.reload() is True
    assert clf.status() == ClassifierStatus("v0002", "v0002", None)
    assert clf.predict(TEXTS[0]).fallback is False
