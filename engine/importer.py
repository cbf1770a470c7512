"""Importing a team's own data: logged queries and labelled examples from files.

Formats, chosen by the file's extension: CSV (``.csv``), JSON Lines (``.jsonl``,
``.ndjson``) and Parquet (``.parquet``). Columns: ``text`` (required) and, as
available, ``label``, ``predicted_label``, ``confidence``, ``ts``.

- With ``labeled=True`` every row needs a ``label``: rows become human labels
  (training and evaluation data). If a row also has ``predicted_label`` it is stored
  as a logged query as well.
- Without it, rows are logged queries and need ``predicted_label`` and
  ``confidence``; a ``label`` on such a row is stored as its true label.

Normalisation (documented, so nothing surprises): text is kept as written except
that control characters other than tab and newline become spaces and surrounding
whitespace is stripped; labels are stripped and lower-cased (``" Track_Order "`` ->
``track_order``); text that looks like a spreadsheet formula is stored as text
(the dashboard's CSV export neutralises it). A row is rejected, with its line
number and the reason, when: the file's bytes on that line are not UTF-8; text is
missing, empty, holds a NUL byte, or is longer than ``max_text_length``; a needed
label is empty or NaN; confidence is not a number in [0, 1]; ts is not a date-time.
Good rows are kept; rejected rows change nothing.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd

from engine.context import Context
from engine.dataset import normalize_label
from engine.errors import InputError
from store.events import add_event
from store.log import LABEL_COLUMNS, QUERY_COLUMNS, insert_labels, insert_queries

log = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
COLUMNS = ("text", "label", "predicted_label", "confidence", "ts")
BATCH = 50_000
MAX_REPORTED = 1000
_CONTROL = re.compile(r"[\x01-\x08\x0b-\x1f\x7f-\x9f]")  # C0 and C1 controls but tab and newline


@dataclass
class ImportReport:
    path: str
    rows: int = 0
    queries: int = 0
    labels: int = 0
    rejected: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)  # (where, reason), first MAX_REPORTED
    ignored_columns: list[str] = field(default_factory=list)

    def reject(self, where: str, reason: str) -> None:
        self.rejected += 1
        if len(self.problems) < MAX_REPORTED:
            self.problems.append((where, reason))

    def summary(self) -> str:
        parts = []
        if self.labels:
            parts.append(f"{self.labels} labelled rows")
        if self.queries:
            parts.append(f"{self.queries} logged queries")
        stored = " and ".join(parts) or "nothing"
        return f"{self.path}: {self.rows} rows read, {stored} stored, {self.rejected} rejected"


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path} cannot be read ({exc.strerror or exc}): check that it is a readable file") from None


def _rows_csv(path: Path, report: ImportReport, max_len: int) -> Iterator[tuple[str, dict[str, Any]]]:
    data = _read_bytes(path)
    text = data.decode("utf-8", errors="surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    # The csv module refuses fields over 131,072 characters by default: let every text up to the
    # limit (with room for whitespace that is stripped) reach the length check below.
    field_limit = max(csv.field_size_limit(), 2 * max_len + 1024)
    csv.field_size_limit(field_limit)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    _check_header(reader.fieldnames, path, report)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # DictReader.line_num is only updated after a good row; the inner reader knows the line.
            report.rows += 1
            where = f"line {reader.reader.line_num}"
            if "field larger than field limit" in str(exc):
                report.reject(where, f"a field is too long (over {field_limit:,} characters); the text limit is {max_len:,} (setting max_text_length)")
            else:
                report.reject(where, f"not valid CSV: {exc}")
            continue
        yield f"line {reader.line_num}", row


def _rows_jsonl(path: Path, report: ImportReport, max_len: int) -> Iterator[tuple[str, dict[str, Any]]]:
    for number, raw in enumerate(_read_bytes(path).split(b"\n"), start=1):
        line = raw.decode("utf-8", errors="surrogateescape")
        if number == 1:
            line = line.lstrip("\ufeff")
        if not line.strip():
            continue
        try:
            row = json.loads(line.rstrip("\r"))  # so an error's column is on this line
        except json.JSONDecodeError as exc:
            report.rows += 1
            if _has_surrogates(line):
                report.reject(f"line {number}", "not valid UTF-8: save the file as UTF-8")
            else:
                report.reject(f"line {number}", f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(row, dict):
            report.rows += 1
            report.reject(f"line {number}", "not a JSON object: each line must be like {\"text\": \"...\", \"label\": \"...\"}")
            continue
        yield f"line {number}", row


def _rows_parquet(path: Path, report: ImportReport, max_len: int) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many kinds for a bad file
        raise InputError(f"{path} is not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    _check_header(list(frame.columns), path, report)
    for number, row in enumerate(frame.to_dict("records"), start=1):
        yield f"row {number}", row


def _check_header(names: list[str] | None, path: Path, report: ImportReport) -> None:
    if not names:
        raise InputError(f"{path} is empty: it needs a header with a 'text' column and, as available, {', '.join(COLUMNS[1:])}")
    if "text" not in names:
        raise InputError(f"{path} has no 'text' column (columns found: {', '.join(map(str, names))}); rename the query column to 'text'")
    report.ignored_columns = [str(n) for n in names if n not in COLUMNS]


def _has_surrogates(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


def _clean_row(row: dict[str, Any], *, labeled: bool, max_len: int, now: datetime) -> tuple[dict[str, Any] | None, str | None]:
    """(clean values, None) or (None, the reason the row is rejected)."""
    for key, value in row.items():
        if isinstance(value, str) and _has_surrogates(value):
            return None, "not valid UTF-8 on this line: save the file as UTF-8"
    text = row.get("text")
    if _missing(text):
        return None, "text is empty"
    if not isinstance(text, str):
        return None, f"text must be a string, not {type(text).__name__}"
    if "\x00" in text:
        return None, "text holds a NUL byte"
    text = _CONTROL.sub(" ", text).strip()
    if not text:
        return None, "text is empty"
    if len(text) > max_len:
        return None, f"text is {len(text):,} characters; the limit is {max_len:,} (setting max_text_length)"
    label = None if _missing(row.get("label")) else normalize_label(str(row.get("label")))
    predicted = None if _missing(row.get("predicted_label")) else normalize_label(str(row.get("predicted_label")))
    if labeled and label is None:
        return None, "label is empty: every row of a --labeled import needs a label"
    confidence = None
    if predicted is not None or not labeled:
        if predicted is None:
            return None, "predicted_label is empty: logged queries need the model's label (or import with --labeled)"
        raw = row.get("confidence")
        if _missing(raw):
            return None, "confidence is missing: give the model's probability, a number from 0 to 1"
        try:
            confidence = float(raw) if not isinstance(raw, bool) else math.nan
        except (TypeError, ValueError):
            return None, f"confidence {raw!r} is not a number: use a number from 0 to 1"
        if not (0.0 <= confidence <= 1.0):  # NaN fails too
            return None, f"confidence {raw!r} is outside [0, 1]"
    ts = now
    if not _missing(row.get("ts")):
        try:
            ts = pd.Timestamp(row["ts"])
            if ts.tzinfo is not None:
                ts = ts.tz_convert("UTC").tz_localize(None)
            ts = ts.to_pydatetime()
        except (ValueError, TypeError):
            return None, f"ts {row['ts']!r} is not a date-time: use ISO 8601, e.g. 2026-11-01T12:00:00"
        if pd.isna(ts):
            ts = now
    return {"text": text, "label": label, "predicted_label": predicted, "confidence": confidence, "ts": ts}, None


def import_file(
    ctx: Context,
    path: Path | str,
    *,
    labeled: bool,
    source: str = "import",
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Read, check and store a file's rows in batches; return what happened to each row."""
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"{path.name}: unknown file type {path.suffix!r}: use .csv, .jsonl (or .ndjson) or .parquet")
    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file")
    report = ImportReport(str(path))
    reader = {"csv": _rows_csv, "jsonl": _rows_jsonl, "parquet": _rows_parquet}[kind]
    now = ctx.clock()
    queries: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []
    for where, row in reader(path, report, ctx.settings.max_text_length):
        report.rows += 1
        clean, problem = _clean_row(row, labeled=labeled, max_len=ctx.settings.max_text_length, now=now)
        if problem:
            report.reject(where, problem)
            continue
        query_id = None
        if clean["predicted_label"] is not None:
            query_id = uuid.uuid4().hex
            queries.append({"id": query_id, "ts": clean["ts"], "text": clean["text"], "predicted_label": clean["predicted_label"],
                            "confidence": clean["confidence"], "model_version": None, "source": source})
        if clean["label"] is not None:
            labels.append({"id": uuid.uuid4().hex, "ts": clean["ts"], "query_id": query_id, "text": clean["text"],
                           "label": clean["label"], "source": source})
        if len(queries) + len(labels) >= BATCH:
            _write(ctx, queries, labels, report)
            queries, labels = [], []
            if progress:
                progress(report.rows)
    _write(ctx, queries, labels, report)
    if report.rows == 0:
        if kind == "jsonl":
            raise InputError(f"{path} is empty: it needs one JSON object per line, like {{\"text\": \"...\", \"label\": \"...\"}}")
        raise InputError(f"{path} has a header but no rows")
    with ctx.db.write() as con:
        add_event(con, ts=ctx.clock(), kind="import", severity="warning" if report.rejected else "info",
                  message=f"Imported {path.name}: {report.summary().split(': ', 1)[1]}.",
                  details={"path": str(path), "labeled": labeled, "rows": report.rows, "labels": report.labels,
                           "queries": report.queries, "rejected": report.rejected, "problems": report.problems[:20]})
    if progress:
        progress(report.rows)
    return report


def _write(ctx: Context, queries: list[dict], labels: list[dict], report: ImportReport) -> None:
    if not queries and not labels:
        return
    q = pd.DataFrame(queries, columns=QUERY_COLUMNS)
    l = pd.DataFrame(labels, columns=LABEL_COLUMNS)
    q["confidence"] = q["confidence"].astype(float)
    with ctx.db.write() as con:
        report.queries += insert_queries(con, q)
        report.labels += insert_labels(con, l)
