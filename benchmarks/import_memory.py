"""Import memory: peak RSS of `python -m engine import` on a 1 GB CSV, beside whole-file readers on a smaller one.

Run: ``.venv/bin/python -m benchmarks.import_memory [--gb 1.0] [--baseline-mb 100] [--work DIR]``

Each measurement runs in its own process, which reports its own peak resident set size (VmHWM from
/proc/self/status: ``ru_maxrss`` would carry a parent's size across exec) and its wall time:

- ``streaming import``: :func:`engine.importer.import_file` on the 1 GB file and on the smaller file;
  ``before insert`` is the peak while reading, checking and staging (bounded: the same at 10x the
  size), ``peak RSS`` includes the one-transaction insert into DuckDB, which grows with the rows of
  the file (DuckDB's primary-key index and insert buffers);
- baselines, on the smaller file only (they hold the whole file): ``pandas.read_csv`` (the reader the
  importer used before issue 12: the file's bytes, then every row as a dict) and ``pandas.read_csv``
  alone.

The file: labelled support messages (about 150 bytes a row, 20 labels), written once into the work folder.
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
    started = time.perf_counter()
    if mode == "streaming":
        sys.path.insert(0, str(ROOT))
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
        report = import_file(ctx, path, labeled=True)
        rows, stored = report.rows, report.labels
        return {"mode": mode, "rows": rows, "stored": stored, "seconds": time.perf_counter() - started,
                "peak_rss_mb": peak_rss_mb(), "staging_peak_mb": staged_peak["mb"]}
    elif mode == "whole_file":  # the importer before issue 12: every byte, then every row as a dict
        import csv
        import io

        text = path.read_bytes().decode("utf-8", errors="surrogateescape")
        records = list(csv.DictReader(io.StringIO(text, newline="")))
        rows = stored = len(records)
    elif mode == "pandas":
        import pandas as pd

        frame = pd.read_csv(path)
        rows = stored = len(frame)
    else:
        raise SystemExit(f"unknown mode {mode}")
    return {"mode": mode, "rows": rows, "stored": stored, "seconds": time.perf_counter() - started,
            "peak_rss_mb": peak_rss_mb()}


def measure(mode: str, path: Path, work: Path) -> dict:
    home = work / f"home-{mode}-{path.stem}"
    if home.exists():
        subprocess.run(["rm", "-rf", str(home)], check=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "benchmarks.import_memory", "--child", mode, str(path), str(home)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{mode} on {path.name} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="size of the big file in GB (default 1.0)")
    parser.add_argument("--baseline-mb", type=float, default=100, help="size of the smaller file in MB (default 100)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/retrainer-import-bench"), help="folder for the files")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "PATH", "HOME"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        mode, path, home = args.child
        print(json.dumps(child(mode, Path(path), Path(home))))
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    small = args.work / f"queries-{int(args.baseline_mb)}mb.csv"
    big = args.work / f"queries-{args.gb:g}gb.csv"
    sizes = {small: int(args.baseline_mb * 1e6), big: int(args.gb * 1e9)}
    counts = {path: make_csv(path, size=size) for path, size in sizes.items()}
    results = [
        ("streaming import", big, measure("streaming", big, args.work)),
        ("streaming import", small, measure("streaming", small, args.work)),
        ("whole-file reader (before)", small, measure("whole_file", small, args.work)),
        ("pandas.read_csv", small, measure("pandas", small, args.work)),
    ]
    print(f"{'reader':<28} {'file':>9} {'rows':>12} {'stored':>12} {'peak RSS':>10} {'before insert':>14} "
          f"{'time':>8} {'rows/s':>10}")
    for name, path, r in results:
        before = f"{r['staging_peak_mb']:>12,.0f}MB" if "staging_peak_mb" in r else f"{'-':>14}"
        print(f"{name:<28} {path.stat().st_size / 1e6:>7,.0f}MB {r['rows']:>12,} {r['stored']:>12,} "
              f"{r['peak_rss_mb']:>8,.0f}MB {before} {r['seconds']:>7,.1f}s {r['rows'] / r['seconds']:>10,.0f}")
    assert counts[big] == results[0][2]["rows"], "the streaming import did not read every row"
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
