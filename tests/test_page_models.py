"""The Models page, through Streamlit's AppTest, on an empty store and on the demo store."""

from __future__ import annotations

import shutil
import time
from datetime import datetime

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from engine import registry
from engine.config import load_settings
from engine.context import Context
from engine.importer import import_file
from engine.worker import Worker
from pages import _ui
from store.commands import finish_command, enqueue, get_command, mark_running, recent_commands, set_progress
from store.models import list_deployments, list_models
from store.views import models as views
from tests.conftest import ROOT, open_app, shown

WORDS = {  # written out again here, on purpose: the page's words checked against a second reading of the store
    ("deploy", "to"): "deployed", ("deploy", "from"): "replaced by {}",
    ("rollback", "to"): "restored by a rollback from {}", ("rollback", "from"): "rolled back to {}",
    ("auto_rollback", "to"): "restored automatically after {} failed",
    ("auto_rollback", "from"): "failed after deployment; rolled back automatically to {}",
}


@pytest.fixture
def open_page(monkeypatch):
    """Open the Models page on a data directory, with fresh caches."""

    def open_(home) -> AppTest:
        return open_app(monkeypatch, home, "pages/models.py")

    return open_


@pytest.fixture
def demo_copy(demo_home, tmp_path):
    """A private copy of the session's demo store, for tests that queue commands."""
    home = tmp_path / "home"
    shutil.copytree(demo_home, home)
    return home


def context(home) -> Context:
    return Context.open(load_settings(env={}, home=home))


def rerun(at: AppTest) -> AppTest:
    st.cache_data.clear()  # the page caches reads for a second or more; the test reads right away
    at.run()
    assert not at.exception
    return at


def texts(at: AppTest) -> list[str]:
    """Every line of every markdown element (a block of lines is one element)."""
    return [shown(line) for m in at.markdown for line in m.value.split("  \n")]


# -- empty store -------------------------------------------------------------------------------


def test_empty_store_says_there_is_no_model_and_what_retrain_needs(open_page, tmp_path):
    at = open_page(tmp_path / "empty")
    assert [i.value for i in at.info] == [
        "No model yet. **Retrain now** needs labelled data first: import some with "
        "`python -m engine import FILE --labeled` (a CSV with text and label columns), "
        "or build the demo with `python -m engine demo`."
    ]
    assert [b.key for b in at.button] == ["retrain_now"]
    assert len(at.dataframe) == 0
    assert "No version to roll back to yet: a version appears here once it has served and been replaced." in [
        c.value for c in at.caption]


def test_retrain_now_queues_exactly_one_retrain_and_shows_it_waiting(open_page, tmp_path):
    home = tmp_path / "empty"
    at = open_page(home)
    at.button(key="retrain_now").click()
    rerun(at)
    commands = recent_commands(context(home).db)
    assert [(c["kind"], c["args"], c["source"], c["status"]) for c in commands] == [("retrain", {}, "dashboard", "queued")]
    line = f":gray[:material/schedule:] #{commands[0]['id']} **retrain** · from dashboard · queued {_ui.when(commands[0]['created_at'])} · "
    assert line + "waiting: the worker is not running, it will run this when it starts" in texts(at)
    rerun(at)  # a plain rerun queues nothing more
    assert len(recent_commands(context(home).db)) == 1


# -- demo store: what is shown equals the store ------------------------------------------------


def test_versions_table_equals_the_registry(open_page, demo_home):
    at = open_page(demo_home)
    models = list(reversed(list_models(context(demo_home).db)))  # newest first, as shown
    table = at.dataframe[0].value
    assert list(table["Version"]) == [m["version"] for m in models]
    assert list(table["Status"]) == [m["status"] for m in models]
    assert list(table["Train rows"]) == [m["train_rows"] for m in models]
    assert list(table["Accuracy"]) == [_ui.pct(m["accuracy"]) for m in models]
    assert list(table["Macro-F1"]) == [_ui.pct(m["macro_f1"]) for m in models]
    assert list(table["Checksum"]) == [m["sha256"][:10] for m in models]
    assert list(table["scikit-learn"]) == [m["sklearn_version"] for m in models]
    assert list(table["Created"]) == [_ui.when(m["created_at"]) for m in models]
    active = registry.read_active(load_settings(env={}, home=demo_home).registry_dir).active.version
    assert table.loc[table["Status"] == "champion", "Version"].tolist() == [active]
    assert [c.value for c in at.caption if " serves now." in c.value] == [
        f"{len(models)} versions · {active} serves now. Every version's file is kept in the data directory's "
        "`models/` folder."]


def test_each_versions_deployment_history_is_its_deployments_in_words(open_page, demo_home):
    at = open_page(demo_home)
    table = at.dataframe[0].value
    deployments = list(reversed(list_deployments(context(demo_home).db)))  # oldest first
    expected, started = {}, {}
    for d in deployments:
        expected.setdefault(d["version"], []).append(
            f"{_ui.when(d['ts'])} {WORDS[(d['kind'], 'to')].format(d['previous_version'])}")
        started.setdefault(d["version"], []).append(d["ts"])
        if d["previous_version"]:
            expected.setdefault(d["previous_version"], []).append(
                f"{_ui.when(d['ts'])} {WORDS[(d['kind'], 'from')].format(d['version'])}")
    status = dict(zip(table["Version"], table["Status"]))
    lines = [line for line in texts(at) if line.startswith("**v")]
    assert lines == [f"**{v}** ({status[v]}): {' · '.join(expected[v])}" for v in table["Version"] if v in expected]
    assert any("rolled back to" in line for line in lines)  # the demo's operator rollback is there
    assert list(table["Deployed"]) == [
        f"{len(started[v])}× · last {_ui.when(max(started[v]))[:10]}" if v in started else "never" for v in table["Version"]]
    assert f"Never deployed: {', '.join(v for v in table['Version'] if v not in expected)}." in [shown(c.value) for c in at.caption]
    log = at.dataframe[1].value
    assert list(log["Now serving"]) == [d["version"] for d in reversed(deployments)]
    assert list(log["Reason"]) == [d["reason"] for d in reversed(deployments)]


def test_rollback_choices_are_the_retired_versions_newest_first(open_page, demo_home):
    at = open_page(demo_home)
    retired = sorted((m["version"] for m in list_models(context(demo_home).db) if m["status"] == "retired"), reverse=True)
    assert len(retired) >= 2
    assert at.selectbox(key="rollback_to").options == [
        f"{t['version']} · accuracy {_ui.pct(t['accuracy'])} · last deployed {_ui.when(t['last_deployed_at'])}"
        for t in views.rollback_targets(context(demo_home).db)
    ]
    assert [o.split(" · ")[0] for o in at.selectbox(key="rollback_to").options] == retired


# -- demo store: actions ----------------------------------------------------------------------


def start_rollback(at: AppTest, target: str) -> AppTest:
    at.selectbox(key="rollback_to").set_value(target)
    at.button(key="rollback").click()
    return rerun(at)


def test_rollback_asks_for_confirmation_naming_both_versions_then_queues_it(open_page, demo_copy):
    db = context(demo_copy).db
    before = len(recent_commands(db))
    active = registry.read_active(load_settings(env={}, home=demo_copy).registry_dir).active.version
    target = sorted(m["version"] for m in list_models(db) if m["status"] == "retired")[0]  # the oldest
    at = start_rollback(open_page(demo_copy), target)
    assert [w.value.split("**")[1] for w in at.warning if "Roll back from" in w.value] == [f"Roll back from {active} to {target}?"]
    assert len(recent_commands(db)) == before  # nothing queued before the confirmation
    assert "rollback" not in [b.key for b in at.button]
    at.button(key="rollback_confirm").click()
    rerun(at)
    new = recent_commands(db)[: len(recent_commands(db)) - before]
    assert [(c["kind"], c["args"], c["source"]) for c in new] == [("rollback", {"to": target}, "dashboard")]
    assert not [w for w in at.warning if "Roll back from" in w.value]
    assert "rollback_confirm" not in [b.key for b in at.button]
    assert f":gray[:material/schedule:] #{new[0]['id']} **rollback** to {target} · from dashboard · queued {_ui.when(new[0]['created_at'])} · " \
           "waiting: the worker is not running, it will run this when it starts" in texts(at)


def test_cancelling_a_rollback_queues_nothing(open_page, demo_copy):
    db = context(demo_copy).db
    before = recent_commands(db)
    at = start_rollback(open_page(demo_copy), sorted(m["version"] for m in list_models(db) if m["status"] == "retired")[-1])
    at.button(key="rollback_cancel").click()
    rerun(at)
    assert recent_commands(db) == before
    assert not [w for w in at.warning if "Roll back from" in w.value]
    assert [b.key for b in at.button] == ["retrain_now", "rollback"]
    rerun(at)  # and nothing is queued later either
    assert recent_commands(db) == before


def test_a_running_command_shows_its_progress_then_its_result(open_page, tmp_path):
    home = tmp_path / "empty"
    at = open_page(home)
    db = context(home).db
    cid = enqueue(db, kind="retrain", args={}, source="cli", ts=datetime(2026, 3, 4, 12, 0))
    mark_running(db, cid, ts=datetime(2026, 3, 4, 12, 0, 5))
    set_progress(db, cid, progress=0.4, stage="fitting the candidate")
    rerun(at)
    assert [(p.value, p.proto.text) for p in at.progress] == [(40, f"#{cid} retrain: fitting the candidate")]
    assert (f":blue[:material/progress_activity:] #{cid} **retrain** · from cli · queued "
            f"{_ui.when(datetime(2026, 3, 4, 12, 0))} · fitting the candidate (40%)") in texts(at)
    finish_command(db, cid, ok=False, message="no labelled data: import some first", ts=datetime(2026, 3, 4, 12, 0, 9))
    rerun(at)
    assert len(at.progress) == 0
    assert (f":orange[:material/warning:] #{cid} **retrain** · from cli · queued {_ui.when(datetime(2026, 3, 4, 12, 0))} · "
            f":red[failed {_ui.when(datetime(2026, 3, 4, 12, 0, 9))}: no labelled data: import some first]") in texts(at)


def test_retrain_now_run_by_a_real_worker_ends_with_its_result_and_the_new_version(open_page, tmp_path, labelled_csv):
    home = tmp_path / "home"
    ctx = context(home)
    import_file(ctx, labelled_csv, labeled=True)
    at = open_page(home)
    assert "No model yet." in at.info[0].value
    at.button(key="retrain_now").click().run()
    (command,) = recent_commands(ctx.db)
    Worker(ctx, synchronous=True).process_commands()  # the worker's own code path, run inline
    time.sleep(1.1)  # let the page's one-second cache of the command list expire, as it would between refreshes
    at.run()  # no cache clearing: the command list sees the end and refreshes the page itself
    assert not at.exception
    done = get_command(ctx.db, command["id"])
    assert done["status"] == "done" and done["message"].startswith("retrain #1 accepted")
    assert (f":green[:material/check_circle:] #{command['id']} **retrain** · from dashboard · queued {_ui.when(done['created_at'])} · "
            f"done {_ui.when(done['finished_at'])}: {done['message']}") in texts(at)
    assert not at.info
    table = at.dataframe[0].value
    assert list(zip(table["Version"], table["Status"], table["Trigger"])) == [("v0001", "champion", "manual")]
