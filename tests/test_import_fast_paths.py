"""The importer's column-at-a-time paths read and check exactly as its one-row-at-a-time path.

- ``CsvReader.batches()`` gives the same records, places and problems as iterating the reader
  (the ``csv`` module, a line at a time), for generated files full of quotes, delimiters, carriage
  returns, blank lines, NUL and bytes that are not valid in the encoding, with chunks small enough
  that records cross chunk ends and lines over the line limit;
- :func:`engine.column_rules.sure_rows` passes only rows that :func:`engine.importer.clean_row`
  stores, with the values ``clean_row`` returns, on generated string columns (CSV) and typed
  columns (Parquet);
- parsed JSON Lines rows checked as columns give the rows and rejections that checking each one
  gives.
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

import engine.importer as importer
import engine.readers as readers
from engine.column_rules import sure_rows
from engine.clock import FUTURE_TOLERANCE
from engine.importer import TS_MAX, TS_MIN, ImportReport, _Reject, clean_row
from engine.readers import CsvReader, Row, RowBatch, Source

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = datetime(2026, 3, 4, 12, 0, 0)

# -- CsvReader.batches ---------------------------------------------------------------------------------

PIECES = st.sampled_from([b"a", b"b c", b",", b";", b"\t", b"|", b'"', b'""', b"\r", b"\n", b"\r\n", b" ",
                          "é".encode(), b"\x00", b"\xff", b"\xef\xbb\xbf", b'x"y', b"7"])


def read_rows(path: Path, *, encoding: str, limit: int, batches: bool) -> list[tuple]:
    """(where, values, problem) of every record, by iterating the reader or by its batches."""
    with open(path, "rb") as f:
        reader = CsvReader(f, path=path, encoding=encoding, limit=limit, source=Source("csv"), max_text_length=limit)
        if not batches:
            return [(row.where, row.values, row.problem) for row in reader]
        out = []
        for batch in reader.batches():
            assert batch.kind == "line"
            names = sorted(batch.columns)
            values = {name: batch.columns[name].to_pylist() for name in names}
            out += [(int(n), (f"line {n}", {name: values[name][i] for name in names}, None))
                    for i, n in enumerate([] if batch.numbers is None else batch.numbers.tolist())]
            out += [(int(row.where.split()[1]), (row.where, row.values, row.problem)) for row in batch.rows]
        assert len({n for n, _ in out}) == len(out), "a line was read twice"
        return [record for _, record in sorted(out, key=lambda pair: pair[0])]


@PROPERTY
@example(body=[b'"a', b"\n", b"b", b",", b"c", b"\n", b'd"', b",", b"e", b"\n"], header="text,label", crlf=False,
         encoding="utf-8", chunk=8, limit=30)  # a quoted field over two chunks
@example(body=[b"0\r", b",", b"a", b"\n", b"b", b",", b"c"], header="text,label", crlf=False, encoding="utf-8",
         chunk=4096, limit=30)  # a \r inside an unquoted field, a last line with no line break
@given(body=st.lists(PIECES, max_size=80), header=st.sampled_from(["text,label", "text,label,ts", "text", "label;text"]),
       crlf=st.booleans(), encoding=st.sampled_from(["utf-8", "cp1252", "utf-8-sig"]),
       chunk=st.sampled_from([8, 64, 4096]), limit=st.sampled_from([30, 100_000]))
def test_csv_batches_read_what_the_csv_module_reads(body, header, crlf, encoding, chunk, limit):
    saved = readers.CHUNK_BYTES
    readers.CHUNK_BYTES = chunk
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "rows.csv"
            path.write_bytes(header.encode() + (b"\r\n" if crlf else b"\n") + b"".join(body))

            one_by_one = read_rows(path, encoding=encoding, limit=limit, batches=False)
            in_batches = read_rows(path, encoding=encoding, limit=limit, batches=True)

            assert in_batches == one_by_one
    finally:
        readers.CHUNK_BYTES = saved


def test_plain_and_quoted_lines_are_read_as_columns(tmp_path):
    """The fast path is taken: well-formed lines come back as columns, only the broken one row by row."""
    path = tmp_path / "rows.csv"
    path.write_text('text,label\nwhere is my order,track_order\n"yes, ""please""",confirm\n"never closed,a\nfine,b\n')
    with open(path, "rb") as f:
        reader = CsvReader(f, path=path, encoding="utf-8", limit=1000, source=Source("csv"), max_text_length=100)
        [batch] = list(reader.batches())

    assert batch.numbers.tolist() == [2, 3, 5]
    assert batch.columns["text"].to_pylist() == ["where is my order", 'yes, "please"', "fine"]
    assert batch.columns["label"].to_pylist() == ["track_order", "confirm", "b"]
    assert [(row.where, row.problem) for row in batch.rows] == [
        ("line 4", 'a quote opened on line 4 is not closed where the field ends (read up to line 5): close it, '
                   'or double a quote inside a quoted text ("")')]


# -- sure_rows -------------------------------------------------------------------------------------------

TEXTS = st.text(max_size=12) | st.sampled_from(["plain text", " padded ", "tab\tinside", "line\nbreak", "\x00", "x" * 41,
                                                "é", "\u3000wide space", "end\u2028", "\x85next", "\u200b"])
LABELS = st.none() | st.sampled_from(["track_order", " Track_Order ", "ｒｅｆｕｎｄ", "", "  ", "a\nb", "7", "x" * 300]) | \
    st.text(max_size=6)
CONFIDENCES = st.none() | st.sampled_from(["0.5", ".5", "1", "1.0", "1.", "1.0000001", "0", "-0", "1e-3", "1E0", "5e-1",
                                           " 0.5", "0.5 ", "nan", "inf", "0x1", "1_0", "٠.٥", "", "1e999",
                                           "0." + "0" * 400 + "1", "+0.5"]) | \
    st.text(alphabet="0123456789.eE+-", max_size=8)
TIMES = st.none() | st.sampled_from([
    "2026-11-01T12:00:00", "2026-11-01 12:00:00.5", "2026-02-30T00:00:00", "2026-11-01T24:00:00", "1999-12-31T23:59:59",
    "2100-01-01T00:00:00", "2099-12-31T23:59:59.999999", "1700000000", "946684800", "946684799", "4102444800",
    "4102444799", "", " ", "+1700000000", "1700000000.5", "2026-11-01T12:00:00Z", "2026-11-01T12:00:00+02:00",
    "2026-11-01", "2026-11-01T12:00:00.1234567", "0001700000000", "99999999999999999"]) | \
    st.integers(0, 5 * 10**9).map(str) | \
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2110, 1, 1)).map(lambda t: t.isoformat(sep=" "))
ROWS = st.fixed_dictionaries({"text": TEXTS, "label": LABELS, "predicted_label": LABELS, "confidence": CONFIDENCES,
                              "ts": TIMES})


def check_agreement(columns: dict, rows: list[dict], *, labeled: bool, zone=None) -> np.ndarray:
    """Every row sure_rows passes is one clean_row stores, with the same values; returns the mask.
    As the importer calls it: times past NOW + FUTURE_TOLERANCE are never sure (they refuse the file), and
    with a zone (import --tz) naive times are not either."""
    sure, values = sure_rows(columns, count=len(rows), labeled=labeled, max_len=40, now=NOW, ts_min=TS_MIN, ts_max=TS_MAX,
                             latest=NOW + FUTURE_TOLERANCE, naive_is_utc=zone is None)
    for i, index in enumerate(np.flatnonzero(sure)):
        try:
            expected = clean_row(rows[index], labeled=labeled, max_len=40, now=NOW, zone=zone)
        except _Reject as exc:
            pytest.fail(f"row {rows[index]!r} passed the column rules but clean_row rejects it: {exc}")
        assert {name: values[name][i].as_py() for name in expected} == expected, rows[index]
    return sure


@PROPERTY
@given(rows=st.lists(ROWS, min_size=1, max_size=20), labeled=st.booleans())
def test_sure_rows_of_string_columns_are_what_clean_row_stores(rows, labeled):
    columns = {name: pa.array([row[name] for row in rows], pa.string()) for name in rows[0]}

    check_agreement(columns, rows, labeled=labeled)


@PROPERTY
@given(rows=st.lists(ROWS, min_size=1, max_size=20), labeled=st.booleans())
def test_with_a_zone_only_times_that_carry_their_zone_are_sure(rows, labeled):
    columns = {name: pa.array([row[name] for row in rows], pa.string()) for name in rows[0]}

    sure = check_agreement(columns, rows, labeled=labeled, zone=ZoneInfo("Asia/Tokyo"))

    naive = [isinstance(row["ts"], str) and "-" in row["ts"] for row in rows]  # ISO text without an offset
    assert not any(s and n for s, n in zip(sure, naive))


TYPED_TIMES = st.sampled_from(["s", "ms", "us", "ns"]).flatmap(lambda unit: st.tuples(
    st.just(unit), st.sampled_from([None, "UTC", "Europe/Paris"]),
    st.lists(st.none() | st.tuples(st.integers(946_684_790, 4_102_444_810) | st.integers(-2**33, 2**33),
                                   st.integers(0, 10**9 - 1)), min_size=1, max_size=20)))


@PROPERTY
@given(texts=st.lists(TEXTS, min_size=20, max_size=20), confidences=st.lists(st.none() | st.floats(), min_size=20, max_size=20),
       times=TYPED_TIMES, labeled=st.booleans())
def test_sure_rows_of_typed_columns_are_what_clean_row_stores(texts, confidences, times, labeled):
    unit, zone, raw_times = times
    n = len(raw_times)
    scale = {"s": 1, "ms": 1000, "us": 10**6, "ns": 10**9}[unit]
    stamps = [None if t is None else t[0] * scale + t[1] % scale for t in raw_times]
    columns = {"text": pa.array(texts[:n], pa.string()), "predicted_label": pa.array(["a", "b"] * (n // 2) + ["a"] * (n % 2)),
               "confidence": pa.array(confidences[:n], pa.float64()), "ts": pa.array(stamps, pa.timestamp(unit, tz=zone)),
               "label": pa.array([None] * n, pa.string())}
    try:
        rows = pa.table(columns).to_pylist()
    except (ValueError, OverflowError):  # a time Python cannot hold: the importer refuses the file
        return
    check_agreement(columns, rows, labeled=labeled)


def test_plain_rows_take_the_column_path():
    """Rows as logs and spreadsheets write them are all decided as columns; odd ones go to clean_row."""
    rows = [{"text": "where is my order", "label": "Track_Order", "predicted_label": "track_order", "confidence": "0.93",
             "ts": "2026-01-01 12:00:00"},  # before NOW: a time in the future refuses the file
            {"text": "cancel it", "label": None, "predicted_label": "cancel", "confidence": ".5", "ts": "1761998400"},
            {"text": " padded ", "label": "a", "predicted_label": "a", "confidence": "1", "ts": ""},
            {"text": "fine", "label": "a", "predicted_label": "a", "confidence": "1.5", "ts": None}]
    columns = {name: pa.array([row[name] for row in rows], pa.string()) for name in rows[0]}

    sure = check_agreement(columns, rows, labeled=False)

    assert sure.tolist() == [True, True, False, False]


def test_parquet_timestamps_with_a_zone_are_read_in_utc():
    paris = timezone(timedelta(hours=1))
    columns = {"text": pa.array(["a"]), "label": pa.array(["x"]),
               "ts": pa.array([datetime(2026, 1, 5, 10, 0, tzinfo=paris)], pa.timestamp("ms", tz="+01:00"))}

    sure, values = sure_rows(columns, count=1, labeled=True, max_len=40, now=NOW, ts_min=TS_MIN, ts_max=TS_MAX)

    assert sure.tolist() == [True]
    assert values["ts"].to_pylist() == [datetime(2026, 1, 5, 9, 0)]


# -- JSON Lines rows checked as columns ------------------------------------------------------------------

JSON_VALUES = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=True) | st.sampled_from([[1, 2], {"a": 1}])
JSON_ROWS = st.fixed_dictionaries({"text": TEXTS | st.integers(0, 9)}, optional={
    "label": LABELS | JSON_VALUES, "predicted_label": LABELS | JSON_VALUES, "confidence": CONFIDENCES | JSON_VALUES,
    "ts": TIMES | st.integers(0, 5 * 10**9) | JSON_VALUES, "note": st.text(max_size=3)})


PLAIN_JSON_ROWS = st.fixed_dictionaries({  # one kind of value a column, as most files have: read as columns
    "text": st.sampled_from(["where is my order", "cancel it", " padded ", "", "x" * 41]),
    "label": st.sampled_from(["Track_Order", "cancel", None, ""]),
    "predicted_label": st.sampled_from(["track_order", None]),
    "confidence": st.sampled_from([0.93, 0.5, 1.0, 1.5, -0.0]),
    "ts": st.sampled_from([1761998400, 946684799, 4102444800, 1700000000])})


@PROPERTY
@given(records=st.lists(JSON_ROWS, min_size=1, max_size=30) | st.lists(PLAIN_JSON_ROWS, min_size=1, max_size=30),
       labeled=st.booleans())
def test_json_rows_checked_as_columns_are_checked_as_clean_row_checks_them(records, labeled):
    batch = RowBatch(rows=[Row(f"line {i + 2}", record) for i, record in enumerate(records)])
    outcomes = []
    saved = importer.ROWS_AS_COLUMNS
    try:
        for threshold in (1, 10**9):
            importer.ROWS_AS_COLUMNS = threshold
            report = ImportReport("rows.jsonl")
            table = importer._clean_batch(batch, report, path=Path("rows.jsonl"), labeled=labeled, max_len=40, now=NOW,
                                          encoding="utf-8")
            outcomes.append((table.to_pylist(), report.problems))
    finally:
        importer.ROWS_AS_COLUMNS = saved

    assert outcomes[0] == outcomes[1]
