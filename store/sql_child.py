"""The process that runs one SQL page query: ``python -m store.sql_child``, started by ``store.views.sql``.

A visitor's query runs here, never in the dashboard's process, because DuckDB's own limits do
not hold on their own: ``unnest(range(100000000))`` ignored an ``interrupt()`` for 20 s and
``memory_limit`` (it bounds DuckDB's buffer pool, not a list built by a scalar function) for
7 GB. So the limits are the kernel's: this process caps its own data segment
(``RLIMIT_DATA``) before it imports DuckDB, so an allocation past it fails inside DuckDB with
an out-of-memory error, and the parent kills it (SIGKILL) at the deadline, which always fires.

It starts, imports DuckDB and pyarrow, then waits for one job, a JSON line on stdin:
``{"path", "query", "tables", "row_limit", "byte_limit", "memory_limit_mb", "threads"}``. It
opens the snapshot at ``path`` read-only and locked down (see ``connect``), refuses any name
in ``tables`` that is not one of the snapshot's own tables or views, runs the query, and
writes one JSON header line to stdout followed, when ``ok``, by the rows as an Arrow IPC
stream: at most ``row_limit`` rows and about ``byte_limit`` bytes (Arrow's count). The header
is ``{"ok": true, "truncated": null | "rows" | "bytes"}`` or
``{"ok": false, "kind": "refused" | "memory" | "interrupt" | "permission" | "failed", "message"}``.
Imports nothing from the project but this file, so it starts fast.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from typing import Any

# Rows per Arrow batch: small, so a byte limit is noticed early.
BATCH_ROWS = 16


def limit_memory(megabytes: int) -> None:
    """Cap this process's data segment (heap and anonymous mappings) at ``megabytes`` MiB."""
    limit = megabytes * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def connect(path: str, *, memory_limit_mb: int, threads: int):
    """A read-only connection to the snapshot that reaches no file, network, extension or setting."""
    import duckdb

    con = duckdb.connect(path, read_only=True, config={
        "enable_external_access": False,       # no files, no network: read_csv, COPY, ATTACH, INSTALL fail
        "autoload_known_extensions": False,
        "autoinstall_known_extensions": False,
        "allow_community_extensions": False,
        "allow_unsigned_extensions": False,
        "memory_limit": f"{memory_limit_mb}MB",
        "threads": threads,
        "max_temp_directory_size": "0B",       # never spill to disk
    })
    con.execute("SET enable_progress_bar = false")  # a session option: it cannot be given to connect
    con.execute("SET lock_configuration = true")    # SET, RESET and PRAGMA cannot change any of the above
    return con


STORE_NAMES = """
SELECT lower(table_name) FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main'
UNION
SELECT lower(view_name) FROM duckdb_views() WHERE database_name = current_database() AND schema_name = 'main'
  AND NOT internal
"""


def run(job: dict[str, Any], out) -> None:
    import duckdb
    import pyarrow as pa

    def fail(kind: str, message: str) -> None:
        out.write((json.dumps({"ok": False, "kind": kind, "message": message}) + "\n").encode())

    con = connect(job["path"], memory_limit_mb=job["memory_limit_mb"], threads=job["threads"])
    try:
        names = {row[0] for row in con.execute(STORE_NAMES).fetchall()}
        unknown = [name for name in job["tables"] if name.lower() not in names]
        if unknown:
            fail("refused", f"{unknown[0]!r}, which is not one of the store's tables or views "
                            f"({', '.join(sorted(names))})")
            return
        reader = con.sql(job["query"]).to_arrow_reader(BATCH_ROWS)
        batches, rows, size, truncated = [], 0, 0, None
        for batch in reader:
            room = job["row_limit"] - rows
            if batch.num_rows > room:
                batch, truncated = batch.slice(0, room), "rows"
            if size + batch.nbytes > job["byte_limit"]:
                truncated = "bytes"
                break
            batches.append(batch)
            rows += batch.num_rows
            size += batch.nbytes
            if truncated:
                break
        schema = reader.schema
    except duckdb.OutOfMemoryException as exc:
        fail("memory", _first_lines(exc))
        return
    except MemoryError:
        fail("memory", "out of memory")
        return
    except (pa.ArrowException, OSError) as exc:  # DuckDB's error, met while Arrow pulled the next batch
        text = _first_lines(exc)
        fail("memory" if "Out of Memory" in text else "failed", text)
        return
    except duckdb.InterruptException as exc:
        fail("interrupt", _first_lines(exc))
        return
    except duckdb.PermissionException as exc:
        fail("permission", _first_lines(exc))
        return
    except duckdb.Error as exc:
        fail("failed", _first_lines(exc))
        return
    finally:
        pass_through_close(con)
    out.write((json.dumps({"ok": True, "truncated": truncated}) + "\n").encode())
    with pa.ipc.new_stream(out, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)


def pass_through_close(con) -> None:
    """Close the connection; a close that fails changes nothing for the answer already taken."""
    try:
        con.close()
    except Exception as exc:  # the process ends next anyway
        sys.stderr.write(f"close failed: {exc}\n")


def _first_lines(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return " ".join(lines[:3])[:400]


def main() -> int:
    memory = int(sys.argv[1]) if len(sys.argv) > 1 else 768
    limit_memory(memory)
    # The answer goes through a private copy of stdout; whatever DuckDB or Python print goes to stderr.
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    import duckdb  # noqa: F401  (imported before the job arrives: a waiting child answers at once)
    import pyarrow  # noqa: F401

    channel.write(b"ready\n")
    channel.flush()
    line = sys.stdin.buffer.readline()
    if not line.strip():
        return 0  # the parent went away without a job (a standby that was never used)
    run(json.loads(line), channel)
    channel.flush()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    # The answer is written and flushed: skip the interpreter's teardown (unloading DuckDB and pyarrow took
    # 30-100 ms, which the page waited for before showing the rows).
    os._exit(code)
