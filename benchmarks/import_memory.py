"""Import memory and speed: `python -m engine import` on 100 MB and 1 GB of CSV and on a Parquet log, beside baselines.

Run: ``.venv/bin/python -m benchmarks.import_memory [--gb 1.0] [--small-mb 100] [--parquet-rows 1000000] [--work DIR]``

Each measurement runs in its own process, which reports its own peak resident set size (VmHWM from
/proc/self/status: ``ru_maxrss`` would carry a parent's size across exec) and its wall time:

- ``import``: :func:`engine.importer.import_file` into a new store; ``before insert`` is the peak
  while reading, checking and staging, ``peak RSS`` includes the one-transaction insert into DuckDB
  (issue 12 case 9: both should stay flat from 100 MB to 1 GB);
- ``reading alone`` (baseline for memory): :meth:`engine.readers.CsvReader.batches` over the file,
  nothing checked or stored;
- ``DuckDB read_csv`` / ``read_parquet`` (baseline for speed, issue 15): DuckDB's own reader
  into a table of a new database file (``CREATE TABLE AS``), no checks.

Files: labelled support messages as CSV (about 167 bytes a row, 20 labels); the scale suite's
logged queries as Parquet (``benchmarks.scale.write_import_file``: text, predicted label,
confidence, time, a label on 10%), imported as logged queries. Written once into the work folder.
The machine is shared: compare figures within one run (the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("where is my order please help me with the refund for item number cancel subscription "
         "account password reset delivery late damaged wrong size invoice payment failed").split()


def make_csv(path: Path, *, size: int, seed: int = 0) -> int:
    """Write about ``size`` bytes of ``text,label`` rows; return the number of rows."""
    if path.exists() and abs(path.stat().st_size - size) < size * 0.01:
        with open(path, "rb") as f:
            return sum(piece.count(b"\n") for piece in iter(lambda: f.read(1 << 24), b"")) - 1
    rng = random.Random(seed)
    rows = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("text,label\n")
        written = 11
        chunk = []
        phrases = [" ".join(rng.choice(WORDS) for _ in range(8)) for _ in range(2000)]
        while written < size:
            words = " ".join(rng.choices(phrases, k=rng.randint(2, 4)))
            line = f"{words} {rng.randint(1, 10**6)},intent_{rng.randint(0, 19)}\n"
            chunk.append(line)
            written += len(line)
            rows += 1
            if len(chunk) == 100_000:
                f.write("".join(chunk))
                chunk = []
        f.write("".join(chunk))
    return rows


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(mode: str, path: Path, home: Path) -> dict:
    """One measurement in this fresh process; the time covers the work only, not importing modules."""
    sys.path.insert(0, str(ROOT))
    import clevercsv  # noqa: F401  (the readers import these lazily: loaded before the clock starts)
    import pyarrow.compute  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    extra = {}
    if mode == "import":
        from engine.config import load_settings
        from engine.context import Context
        from engine.importer import import_file

        import engine.importer as importer

        staged_peak = {}
        commit = importer.commit_staged

        def measured_commit(con, **staged):  # the peak of reading, checking and staging, before the insert
            staged_peak["mb"] = peak_rss_mb()
            return commit(con, **staged)

        importer.commit_staged = measured_commit
        ctx = Context.open(load_settings(env={}, home=home))
        started = time.perf_counter()
        report = import_file(ctx, path, labeled=path.suffix == ".csv")
        rows, stored = report.rows, report.labels + report.queries
        extra = {"staging_peak_mb": staged_peak["mb"]}
    elif mode == "reading":
        from engine.readers import CsvReader, Source

        rows = 0
        started = time.perf_counter()
        with open(path, "rb") as f:
            reader = CsvReader(f, path=path, encoding="utf-8", limit=865_536, source=Source("csv"), max_text_length=100_000)
            for batch in reader.batches():
                rows += len(batch)
        stored = 0
    elif mode == "duckdb":
        import duckdb

        home.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(home / "baseline.duckdb"))
        source = "read_csv" if path.suffix == ".csv" else "read_parquet"
        started = time.perf_counter()
        con.execute(f"CREATE TABLE t AS SELECT * FROM {source}($path)", {"path": str(path)})
        rows = stored = con.execute("SELECT count(*) FROM t").fetchone()[0]
        con.close()
    else:
        raise SystemExit(f"unknown mode {mode}")
    return {"mode": mode, "rows": rows, "stored": stored, "seconds": time.perf_counter() - started,
            "peak_rss_mb": peak_rss_mb(), "load": os.getloadavg()[0], **extra}


def measure(mode: str, path: Path, work: Path) -> dict:
    home = work / f"home-{mode}-{path.stem}"
    if home.exists():
        subprocess.run(["rm", "-rf", str(home)], check=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "benchmarks.import_memory", "--child", mode, str(path), str(home)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    subprocess.run(["rm", "-rf", str(home)], check=True)
    if done.returncode != 0:
        raise SystemExit(f"{mode} on {path.name} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="size of the big file in GB (default 1.0)")
    parser.add_argument("--small-mb", type=float, default=100, help="size of the smaller CSV file in MB (default 100)")
    parser.add_argument("--parquet-rows", type=int, default=1_000_000, help="logged queries in the Parquet file (default 1M)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/retrainer-import-bench"), help="folder for the files")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "PATH", "HOME"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        mode, path, home = args.child
        print(json.dumps(child(mode, Path(path), Path(home))))
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    small = args.work / f"queries-{int(args.small_mb)}mb.csv"
    big = args.work / f"queries-{args.gb:g}gb.csv"
    sizes = {small: int(args.small_mb * 1e6), big: int(args.gb * 1e9)}
    counts = {path: make_csv(path, size=size) for path, size in sizes.items()}
    parquet = args.work / f"logged-{args.parquet_rows}.parquet"
    if not parquet.exists():
        from benchmarks.scale import write_import_file

        write_import_file(parquet, args.parquet_rows)
    results = []
    for path in (small, big, parquet):
        modes = ("import", "reading", "duckdb") if path.suffix == ".csv" else ("import", "duckdb")
        for mode in modes:
            results.append((mode, path, measure(mode, path, args.work)))
    names = {"import": "import (engine.importer)", "reading": "reading alone (CsvReader)",
             "duckdb": "DuckDB read_csv / read_parquet"}
    print(f"{'measurement':<32} {'file':>16} {'rows':>11} {'stored':>11} {'peak RSS':>9} {'before insert':>13} "
          f"{'time':>7} {'rows/s':>9} {'load':>5}")
    for mode, path, r in results:
        before = f"{r['staging_peak_mb']:>11,.0f}MB" if "staging_peak_mb" in r else f"{'-':>13}"
        label = f"{path.stat().st_size / 1e6:,.0f} MB {path.suffix[1:]}"
        print(f"{names[mode]:<32} {label:>16} {r['rows']:>11,} {r['stored']:>11,} {r['peak_rss_mb']:>7,.0f}MB {before} "
              f"{r['seconds']:>6,.1f}s {r['rows'] / r['seconds']:>9,.0f} {r['load']:>5.1f}")
    for path in (small, big):
        imported = next(r for mode, p, r in results if p == path and mode == "import")
        assert imported["rows"] == counts[path], f"the import of {path.name} did not read every row"
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
