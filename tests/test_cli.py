"""``python -m engine ...`` in real subprocesses, each story on its own data directory.

Starting the CLI costs about 3 s (importing scikit-learn, pandas and DuckDB), so the
module runs every story once, several at a time, in ``cli`` below; each test then checks
its own story's outputs and the store it left behind. A story is a list of CLI calls made
one after the other on one data directory, prepared as:

- ``empty``: nothing there yet;
- ``trained``: 800 labelled rows imported and v0001 deployed (built in-process, copied);
- ``retrained``: the same, then a second retrain that deployed v0002 (v0001 retired).

A few more error paths call ``engine.cli.main`` in this process (the same code without
the start-up cost). ``demo`` and ``worker`` are tested elsewhere.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine import registry
from engine.cli import main
from engine.classifier import Classifier
from engine.config import load_settings
from engine.context import Context
from engine.importer import import_file
from engine.retrain import run_cycle
from engine.scheduling import PAUSED_KEY
from engine.status import system_status
from store.commands import get_command, recent_commands
from store.events import recent_events
from store.querylog import count_rows
from store.models import list_models
from store.state import read_state
from tests.conftest import labelled_frame, run_cli

# About 20 s of CLI start-ups on two idle cores, all in the first test's set-up: allow for a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CORPUS = Path(__file__).resolve().parent / "data" / "imports"
TWO_QUERIES = ("where is my order", "i want a refund")


@dataclass(frozen=True)
class Story:
    home: str                              # empty, trained or retrained
    calls: tuple[tuple[str, ...], ...]     # "{files}" in an argument is the story's scratch folder


STORIES = {
    "import_retrain_status": Story("empty", (
        ("import", "{files}/rejects.csv", "--labeled"), ("retrain", "--wait"), ("status",))),
    "pause_resume": Story("trained", (("pause",), ("status", "--json"), ("resume",), ("status", "--json"))),
    "predict": Story("trained", (("predict", *TWO_QUERIES),)),
    "events": Story("retrained", (("events", "--limit", "3", "--json"),)),
    "rollback_only_version": Story("trained", (("rollback", "--wait"),)),
    "rollback_after_retrain": Story("retrained", (("rollback", "--wait"),)),
    "rollback_path_as_version": Story("trained", (("rollback", "--to", "../../etc/passwd"),)),
    "retrain_no_wait": Story("trained", (("retrain",),)),
    "import_missing": Story("empty", (("import", "{files}/missing.csv"),)),
    "import_xlsx": Story("empty", (("import", "{files}/file.xlsx"),)),
}


@dataclass
class StoryRun:
    home: Path
    files: Path
    results: list[subprocess.CompletedProcess]

    def ctx(self) -> Context:
        return Context.open(load_settings(env={}, home=self.home))


def _write_rejects_csv(path: Path) -> None:
    """The 800 labelled rows with an empty text at line 5, an empty label at line 7, a 100,001-character text at line 9."""
    rows = labelled_frame().values.tolist()
    rows.insert(3, ["", "track_order"])
    rows.insert(5, ["where is my parcel", ""])
    rows.insert(7, ["x" * 100_001, "track_order"])
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows(rows)


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """Trained and retrained data directories built in-process (real clock, default settings), plus the cycles."""
    root = tmp_path_factory.mktemp("cli-templates")
    labelled = root / "labelled.csv"
    labelled_frame().to_csv(labelled, index=False)
    trained = root / "trained"
    ctx = Context.open(load_settings(env={}, home=trained))
    import_file(ctx, labelled, labeled=True)
    first = run_cycle(ctx, trigger="manual", force=True)
    assert (first.status, first.candidate) == ("accepted", "v0001")
    retrained = root / "retrained"
    shutil.copytree(trained, retrained)
    ctx = Context.open(load_settings(env={}, home=retrained))
    second = run_cycle(ctx, trigger="manual", force=True)
    assert (second.status, second.candidate) == ("accepted", "v0002")
    return {"empty": None, "trained": trained, "retrained": retrained, "first": first}


@pytest.fixture(scope="module")
def cli(templates, tmp_path_factory) -> dict[str, StoryRun]:
    """Run every story (its calls in order; stories side by side); return each one's results."""
    runs: dict[str, StoryRun] = {}
    for name, story in STORIES.items():
        root = tmp_path_factory.mktemp(f"cli-{name}")
        files = root / "files"
        files.mkdir()
        _write_rejects_csv(files / "rejects.csv")
        (files / "file.xlsx").write_text("text,label\nwhere is my order,track_order\n")
        home = root / "home"
        if templates[story.home] is not None:
            shutil.copytree(templates[story.home], home)
        runs[name] = StoryRun(home, files, [])

    def play(name: str) -> None:
        run = runs[name]
        for call in STORIES[name].calls:
            run.results.append(run_cli(*(arg.replace("{files}", str(run.files)) for arg in call), home=run.home))

    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(play, name) for name in STORIES]:
            future.result()
    return runs


def lines(text: str) -> list[str]:
    return text.splitlines()


# -- every story ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(STORIES), ids=list(STORIES))
def test_no_call_prints_a_traceback(cli, name):
    for call, result in zip(STORIES[name].calls, cli[name].results):
        assert "Traceback" not in result.stderr, (call, result.stderr)
        assert "Traceback" not in result.stdout, (call, result.stdout)


# -- import, retrain, status ----------------------------------------------------------------------


def test_import_lists_rejected_rows_by_line_and_prints_the_summary(cli):
    run = cli["import_retrain_status"]
    result = run.results[0]

    assert result.returncode == 1, result.stderr  # some rows rejected, the others stored
    assert lines(result.stdout)[:4] + lines(result.stdout)[5:] == [
        "  rejected line 5: text is empty",
        "  rejected line 7: label is empty: every row of a --labeled import needs a label",
        "  rejected line 9: text is 100,001 characters; the limit is 100,000 (setting max_text_length)",
        '  read as utf-8 (the bytes are valid UTF-8; --encoding NAME overrides), comma-separated, quote "',
        f"{run.files}/rejects.csv: 803 rows read, 800 labelled rows stored, 3 rejected",
    ]
    assert lines(result.stdout)[4].startswith("  20 new labels: ")
    # progress goes to stderr
    assert re.fullmatch(r"  100\.0%  803 rows read \(0\.1 of 0\.1 MB, \d+\.\ds\)\n", result.stderr), result.stderr
    assert count_rows(run.ctx().db) == {"queries": 0, "labels": 800}


def test_retrain_wait_without_a_worker_runs_the_cycle_here(cli, templates):
    run = cli["import_retrain_status"]
    result = run.results[1]

    assert result.returncode == 0, result.stderr
    # The same 800 rows as the in-process template, so the same model and the same words.
    assert lines(result.stdout) == ["command #1 retrain: done", f"retrain #1 accepted: {templates['first'].reason}"]
    assert templates["first"].reason.startswith("Accepted as the first model: accuracy ")
    assert "command #1 (retrain): no worker is running, so it runs here" in lines(result.stderr)
    ctx = run.ctx()
    assert registry.read_active(ctx.settings.registry_dir).active.version == "v0001"
    assert get_command(ctx.db, 1)["status"] == "done"


def test_status_shows_the_active_model_worker_scheduler_and_adaptive_counters(cli):
    run = cli["import_retrain_status"]
    result = run.results[2]

    assert result.returncode == 0, result.stderr
    ctx = run.ctx()
    model = {m["version"]: m for m in list_models(ctx.db)}["v0001"]
    out = lines(result.stdout)
    assert out[0] == f"data directory   {run.home}"
    assert re.fullmatch(r"active model     v0001 since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d: accuracy (.*), macro-F1 (.*)", out[1])
    assert out[1].endswith(f": accuracy {100 * model['accuracy']:.1f}%, macro-F1 {100 * model['macro_f1']:.1f}%")
    assert out[2:] == [
        "fallback         no",
        "worker           DOWN: start it with `python -m engine worker` (or `make run`)",
        "scheduler        running (as set; no job runs until a worker does)",
        "adaptive now     0 of 100 new labelled samples; 0.0 of 7 days since the last retrain (not due)",
    ]


# -- pause, resume, status --json -------------------------------------------------------------------


def test_pause_and_resume_are_persisted_and_shown_by_status_json(cli):
    run = cli["pause_resume"]
    pause, paused_status, resume, resumed_status = run.results

    assert [r.returncode for r in run.results] == [0, 0, 0, 0], [r.stderr for r in run.results]
    assert lines(pause.stdout) == ["command #1 pause: done", "scheduler paused"]
    assert lines(resume.stdout) == ["command #2 resume: done", "scheduler resumed"]
    assert json.loads(paused_status.stdout)["scheduler"] == {"paused": True, "jobs": []}

    status = json.loads(resumed_status.stdout)
    assert status["scheduler"] == {"paused": False, "jobs": []}
    model = {m["version"]: m for m in list_models(run.ctx().db)}["v0001"]
    assert status["active"]["version"] == "v0001"
    assert (status["active"]["accuracy"], status["active"]["macro_f1"]) == (model["accuracy"], model["macro_f1"])
    assert (status["active"]["train_rows"], status["active"]["eval_rows"]) == (model["train_rows"], model["eval_rows"])
    assert status["worker"]["alive"] is False
    assert status["worker"]["busy"] is None
    assert (status["fallback"], status["retrain_in_progress"], status["spool_backlog_files"]) == (None, None, 0)
    adaptive = status["adaptive"]
    assert 0 <= adaptive.pop("days_since_last_retrain") < 1
    assert adaptive == {"new_samples": 0, "min_samples": 100, "max_days": 7.0, "due": False}

    ctx = run.ctx()
    assert read_state(ctx.db)[PAUSED_KEY][0] is False
    assert [e["message"] for e in recent_events(ctx.db, kind="scheduler")] == [
        "Scheduler resumed (command #2, from cli).", "Scheduler paused (command #1, from cli)."]


# -- predict, events ---------------------------------------------------------------------------------


def test_predict_prints_one_line_per_text_and_logs_the_queries(cli):
    run = cli["predict"]
    result = run.results[0]

    assert result.returncode == 0, result.stderr
    out = [line.split("\t") for line in lines(result.stdout)]
    assert [len(fields) for fields in out] == [5, 5]
    settings = load_settings(env={}, home=run.home)
    with Classifier(settings=settings, log_queries=False, background=False, report_events=False) as clf:
        expected = clf.predict_many(list(TWO_QUERIES))
    for fields, text, p in zip(out, TWO_QUERIES, expected):
        label, confidence, version, query_id, echoed = fields
        assert (label, confidence, version, echoed) == (p.label, f"{p.confidence:.3f}", "v0001", text)
        assert re.fullmatch(r"[0-9a-f]{32}", query_id)
    assert [fields[0] for fields in out] == ["track_order", "request_refund"]

    ctx = run.ctx()
    assert count_rows(ctx.db) == {"queries": 2, "labels": 800}
    assert system_status(ctx)["spool_backlog_files"] == 0
    with ctx.db.read() as con:
        stored = con.execute("SELECT id, text, predicted_label, model_version FROM queries ORDER BY text DESC").fetchall()
    assert stored == [(f[3], f[4], f[0], "v0001") for f in out]


def test_events_limit_json_returns_the_newest_first(cli):
    run = cli["events"]
    result = run.results[0]

    assert result.returncode == 0, result.stderr
    events = json.loads(result.stdout)
    with run.ctx().db.read() as con:
        all_ids = sorted((row[0] for row in con.execute("SELECT id FROM events").fetchall()), reverse=True)
    assert len(all_ids) == 7  # import, then a registration, a gate and a deploy per retrain
    assert [e["id"] for e in events] == all_ids[:3]
    assert [(e["kind"], e["version"]) for e in events] == [("deploy", "v0002"), ("gate", "v0002"), ("registry", "v0002")]
    stored = {e["id"]: e for e in recent_events(run.ctx().db, limit=10)}
    assert [(e["message"], e["details"]) for e in events] == [(stored[i]["message"], stored[i]["details"]) for i in all_ids[:3]]


# -- rollback ---------------------------------------------------------------------------------------------


def test_rollback_with_only_one_version_is_refused_before_it_is_queued(cli):
    run = cli["rollback_only_version"]
    result = run.results[0]

    # A state that prevents the work: exit 2 with the reason, nothing queued, nothing changed.
    assert result.returncode == 2
    assert (result.stdout, result.stderr) == (
        "", "error: nothing to roll back to: no version has served before the active one\n")
    ctx = run.ctx()
    assert registry.read_active(ctx.settings.registry_dir).active.version == "v0001"
    assert recent_commands(ctx.db) == [] and recent_events(ctx.db, kind="rollback") == []


def test_rollback_after_a_second_retrain_returns_to_v0001(cli):
    run = cli["rollback_after_retrain"]
    result = run.results[0]

    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == ["command #1 rollback: done",
                                    "Rolled back from v0002 to v0001 (requested from cli (command #1))."]
    ctx = run.ctx()
    pointer = registry.read_active(ctx.settings.registry_dir)
    assert pointer.active.version == "v0001"
    assert [ref.version for ref in pointer.history] == []  # v0002 was rolled back from: never a fallback
    assert {m["version"]: m["status"] for m in list_models(ctx.db)} == {"v0001": "champion", "v0002": "retired"}


def test_rollback_to_a_path_is_refused_as_a_version_name(cli):
    run = cli["rollback_path_as_version"]
    result = run.results[0]

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == ("error: '../../etc/passwd' is not a model version: versions look like v0007 "
                             "(see `python -m engine status`)\n")
    assert recent_commands(run.ctx().db) == []  # refused before anything was queued


# -- retrain without --wait, bad import paths ---------------------------------------------------------------


def test_retrain_without_wait_and_no_worker_queues_the_command(cli):
    run = cli["retrain_no_wait"]
    result = run.results[0]

    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == [
        "command #1 (retrain) queued; no worker is running: start one with `python -m engine worker` "
        "(or add --wait to run it now)"]
    command = get_command(run.ctx().db, 1)
    assert (command["kind"], command["status"], command["source"]) == ("retrain", "queued", "cli")


@pytest.mark.parametrize("name, message", [
    ("import_missing", "error: {files}/missing.csv does not exist or is not a file\n"),
    ("import_xlsx", "error: file.xlsx: unknown file type '.xlsx': use .csv, .tsv or .txt (delimited text), .jsonl or "
                    ".ndjson (JSON Lines), or .parquet\n"),
], ids=["missing-file", "xlsx-extension"])
def test_import_of_a_bad_path_exits_2_with_one_line(cli, name, message):
    run = cli[name]
    result = run.results[0]

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == message.replace("{files}", str(run.files))
    assert count_rows(run.ctx().db) == {"queries": 0, "labels": 0}


# -- more error paths, in this process ---------------------------------------------------------------------



def test_status_of_an_empty_store(cli_here):
    Context.open(load_settings(env={}, home=cli_here.home))  # with no store at all, status refuses: test_cli_guards.py
    code, out, err = cli_here("status")

    assert (code, err) == (0, "")
    assert lines(out) == [
        f"data directory   {cli_here.home}",
        "active model     none yet (import labelled data and run `python -m engine retrain --wait`, or `python -m engine demo`)",
        "fallback         no",
        "worker           DOWN: start it with `python -m engine worker` (or `make run`)",
        "scheduler        running (as set; no job runs until a worker does)",
        "adaptive now     0 of 100 new labelled samples; no retrain yet (not due)",
    ]


def test_predict_without_a_model_says_how_to_get_one(cli_here):
    Context.open(load_settings(env={}, home=cli_here.home))
    code, out, err = cli_here("predict", "hello")

    assert (code, out) == (2, "")
    assert err == (f"error: no model is deployed in {cli_here.home} yet: import labelled examples "
                   "(`python -m engine import FILE --labeled`) and train one (`python -m engine retrain --wait`), "
                   "or build the demo (`python -m engine demo`)\n")


def test_rollback_to_an_unknown_version_names_the_deployable_ones(cli_here, templates):
    shutil.copytree(templates["trained"], cli_here.home)

    code, out, err = cli_here("rollback", "--to", "v0099", "--wait")

    # Checked before it is queued: a state that prevents the work, exit 2, with the versions that could serve.
    assert code == 2 and out == ""
    assert err == "error: v0099 never served: roll back to a version that served before (none yet)\n"


@pytest.mark.parametrize("args, message", [
    (("import", str(CORPUS / "empty.csv"), "--labeled"),
     f"error: {CORPUS}/empty.csv is empty: it needs a header with a 'text' column and, as available, "
     "label, predicted_label, confidence, ts\n"),
    (("import", str(CORPUS / "missing_text_column.csv")),
     f"error: {CORPUS}/missing_text_column.csv has no 'text' column (columns found: query, label); "
     "rename the query column to 'text'\n"),
    (("rollback", "--to", "v1", "--wait"),
     "error: 'v1' is not a model version: versions look like v0007 (see `python -m engine status`)\n"),
], ids=["empty-file", "no-text-column", "short-version"])
def test_bad_input_is_one_error_line_and_exit_2(cli_here, args, message):
    assert cli_here(*args) == (2, "", message)


def test_argparse_errors_exit_2_with_usage(cli_here, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["events", "--limit", "many"])

    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "python -m engine events: error: argument --limit: 'many' is not a number of events: use a whole number "
        "from 1 to 1000000")


def test_import_shows_at_most_n_rejected_rows_and_the_ignored_columns(cli_here):
    code, out, err = cli_here("import", str(CORPUS / "confidence.csv"), "--show", "2")

    read_as = '  read as utf-8 (the bytes are valid UTF-8; --encoding NAME overrides), comma-separated, quote "'
    assert code == 1  # rows were rejected
    assert lines(out) == [
        "  rejected line 2: confidence 'abc' is not a number: use a number from 0 to 1",
        "  rejected line 3: confidence '-0.2' is outside [0, 1]",
        "  ... and 4 more rejected rows (use --show N to list more)",
        read_as,
        "  1 new label: track_order",
        f"{CORPUS}/confidence.csv: 9 rows read, 3 logged queries stored, 6 rejected",
    ]
    code, out, err = cli_here("import", str(CORPUS / "extra_columns.csv"), "--labeled")

    assert (code, lines(out)) == (0, [
        read_as,
        "  ignored columns: customer_id, notes",
        "  1 new label: request_refund",  # track_order came with the logged queries above
        f"{CORPUS}/extra_columns.csv: 2 rows read, 2 labelled rows stored, 0 rejected",
    ])


def test_import_that_stores_nothing_exits_1(cli_here):
    code, out, err = cli_here("import", str(CORPUS / "labels_case.csv"))  # no predicted_label: not logged queries

    assert code == 1
    assert lines(out)[-1] == f"{CORPUS}/labels_case.csv: 3 rows read, nothing stored, 3 rejected"
    assert "Traceback" not in err


def test_status_names_the_adaptive_jobs_last_check_only_when_it_is_listed(demo_copy):
    from tests.conftest import run_cli

    result = run_cli("status", home=demo_copy)
    out = lines(result.stdout)
    assert result.returncode == 0, result.stderr
    [job] = [line for line in out if line.startswith("  adaptive ")]
    assert re.fullmatch(r"  adaptive  next \d{4}-\d\d-\d\d \d\d:\d\d:\d\d   last run \d{4}-\d\d-\d\d \d\d:\d\d:\d\d: .+", job)
    [now] = [line for line in out if line.startswith("adaptive now ")]
    assert now.endswith("; the adaptive line above is its last check)")
    assert "scheduler        running (as set; no job runs until a worker does)" in out
