"""Importing a team's own data: logged queries and labelled examples from files.

Formats, dialects and encodings are read by :mod:`engine.readers`: CSV (``.csv``, ``.tsv``, ``.txt``;
comma, semicolon, tab or pipe; lines ending ``\n``, ``\r\n`` or ``\r`` alone; any encoding, detected or named), JSON Lines (``.jsonl``,
``.ndjson``) and Parquet (``.parquet``). Columns (header names are compared trimmed and
lower-cased): ``text`` (required) and, as available, ``label``, ``predicted_label``,
``confidence``, ``ts``; others are ignored and listed.

- With ``labeled=True`` every row needs a ``label``: rows become human labels (training and
  evaluation data). If a row also has ``predicted_label`` it is stored as a logged query too.
- Without it, rows are logged queries and need ``predicted_label`` and ``confidence``; a
  ``label`` on such a row is stored as its true label.

**Whole files.** Clean rows are staged in Parquet files under ``HOME/imports/`` and moved into
the store in one transaction with the import's event, so a file is stored whole or not at all:
a refused file, a crash or Ctrl-C store nothing (the next import, even one that is refused, first
removes what a dead one staged).
Every import ends with an ``import`` event: info when every row was stored, warning when rows
were rejected, error when the file was refused.

**Once per file.** The event records the SHA-256 of the file's bytes; a file whose bytes were
imported before (and stored rows) is refused unless ``again=True`` (``--again``).

**Rows** (rules in :func:`clean_row`): a row is rejected, with its line number and the reason,
when its bytes are not valid in the file's encoding; its record cannot be read (broken quoting,
a wrong number of fields, invalid JSON, nesting too deep, a number with thousands of digits,
a JSON ``\\ud800`` escape without its other half);
text is missing, not a string, empty, holds a NUL byte, or is longer than ``max_text_length``
characters (setting); a needed label is empty, or a label is not one text or number
(:func:`engine.labels.read_label`); confidence is not a number in [0, 1]; ``ts`` is not a time
in [:data:`TS_MIN`, :data:`TS_MAX`). A naive time is read as UTC, or in the zone given as ``tz``
(``import --tz Asia/Tokyo``); a file with a time more than 5 minutes ahead of this machine's clock
is refused whole, naming ``--tz`` (see :func:`read_ts`). Text is kept as written, except that control characters
other than tab and newline become spaces and surrounding whitespace is stripped. Rejected rows
change nothing; good rows are kept.

**Speed.** Rows are read and checked a batch at a time, as columns: CSV lines that are one
well-formed record each are split in pyarrow (:meth:`engine.readers.CsvReader.batches`), Parquet
columns come as stored, parsed JSON Lines objects become columns when each column holds one kind
of value, and :func:`engine.column_rules.sure_rows` passes the rows that plainly meet every rule
above (pyarrow compute, RE2). Every other row (broken or odd CSV records, odd values, a JSON
column mixing texts and numbers) is read and checked one at a time (the ``csv`` module,
:func:`clean_row`), which gives each rejection its reason. ``benchmarks/import_memory.py`` prints rows/s beside
DuckDB's own ``read_csv``/``read_parquet`` of the same file.

**Labels.** New labels (never seen by the store, as a true or a predicted label) are listed,
and labels that look like another one (Unicode TR39 skeletons, :mod:`engine.labels`) are
named in pairs. A file with more than :data:`MAX_FILE_LABELS` distinct labels is refused.

**Memory** is bounded whatever the file's size: a batch of :data:`BATCH_ROWS` rows (Parquet, JSON
Lines) or :data:`~engine.readers.CHUNK_BYTES` bytes of CSV, the reader's line limit (``8 * max_text_length + 64 KiB``
bytes), at most :data:`MAX_REPORTED` rejected rows kept for the report and the file's distinct
labels. ``benchmarks/import_memory.py`` measures it on a 1 GB CSV.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

from engine.clock import FUTURE_TOLERANCE, describe_ahead, naive_to_utc, zone_named
from engine.context import Context
from engine.errors import InputError
from engine.labels import confusable_pairs, describe_difference, read_label
from engine.dataset import normalize_label
from engine.column_rules import sure_rows
from engine.readers import (ACCEPTED, COLUMNS, FORMATS, PARQUET_BATCH, CsvReader, JsonLinesReader, ParquetReader, RowBatch, Source,
                            check_encoding, cr_line_ends, detect_encoding, has_surrogates, needs_transcoding, swap_cr_lf,
                            transcode_to_utf8)
from store.events import record_event
from store.imports import all_labels, commit_staged, find_import
from store.vocabulary import EventKind, Severity

log = logging.getLogger(__name__)

BATCH_ROWS = PARQUET_BATCH  # rows of a Parquet or JSON Lines batch; a CSV batch is CHUNK_BYTES of the file
MAX_REPORTED = 1000
ROWS_AS_COLUMNS = 64  # a batch of rows read one by one (JSON Lines) is checked as columns from this many
MAX_FILE_LABELS = 100_000
TS_MIN = datetime(2000, 1, 1)
TS_MAX = datetime(2100, 1, 1)
STAGING_DIR = "imports"
_CONTROL = re.compile(r"[\x01-\x08\x0b-\x1f\x7f-\x9f]")  # C0 and C1 controls but tab and newline
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")
_RANGE = f"{TS_MIN:%Y-%m-%d} to {TS_MAX.year - 1}-12-31 (UTC)"

Progress = Callable[[int, int, int], None]
"""progress(rows read, bytes read, file size in bytes), after each batch and at the end."""


@dataclass
class ImportReport:
    """What an import did: counts, rejected rows (where, why), and what it noticed about the file."""

    path: str
    sha256: str = ""
    encoding: str = ""
    encoding_how: str = ""
    dialect: str = ""
    rows: int = 0
    queries: int = 0
    labels: int = 0
    rejected: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)  # (where, reason), first MAX_REPORTED
    ignored_columns: list[str] = field(default_factory=list)
    new_labels: list[str] = field(default_factory=list)
    confusable: list[tuple[str, str, str]] = field(default_factory=list)  # (label, looks like, difference)
    labels_in_store: int = 0
    again: bool = False
    progress_shown: tuple[int, int, int] | None = None  # the last figures given to a progress callback

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

    def new_labels_line(self, *, shown: int = 20) -> str:
        """``3 new labels: a, b, c`` (or ``no new labels``)."""
        if not self.new_labels:
            return "no new labels"
        names = ", ".join(self.new_labels[:shown])
        more = f" and {len(self.new_labels) - shown} more" if len(self.new_labels) > shown else ""
        return f"{len(self.new_labels)} new label{'s' if len(self.new_labels) != 1 else ''}: {names}{more}"


# -- rows ----------------------------------------------------------------------------------------


class _Reject(Exception):
    """A row's reason for rejection."""


class _Future(_Reject):
    """A row's time is more than FUTURE_TOLERANCE past this machine's clock: the whole file is refused."""

    def __init__(self, message: str, *, ahead: timedelta, shown: str):
        super().__init__(message)
        self.ahead = ahead
        self.shown = shown


def clean_row(values: dict[str, Any], *, labeled: bool, max_len: int, now: datetime,
              encoding: str = "utf-8", zone: tzinfo | None = None) -> dict[str, Any]:
    """The stored values of one row (text, label, predicted_label, confidence, ts); raises _Reject."""
    for value in values.values():
        if isinstance(value, str) and has_surrogates(value):
            name = "UTF-8" if encoding.replace("_", "-").lower().startswith("utf-8") else encoding
            raise _Reject(f"not valid {name} on this line: save the file as UTF-8 (or name its encoding with --encoding)")
    text = _text(values.get("text"), max_len=max_len)
    label = _label(values, "label")
    predicted = _label(values, "predicted_label")
    if labeled and label is None:
        raise _Reject("label is empty: every row of a --labeled import needs a label")
    confidence = None
    if predicted is not None or not labeled:
        if predicted is None:
            raise _Reject("predicted_label is empty: logged queries need the model's label (or import with --labeled)")
        confidence = _confidence(values.get("confidence"))
    ts = read_ts(values.get("ts"), now=now, zone=zone)
    return {"text": text, "label": label, "predicted_label": predicted, "confidence": confidence, "ts": ts}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


def _shown(value: Any, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else f"{text[:width]}... ({len(text):,} characters)"


def _text(value: Any, *, max_len: int) -> str:
    if _missing(value):
        raise _Reject("text is empty")
    if not isinstance(value, str):
        raise _Reject(f"text must be a string, not {type(value).__name__}")
    if "\x00" in value:
        raise _Reject("text holds a NUL byte")
    text = _CONTROL.sub(" ", value).strip()
    if not text:
        raise _Reject("text is empty")
    if len(text) > max_len:
        raise _Reject(f"text is {len(text):,} characters; the limit is {max_len:,} (setting max_text_length)")
    return text


def _label(values: dict[str, Any], column: str) -> str | None:
    label, problem = read_label(values.get(column), column=column)
    if problem:
        raise _Reject(problem)
    return label


def _confidence(raw: Any) -> float:
    if _missing(raw):
        raise _Reject("confidence is missing: give the model's probability, a number from 0 to 1")
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float, Decimal)):
        raise _Reject(f"confidence {_shown(raw)} is not a number: use a number from 0 to 1")
    try:
        confidence = float(raw)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _Reject(f"confidence {_shown(raw)} is not a number: use a number from 0 to 1") from exc
    if not (0.0 <= confidence <= 1.0):  # NaN and infinities fail too
        raise _Reject(f"confidence {_shown(raw)} is outside [0, 1]")
    return confidence


def read_ts(raw: Any, *, now: datetime, zone: tzinfo | None = None) -> datetime:
    """A row's time as naive UTC: ISO 8601 text, a date-time value, or seconds since 1970-01-01 UTC
    (a number, or digits in a text cell); a missing time is ``now``. Raises _Reject outside
    [TS_MIN, TS_MAX), for a time more than :data:`engine.clock.FUTURE_TOLERANCE` (5 minutes) past
    ``now``, or for anything else.

    Naive times (no offset) are read in ``zone`` (``import --tz ZONE``), or as UTC when it is None;
    :func:`engine.clock.naive_to_utc` says how the hours around a daylight-saving change are read.
    A time in the future raises _Future, and the import refuses the whole file (nothing stored) naming
    the fix: it is almost always a naive local time east of UTC, and a file refused whole can be
    imported again with ``--tz`` without storing its other rows twice. Logged queries from a client
    whose clock is ahead are kept instead (engine.ingest stores them at their arrival time).
    """
    if _missing(raw):
        return now
    if isinstance(raw, bool):
        raise _Reject(f"ts {raw!r} is not a date-time: use ISO 8601, e.g. 2026-11-01T12:00:00")
    number = float(raw) if isinstance(raw, str) and _NUMBER.match(raw.strip()) else raw
    if isinstance(number, (int, float, Decimal)):
        seconds = float(number) if math.isfinite(float(number)) else math.inf
        low, high = (_epoch(TS_MIN), _epoch(TS_MAX))
        if not (low <= seconds < high):
            raise _Reject(f"ts {_shown(raw)} (read as seconds since 1970-01-01 UTC) is outside the accepted range: {_RANGE}")
        return _not_future(datetime.fromtimestamp(seconds, tz=timezone.utc).replace(tzinfo=None), raw, now=now)
    if isinstance(raw, datetime):
        ts = raw
    elif isinstance(raw, date):
        ts = datetime(raw.year, raw.month, raw.day)
    elif isinstance(raw, str):
        try:
            ts = datetime.fromisoformat(raw.strip())
        except ValueError as exc:
            raise _Reject(f"ts {_shown(raw)} is not a date-time: use ISO 8601, e.g. 2026-11-01T12:00:00") from exc
    else:
        raise _Reject(f"ts {_shown(raw)} is not a date-time: use ISO 8601, e.g. 2026-11-01T12:00:00")
    if ts.tzinfo is not None:
        try:
            ts = ts.astimezone(timezone.utc).replace(tzinfo=None)
        except OverflowError as exc:
            raise _Reject(f"ts {_shown(raw)} is outside the accepted range: {_RANGE}") from exc
    elif zone is not None:
        try:
            ts = naive_to_utc(ts, zone)
        except OverflowError as exc:
            raise _Reject(f"ts {_shown(raw)} is outside the accepted range: {_RANGE}") from exc
    if not (TS_MIN <= ts < TS_MAX):
        raise _Reject(f"ts {_shown(raw)} is outside the accepted range: {_RANGE}")
    return _not_future(ts, raw, now=now)


def _not_future(ts: datetime, raw: Any, *, now: datetime) -> datetime:
    if ts > now + FUTURE_TOLERANCE:
        raise _Future(f"ts {_shown(raw)} is {describe_ahead(ts - now)} ahead of this machine's clock (at most "
                      f"{FUTURE_TOLERANCE.total_seconds() / 60:.0f} minutes are allowed)", ahead=ts - now, shown=_shown(raw))
    return ts


def _epoch(ts: datetime) -> float:
    return ts.replace(tzinfo=timezone.utc).timestamp()


# -- staging -------------------------------------------------------------------------------------


class _Stage:
    """Clean rows written to Parquet files in a private folder, a batch at a time."""

    def __init__(self, folder: Path, *, source: str):
        import pyarrow as pa

        self.folder = folder
        self.source = source
        self.pa = pa
        self.schemas = {
            "queries": pa.schema([("id", pa.string()), ("ts", pa.timestamp("us")), ("text", pa.string()),
                                  ("predicted_label", pa.string()), ("confidence", pa.float64()),
                                  ("model_version", pa.string()), ("source", pa.string())]),
            "labels": pa.schema([("id", pa.string()), ("ts", pa.timestamp("us")), ("query_id", pa.string()),
                                 ("text", pa.string()), ("label", pa.string()), ("source", pa.string())]),
        }
        self.writers: dict[str, Any] = {}
        # Row ids: 16 random hex digits for this import, then a 16-hex-digit counter (unique, and cheaper than uuid4).
        self.prefix = uuid.uuid4().hex[:16]
        self.count = 0

    def add(self, clean: Any) -> None:
        """Stage a batch of clean rows: a pyarrow table with the columns :func:`clean_row` returns.

        A row with a predicted label is a logged query; a row with a label is a human label (of
        that query, if both). Ids count up in row order, a row's query before its label.
        """
        import numpy as np
        import pyarrow.compute as pc

        pa = self.pa
        n = clean.num_rows
        if not n:
            return
        has_query = clean["predicted_label"].is_valid().to_numpy(zero_copy_only=False)
        has_label = clean["label"].is_valid().to_numpy(zero_copy_only=False)
        first = self.count + np.cumsum(has_query.astype(np.int64) + has_label) - has_query - has_label + 1
        self.count += int(has_query.sum() + has_label.sum())
        query_ids = self._ids(first)
        label_ids = self._ids(first + has_query)
        source = pa.array([self.source] * n, pa.string())
        if has_query.any():
            keep = pa.array(np.flatnonzero(has_query))
            table = pa.table({"id": query_ids, "ts": clean["ts"], "text": clean["text"],
                              "predicted_label": clean["predicted_label"], "confidence": clean["confidence"],
                              "model_version": pa.nulls(n, pa.string()), "source": source},
                             schema=self.schemas["queries"]).take(keep)
            self._write("queries", table)
        if has_label.any():
            keep = pa.array(np.flatnonzero(has_label))
            query_id = pc.if_else(pa.array(has_query), query_ids, pa.scalar(None, pa.string()))
            table = pa.table({"id": label_ids, "ts": clean["ts"], "query_id": query_id, "text": clean["text"],
                              "label": clean["label"], "source": source}, schema=self.schemas["labels"]).take(keep)
            self._write("labels", table)

    def _ids(self, counters: Any) -> Any:
        """``prefix`` + each counter as 16 hex digits, as a pyarrow string array."""
        import numpy as np
        import pyarrow.compute as pc

        pa = self.pa
        digits = counters.astype(">u8").tobytes().hex().encode()
        offsets = np.arange(0, 16 * (len(counters) + 1), 16, dtype=np.int32)
        hexes = pa.StringArray.from_buffers(len(counters), pa.py_buffer(offsets), pa.py_buffer(digits))
        return pc.binary_join_element_wise(self.prefix, hexes, "")

    def _write(self, name: str, table: Any) -> None:
        import pyarrow.parquet as pq

        if name not in self.writers:
            # Dictionary pages only where values repeat (about 2x faster to write than trying every column).
            repeated = [c for c in ("predicted_label", "label", "model_version", "source") if c in self.schemas[name].names]
            self.writers[name] = pq.ParquetWriter(self.folder / f"{name}.parquet", self.schemas[name], use_dictionary=repeated)
        self.writers[name].write_table(table)

    def close(self) -> dict[str, Path | None]:
        for writer in self.writers.values():
            writer.close()
        return {name: (self.folder / f"{name}.parquet" if name in self.writers else None) for name in self.schemas}


def _remove_dead_staging(home: Path) -> None:
    """Remove the folders under HOME/imports staged by processes that are no longer running
    (an import killed before it cleaned up); its own folder is named ``<pid>-<random>``."""
    root = home / STAGING_DIR
    if not root.is_dir():
        return
    for old in root.iterdir():
        pid = old.name.split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)


def _staging_folder(home: Path) -> Path:
    """A new private folder under HOME/imports (:func:`_remove_dead_staging` has run)."""
    root = home / STAGING_DIR
    root.mkdir(parents=True, exist_ok=True)
    folder = root / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    folder.mkdir()
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def file_sha256(path: Path) -> str:
    """SHA-256 hex of a file's bytes, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


# -- the import ------------------------------------------------------------------------------------


def import_file(
    ctx: Context,
    path: Path | str,
    *,
    labeled: bool,
    source: str = "import",
    again: bool = False,
    encoding: str | None = None,
    tz: str | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Read, check and store a file's rows (all of its good rows, or none); return what happened.

    ``tz``: the IANA zone that naive ``ts`` values are in (None: UTC; see :func:`read_ts`).
    Raises :class:`~engine.errors.InputError` when the file is refused (nothing stored; an
    ``import`` error event says why) or ``tz`` is not a zone. Rules in the module docstring.
    """
    path = Path(path)
    zone = zone_named(tz) if tz is not None else None
    report = ImportReport(str(path), again=again)
    try:
        return _import(ctx, path, report, labeled=labeled, source=source, again=again, encoding=encoding,
                       zone=zone, progress=progress)
    except InputError as exc:
        _record_failure(ctx, path, report, severity=Severity.ERROR, message=f"Import of {path.name} refused: {exc} Nothing was stored.")
        raise
    except KeyboardInterrupt:
        _record_failure(ctx, path, report, severity=Severity.ERROR, message=f"Import of {path.name} interrupted. Nothing was stored.")
        raise
    except Exception as exc:
        _record_failure(ctx, path, report, severity=Severity.ERROR,
                        message=f"Import of {path.name} failed ({type(exc).__name__}: {exc}). Nothing was stored.")
        raise


def _record_failure(ctx: Context, path: Path, report: ImportReport, *, severity: str, message: str) -> None:
    try:
        with ctx.db.write() as con:
            record_event(con, ts=ctx.clock(), kind=EventKind.IMPORT, severity=severity, message=message,
                         details={"path": str(path), "sha256": report.sha256 or None, "rows": report.rows,
                                  "labels": 0, "queries": 0, "rejected": report.rejected, "refused": True})
    except Exception:  # the store itself is the problem: the caller's error says enough
        log.exception("could not record the failed import of %s", path)


def _import(ctx: Context, path: Path, report: ImportReport, *, labeled: bool, source: str, again: bool,
            encoding: str | None, zone: tzinfo | None, progress: Progress | None) -> ImportReport:
    _remove_dead_staging(ctx.settings.home)  # before any refusal: a refused import must not leave them behind
    if path.is_dir():
        raise InputError(f"{path.name} is a folder: import its files one by one, each {ACCEPTED}")
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"{path.name}: unknown file type {path.suffix!r}: use {ACCEPTED}")
    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file")
    try:
        size = path.stat().st_size
        report.sha256 = file_sha256(path)
    except OSError as exc:
        raise InputError(f"{path} cannot be read ({exc.strerror or exc}): check that it is a readable file") from exc
    if not again:
        with ctx.db.read() as con:
            _refuse_if_imported(path, con, report.sha256)
    with ctx.db.read() as con:
        known = {label for label in (normalize_label(x) for x in all_labels(con)) if label is not None}
    folder = _staging_folder(ctx.settings.home)
    try:
        staged = _stage(ctx, path, report, folder, kind=kind, size=size, labeled=labeled, source=source,
                        encoding=encoding, zone=zone, known=known, progress=progress)
        with ctx.db.write() as con:
            if not again:
                _refuse_if_imported(path, con, report.sha256)
            report.queries, report.labels = commit_staged(con, queries=staged["queries"], labels=staged["labels"],
                                                          arrived_at=ctx.clock())
            record_event(con, ts=ctx.clock(), kind=EventKind.IMPORT,
                         severity=Severity.WARNING if report.rejected else Severity.INFO,
                         message=f"Imported {path.name}: {report.summary().split(': ', 1)[1]}; {report.new_labels_line()}.",
                         details=_details(report, labeled=labeled))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if progress and report.progress_shown != (report.rows, size, size):
        progress(report.rows, size, size)
    return report


def _refuse_if_imported(path: Path, con, sha256: str) -> None:
    earlier = find_import(con, sha256)
    if earlier is None:
        return
    stored = (earlier["details"].get("labels") or 0) + (earlier["details"].get("queries") or 0)
    raise InputError(
        f"{path.name} has the same bytes as a file imported on {earlier['ts']:%Y-%m-%d %H:%M} UTC (event #{earlier['id']}, "
        f"{stored} rows stored): importing it again would store every row twice. "
        "Pass --again to import it anyway.")


def _stage(ctx: Context, path: Path, report: ImportReport, folder: Path, *, kind: str, size: int, labeled: bool,
           source: str, encoding: str | None, zone: tzinfo | None, known: set[str],
           progress: Progress | None) -> dict[str, Path | None]:
    max_len = ctx.settings.max_text_length
    limit = 8 * max_len + (64 << 10)
    info = Source(kind)
    now = ctx.clock()
    stage = _Stage(folder, source=source)
    future: list[tuple[int, str, _Future]] = []  # (number, where, why) of rows claiming a time in the future
    file_labels: set[str] = set()
    handle = None
    try:
        if kind == "parquet":
            reader = ParquetReader(path, source=info)
            report.encoding, report.encoding_how = "", ""
        else:
            if encoding:
                chosen, how = check_encoding(encoding), "named with --encoding"
            else:
                chosen, how = detect_encoding(path, size=size)
            report.encoding, report.encoding_how = chosen, how
            read_path, read_encoding = path, chosen
            if needs_transcoding(chosen):
                read_path = transcode_to_utf8(path, chosen, folder / "utf8-copy")
                read_encoding = "utf-8"
            mac = kind == "csv" and "\r\n".encode(read_encoding) == b"\r\n" and cr_line_ends(read_path)
            if mac:  # classic Mac OS line ends: read a copy whose lines end with \n (line numbers unchanged)
                swapped = swap_cr_lf(read_path, folder / "lf-copy")
                if read_path != path:  # the UTF-8 copy of a UTF-16/32 file: one copy on disk at a time
                    read_path.unlink()
                read_path = swapped
            handle = open(read_path, "rb")
            make = CsvReader if kind == "csv" else JsonLinesReader
            reader = make(handle, path=path, encoding=read_encoding, limit=limit, source=info, max_text_length=max_len)
            if mac:
                info.dialect += ", lines end with \\r (classic Mac OS)"
        report.dialect = info.dialect
        report.ignored_columns = info.ignored_columns
        for batch in reader.batches():
            report.rows += len(batch)
            clean = _clean_batch(batch, report, path=path, labeled=labeled, max_len=max_len, now=now,
                                 encoding=report.encoding, zone=zone, future=future)
            _count_labels(clean, file_labels, path=path, kind=batch.kind)
            stage.add(clean)
            if progress:
                report.progress_shown = (report.rows, info.bytes_read, size)
                progress(*report.progress_shown)
    finally:
        if handle is not None:
            handle.close()
    if report.rows == 0:
        if kind == "jsonl":
            raise InputError(f"{path} is empty: it needs one JSON object per line, like "
                             "{\"text\": \"...\", \"label\": \"...\"}")
        raise InputError(f"{path} has a header but no rows")
    if future:
        _, where, first = min(future, key=lambda entry: entry[0])
        most = max(exc.ahead for _, _, exc in future)
        raise InputError(
            f"{path.name}: {len(future):,} rows claim a time more than {FUTURE_TOLERANCE.total_seconds() / 60:.0f} "
            f"minutes ahead of this machine's clock (up to {describe_ahead(most)}; the first at {where}: ts {first.shown}). "
            "A time without an offset is read as UTC: if the file was written in another zone, name it with --tz ZONE "
            "(e.g. --tz Asia/Tokyo); otherwise correct those times.")
    report.new_labels = sorted(file_labels - known)
    report.labels_in_store = len(known | file_labels)
    report.confusable = [(a, b, describe_difference(a, b)) for a, b in confusable_pairs(report.new_labels, known | file_labels)]
    return stage.close()


CLEAN_SCHEMA_FIELDS = (("text", "string"), ("label", "string"), ("predicted_label", "string"),
                       ("confidence", "float64"), ("ts", "timestamp[us]"))


def _clean_batch(batch: RowBatch, report: ImportReport, *, path: Path, labeled: bool, max_len: int, now: datetime,
                 encoding: str, zone: tzinfo | None = None, future: list | None = None) -> Any:
    """The batch's clean rows as a pyarrow table (columns of :func:`clean_row` and ``number``, in
    file order); each rejected row is reported, in file order, with its place and reason. Rows whose
    time is in the future are also added to ``future`` as (number, where, :class:`_Future`): they refuse the file.

    Rows that :func:`engine.column_rules.sure_rows` passes are cleaned as columns; every other row
    by :func:`clean_row`.
    """
    import numpy as np
    import pyarrow as pa

    schema = pa.schema([(name, pa.type_for_alias(kind)) for name, kind in CLEAN_SCHEMA_FIELDS] + [("number", pa.int64())])
    rejected: list[tuple[int, str]] = []
    one_by_one: list[tuple[int, dict[str, Any]]] = []
    for row in batch.rows:
        number = int(row.where.split()[1])
        if row.problem is not None:
            rejected.append((number, row.problem))
        else:
            one_by_one.append((number, row.values))
    tables = []
    numbers, columns = batch.numbers, batch.columns
    if numbers is None and len(one_by_one) >= ROWS_AS_COLUMNS:  # JSON Lines: the parsed objects as columns
        as_columns = _columns_of([values for _, values in one_by_one])
        if as_columns is not None:
            numbers, columns = np.array([number for number, _ in one_by_one], dtype=np.int64), as_columns
            one_by_one = []
    if numbers is not None and len(numbers):
        sure, values = sure_rows(columns, count=len(numbers), labeled=labeled, max_len=max_len, now=now,
                                 ts_min=TS_MIN, ts_max=TS_MAX, latest=now + FUTURE_TOLERANCE,
                                 naive_is_utc=zone is None)
        if sure.any():
            tables.append(pa.table({**values, "number": pa.array(numbers[sure])}, schema=schema))
        unsure = np.flatnonzero(~sure)
        if len(unsure):
            one_by_one += zip(numbers[unsure].tolist(), _python_rows(columns, unsure, path=path, kind=batch.kind,
                                                                     numbers=numbers))
    cleaned: dict[str, list] = {name: [] for name in schema.names}
    for number, values in one_by_one:
        try:
            clean = clean_row(values, labeled=labeled, max_len=max_len, now=now, encoding=encoding, zone=zone)
        except _Reject as exc:
            rejected.append((number, str(exc)))
            if isinstance(exc, _Future) and future is not None:
                future.append((number, f"{batch.kind} {number}", exc))
            continue
        for name, value in clean.items():
            cleaned[name].append(value)
        cleaned["number"].append(number)
    if cleaned["number"]:
        tables.append(pa.table(cleaned, schema=schema))
    for number, reason in sorted(rejected):
        report.reject(f"{batch.kind} {number}", reason)
    if not tables:
        return schema.empty_table()
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    if len(tables) > 1:
        table = table.sort_by("number")
    return table


def _python_rows(columns: dict[str, Any], indices: Any, *, path: Path, kind: str, numbers: Any) -> list[dict[str, Any]]:
    """The values of some columnar records as Python objects, for :func:`clean_row`."""
    import pyarrow as pa

    if not columns:
        return [{} for _ in indices]
    try:
        return pa.table(columns).take(pa.array(indices)).to_pylist()
    except (ValueError, ArithmeticError, OverflowError) as exc:  # a value Python cannot hold (a date past 9999)
        raise InputError(f"{path.name}: {kind} {int(numbers[indices[0]])} onwards cannot be read "
                         f"({type(exc).__name__}: {exc}); nothing was stored") from exc


def _columns_of(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Parsed JSON objects as pyarrow columns (the importer's columns only), or None when a column
    mixes kinds of value (text and numbers, say): then each row is checked by :func:`clean_row`."""
    import pyarrow as pa

    columns = {}
    for name in COLUMNS:
        try:
            columns[name] = pa.array([record.get(name) for record in records])
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeEncodeError):
            return None
    return columns


def _count_labels(clean: Any, file_labels: set[str], *, path: Path, kind: str) -> None:
    """Add the batch's labels (true and predicted) to ``file_labels``; refuse the file past
    :data:`MAX_FILE_LABELS`, naming the row where the count went over."""
    import pyarrow.compute as pc

    seen = set()
    for column in ("label", "predicted_label"):
        seen.update(pc.unique(clean[column]).drop_null().to_pylist())
    if len(file_labels) + len(seen - file_labels) <= MAX_FILE_LABELS:
        file_labels |= seen
        return
    for row in clean.select(["label", "predicted_label", "number"]).to_pylist():
        for label in (row["label"], row["predicted_label"]):
            if label is not None and label not in file_labels:
                file_labels.add(label)
                if len(file_labels) > MAX_FILE_LABELS:
                    raise InputError(
                        f"{path.name} has more than {MAX_FILE_LABELS:,} distinct labels (at {kind} {row['number']}): "
                        "a label names a class, so check that the label column does not hold ids or free text")


def _details(report: ImportReport, *, labeled: bool) -> dict[str, Any]:
    return {
        "path": report.path, "sha256": report.sha256, "labeled": labeled, "again": report.again,
        "encoding": report.encoding or None, "encoding_how": report.encoding_how or None, "dialect": report.dialect or None,
        "rows": report.rows, "labels": report.labels, "queries": report.queries, "rejected": report.rejected,
        "problems": report.problems[:20], "ignored_columns": report.ignored_columns,
        "new_labels": report.new_labels[:50], "new_label_count": len(report.new_labels),
        "confusable": [list(pair) for pair in report.confusable[:20]], "labels_in_store": report.labels_in_store,
    }
