"""SQL page suite (issue 13, cases 1-2): the worker's longest lock wait while hostile visitor queries run.

A worker-like writer process (a store write every 20 ms, like the worker's heartbeat, ingest and
command writes) runs while the SQL page's ``run_readonly`` answers three hostile queries made
only of allowed functions, each with the page's 5 s limit:

- ``count(*) FROM range(1e13)`` (pure compute: runs until stopped),
- ``count(*) FROM unnest(range(1e8))`` (ignored DuckDB's interrupt for 20-40 s and took 7 GB),
- ``max(length(repeat(message, 100000))) FROM events, range(1e8)`` (big strings, long).

Figures: the writer's longest wait for the store's lock, and each query's wall time and outcome.
Baseline, same run, same store and writer: the previous design, the query on a locked-down
read-only DuckDB connection opened in-process under the store's shared lock, stopped by
``interrupt()`` from a timer thread at the same 5 s limit.

``python -m benchmarks.sql_limits`` runs it alone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from benchmarks.common import ROOT, Row, SuiteResult, print_outcome, say

TIMEOUT_S = 5.0
HOSTILE = {
    "range(1e13)": "SELECT count(*) FROM range(10000000000000)",
    "unnest(range(1e8))": "SELECT count(*) FROM unnest(range(100000000))",
    "repeat x range(1e8)": "SELECT max(length(repeat(message, 100000))) FROM events, range(100000000)",
}
WRITER = """
import json, sys, time
from datetime import datetime
from store import open_store
from store.events import record_event
db = open_store(sys.argv[1])
stop = sys.argv[2]
import os
n = 0
while not os.path.exists(stop):
    record_event(db, ts=datetime(2026, 3, 6), kind="load", message="write")
    n += 1
    time.sleep(0.02)
print(json.dumps({"writes": n, "longest_wait_s": db.longest_wait}))
"""


def build_store(home: Path) -> Any:
    from engine.config import load_settings
    from engine.context import Context
    from store.events import record_event

    shutil.rmtree(home, ignore_errors=True)
    ctx = Context.open(load_settings(env={}, path=None, home=home))
    for i in range(100):
        record_event(ctx.db, ts=datetime(2026, 3, 4, 12, 0), kind="note", message=f"event {i}")
    return ctx.db


def _old_design(db: Any, sql: str, timeout_s: float) -> str:
    """The previous run_readonly: in-process, under the store's shared lock, interrupt() at the deadline."""
    import duckdb

    from store import sql_child

    with db.locked(write=False):
        con = duckdb.connect(str(db.path), read_only=True, config={
            "enable_external_access": False, "memory_limit": "512MB", "max_temp_directory_size": "0B"})
        timer = threading.Timer(timeout_s, con.interrupt)
        timer.start()
        try:
            con.execute(sql).fetchmany(1001)
            return "answered"
        except duckdb.Error as exc:
            return sql_child._first_lines(exc)[:60]
        finally:
            timer.cancel()
            con.close()


def _new_design(db: Any, sql: str, timeout_s: float) -> str:
    from engine.errors import InputError
    from store.views import sql as views

    try:
        views.run_readonly(db, sql, timeout_s=timeout_s, max_age_s=0)
        return "answered"
    except InputError as exc:
        return str(exc)[:60]


def measure(home: Path, run_query: Callable[[Any, str, float], str], queries: dict[str, str]) -> dict[str, Any]:
    """The writer's longest lock wait and each query's time and outcome, with ``run_query`` answering."""
    db = build_store(home)
    stop = home / "stop-writer"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db.path), str(stop)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_query(db, "SELECT 1", TIMEOUT_S)  # a running dashboard has its query process waiting, DuckDB imported
    time.sleep(1.0)
    runs = []
    for name, sql in queries.items():
        started = time.perf_counter()
        outcome = run_query(db, sql, TIMEOUT_S)
        runs.append({"query": name, "seconds": time.perf_counter() - started, "outcome": outcome})
    stop.touch()
    out, err = writer.communicate(timeout=600)
    if writer.returncode != 0:
        raise RuntimeError(f"the writer failed:\n{err[-2000:]}")
    return {**json.loads(out), "runs": runs}


def run(work: Path, *, quick: bool) -> SuiteResult:
    result = SuiteResult()
    queries = dict(list(HOSTILE.items())[:2]) if quick else HOSTILE
    say(f"sql_limits: {len(queries)} hostile queries through the SQL page while a writer writes")
    new = measure(work / "sql-limits-new", _new_design, queries)
    say("sql_limits: baseline, the same queries in-process under the store's lock")
    old = measure(work / "sql-limits-old", _old_design, queries)
    result.rows += [
        Row("sql_limits", "worker's longest lock wait, hostile SQL running", new["longest_wait_s"] * 1000, "ms",
            baseline=old["longest_wait_s"] * 1000, target="< 1 s", passed=new["longest_wait_s"] < 1.0),
        Row("sql_limits", "longest hostile query, limit 5 s", max(r["seconds"] for r in new["runs"]), "s",
            baseline=max(r["seconds"] for r in old["runs"]), target="<= 5 s + start",
            passed=max(r["seconds"] for r in new["runs"]) < TIMEOUT_S + 1.0),
    ]
    lines = ["### SQL page: hostile queries while a worker-like writer writes", "",
             "| query | this design: s, outcome | in-process under the lock: s, outcome |", "| --- | --- | --- |"]
    for a, b in zip(new["runs"], old["runs"]):
        lines.append(f"| `{a['query']}` | {a['seconds']:.1f} s, {a['outcome']} | {b['seconds']:.1f} s, {b['outcome']} |")
    lines += ["", f"Writer: {new['writes']} writes, longest wait {new['longest_wait_s'] * 1000:.0f} ms (this design); "
              f"{old['writes']} writes, longest wait {old['longest_wait_s'] * 1000:.0f} ms (baseline)."]
    result.details.append("\n".join(lines))
    return result


if __name__ == "__main__":
    started = time.perf_counter()
    print_outcome("sql_limits", run(Path("/tmp/retrainer-bench"), quick="--quick" in sys.argv), started)
