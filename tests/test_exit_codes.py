"""Every command's exit code says what the README says: 0 done, 1 the work ran and failed, 2 bad input or state.

The audit, command by command (the other codes are covered in test_cli.py):
worker 0 stopped / 2 another worker; run 0 stopped / 1 a child died; demo 0 / 2 not empty;
retrain --wait 0 accepted, rejected or skipped / 1 failed; rollback 0 / 1 refused by the worker / 2 nothing to
roll back to or a target that never served (checked before it is queued);
pause, resume 0; status, events 0 (also when the reader closes the pipe); import 0 / 1 nothing stored /
2 unreadable; predict 0 (also when the store is busy: the queries wait in the spool) / 2 no model;
export-log 0 / 2 bad day.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.config import load_settings
from engine.context import Context
from engine.importer import import_file
from engine.ingest import ingest_spool
from engine.retrain import run_cycle
from store.commands import get_command
from store.querylog import count_rows
from tests.conftest import ROOT, labelled_frame
from tests.test_store_busy import store_held



def test_a_failed_retrain_wait_exits_1(cli_here, tmp_path):
    one_label = tmp_path / "one-label.csv"
    one_label.write_text("text,label\n" + "".join(f"where is parcel {i},track_order\n" for i in range(60)))
    assert cli_here("import", str(one_label), "--labeled")[0] == 0

    code, out, err = cli_here("retrain", "--wait")

    assert code == 1, out + err
    assert out.splitlines()[0] == "command #1 retrain: failed"
    assert out.splitlines()[1].startswith("retrain #1 failed: ")
    ctx = Context.open(load_settings(env={}, home=cli_here.home))
    assert get_command(ctx.db, 1)["status"] == "failed"


@pytest.mark.slow
@pytest.mark.parametrize("args", [("status", "--json"), ("status",), ("events", "--json")],
                         ids=["status --json", "status", "events --json"])
def test_a_reader_that_closes_the_pipe_early_ends_the_command_quietly(tmp_path, args):
    Context.open(load_settings(env={}, home=tmp_path / "home"))  # an empty store: without one they refuse (exit 2)
    env = {"RETRAINER_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # like `| head` that has read what it wanted, before anything is written
    err = proc.stderr.read()
    assert (proc.wait(timeout=120), err) == (0, "")


@pytest.mark.slow
def test_predict_with_the_store_busy_prints_logs_and_exits_0(cli_here, monkeypatch):
    settings = load_settings(env={}, home=cli_here.home)
    ctx = Context.open(settings)
    path = cli_here.home.parent / "labelled.csv"
    labelled_frame(10).to_csv(path, index=False)
    import_file(ctx, path, labeled=True)
    assert run_cycle(ctx, trigger="manual").status == "accepted"
    queries_before = count_rows(ctx.db)["queries"]

    with store_held(settings.db_path):
        code, out, err = cli_here("predict", "where is my order")

    assert code == 0, err
    label, confidence, version, query_id, text = out.rstrip("\n").split("\t")
    assert (version, text) == ("v0001", "where is my order")
    assert err.startswith(f"warning: the queries wait in the spool ({settings.spool_dir}) and are stored when a "
                          "worker runs or the next command can reach the store: another program holds the store ")
    # Nothing was lost: the spool holds the query, and the next ingest stores it.
    assert ingest_spool(ctx.db, settings.spool_dir, clock=ctx.clock).queries == 1
    assert count_rows(ctx.db)["queries"] == queries_before + 1
