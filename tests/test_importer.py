"""engine.importer.import_file on a real store: what is kept, what is rejected (where and why), what is stored.

Hand-written files live in tests/data/imports (see its README); files whose point is their
bytes (BOM, invalid UTF-8, Latin-1, NUL, control characters, 10 MB texts, Parquet) are
written here into tmp_path.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from engine.context import Context
from engine.errors import InputError
from engine.importer import import_file
from store.events import recent_events
from store.querylog import count_rows
from tests.conftest import labelled_frame

CORPUS = Path(__file__).resolve().parent / "data" / "imports"
NOW = datetime(2026, 3, 4, 12, 0, 0)  # the ManualClock of tests/conftest.py
LABEL_EMPTY = "label is empty: every row of a --labeled import needs a label"
NOT_OBJECT = 'not a JSON object: each line must be like {"text": "...", "label": "..."}'
NOT_UTF8 = "not valid UTF-8 on this line: save the file as UTF-8 (or name its encoding with --encoding)"
WIDTH_1_OF_2 = "1 field(s), but the header has 2: put a text that holds ',' in double quotes, and give every row all 2 columns"
TOO_LONG = "the line is over 865,536 bytes: a row holds one text of at most 100,000 characters (setting max_text_length)"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def jsonl(*rows: dict) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def labels(ctx: Context) -> list[tuple]:
    """(text, label, query_id, source, ts) of every stored label, by text."""
    with ctx.db.read() as con:
        return con.execute("SELECT text, label, query_id, source, ts FROM labels ORDER BY text, label").fetchall()


def label_pairs(ctx: Context) -> list[tuple[str, str]]:
    return [(text, label) for text, label, *_ in labels(ctx)]


def queries(ctx: Context) -> list[tuple]:
    """(id, text, predicted_label, confidence, model_version, source, ts) of every logged query, by text."""
    with ctx.db.read() as con:
        return con.execute(
            "SELECT id, text, predicted_label, confidence, model_version, source, ts FROM queries ORDER BY text"
        ).fetchall()


# -- good rows kept, bad rows rejected, per format ---------------------------------------------


def test_csv_keeps_good_rows_and_rejects_bad_ones_by_line(ctx):
    report = import_file(ctx, CORPUS / "rejects.csv", labeled=True)

    assert (report.rows, report.labels, report.queries, report.rejected) == (9, 5, 0, 4)  # lines 8-9 are one row
    assert report.problems == [
        ("line 3", "text is empty"),
        ("line 4", LABEL_EMPTY),
        ("line 5", "text is empty"),
        ("line 10", WIDTH_1_OF_2),  # 'only a text': the row after the two-line text, which is lines 8-9
    ]
    assert label_pairs(ctx) == [
        ("cancel my subscription", "subscription_cancel"),
        ("line one\nline two", "other"),
        ("reset my password", "account_access"),
        ("speak to a human", "human_agent"),
        ("where is my order", "track_order"),
    ]
    assert count_rows(ctx.db) == {"queries": 0, "labels": 5}


def test_jsonl_keeps_good_lines_and_rejects_bad_ones_by_line(ctx):
    report = import_file(ctx, CORPUS / "rejects.jsonl", labeled=True)

    assert (report.rows, report.labels, report.queries, report.rejected) == (11, 3, 0, 8)  # line 8 is blank: skipped
    assert report.problems == [
        ("line 2", "text is empty"),
        ("line 3", LABEL_EMPTY),
        ("line 4", LABEL_EMPTY),  # NaN
        ("line 6", "not valid JSON (Expecting ',' delimiter at column 36)"),  # the column where the line ends
        ("line 7", NOT_OBJECT),
        ("line 9", "text must be a string, not int"),
        ("line 10", "text is empty"),
        ("line 12", NOT_OBJECT),
    ]
    assert report.ignored_columns == []  # JSON Lines has no header: extra keys are simply not read
    assert label_pairs(ctx) == [
        ("cancel my subscription", "subscription_cancel"),
        ("speak to a human", "human_agent"),
        ("where is my order", "track_order"),
    ]


def test_parquet_keeps_good_rows_and_rejects_bad_ones_by_row(ctx, tmp_path):
    path = tmp_path / "rows.parquet"
    pd.DataFrame({
        "text": ["where is my order", None, "i want a refund", "cancel my subscription", "   ", "speak to a human"],
        "label": ["track_order", "track_order", None, " Subscription_Cancel ", "other", "human_agent"],
    }).to_parquet(path)

    report = import_file(ctx, path, labeled=True)

    assert (report.rows, report.labels, report.rejected) == (6, 3, 3)
    assert report.problems == [("row 2", "text is empty"), ("row 3", LABEL_EMPTY), ("row 5", "text is empty")]
    assert label_pairs(ctx) == [
        ("cancel my subscription", "subscription_cancel"),
        ("speak to a human", "human_agent"),
        ("where is my order", "track_order"),
    ]


def test_parquet_with_wrong_column_types_rejects_each_row(ctx, tmp_path):
    path = tmp_path / "types.parquet"
    pd.DataFrame({"text": [101, 102, 103], "label": ["a", "b", "c"]}).to_parquet(path)

    report = import_file(ctx, path, labeled=True)

    assert (report.rows, report.labels, report.rejected) == (3, 0, 3)
    assert report.problems == [(f"row {n}", "text must be a string, not int") for n in (1, 2, 3)]
    assert count_rows(ctx.db) == {"queries": 0, "labels": 0}


def test_parquet_numeric_label_and_nan_label(ctx, tmp_path):
    path = tmp_path / "labels.parquet"
    pd.DataFrame({"text": ["first", "second"], "label": [float("nan"), 7.0]}).to_parquet(path)

    report = import_file(ctx, path, labeled=True)

    assert report.problems == [("row 1", LABEL_EMPTY)]
    assert label_pairs(ctx) == [("second", "7")]  # a number is stored as its shortest text


# -- encodings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, content", [
    ("bom.csv", "\ufefftext,label\nwhere is my order,track_order\n"),
    ("bom.jsonl", "\ufeff" + jsonl({"text": "where is my order", "label": "track_order"})),
    ("bom-crlf.csv", "\ufefftext,label\r\nwhere is my order,track_order\r\n"),
    ("bom-crlf.jsonl", '\ufeff{"text": "where is my order", "label": "track_order"}\r\n'),
], ids=["csv", "jsonl", "csv-crlf", "jsonl-crlf"])
def test_utf8_bom_before_the_header_is_ignored(ctx, tmp_path, name, content):
    report = import_file(ctx, write(tmp_path, name, content), labeled=True)

    assert (report.rows, report.labels, report.rejected, report.ignored_columns) == (1, 1, 0, [])
    assert label_pairs(ctx) == [("where is my order", "track_order")]


@pytest.mark.parametrize("name, content, problem", [
    ("bytes.csv", "text,label\nfirst café,a\n".encode() + b"bad \xff\xfe bytes,b\n" + "third naïve,c\n".encode(),
     ("line 3", NOT_UTF8)),
    ("bytes.jsonl", '{"text": "first café", "label": "a"}\n'.encode() + b'{"text": "bad \xff\xfe bytes", "label": "b"}\n'
                    + '{"text": "third naïve", "label": "c"}\n'.encode(), ("line 2", NOT_UTF8.replace(" on this line", " text in the file's encoding on this line").replace(" (or name its encoding with --encoding)", "").replace("not valid UTF-8 text", "not valid text"))),
    ("bytes-broken.jsonl", '{"text": "first café", "label": "a"}\n'.encode() + b'{"text": "bad \xff\n'
                           + '{"text": "third naïve", "label": "c"}\n'.encode(),
     ("line 2", "not valid text in the file's encoding on this line: save the file as UTF-8")),
], ids=["csv", "jsonl", "jsonl-also-broken"])
def test_invalid_utf8_rejects_only_its_line_in_a_utf8_file(ctx, tmp_path, name, content, problem):
    report = import_file(ctx, write(tmp_path, name, content), labeled=True)

    assert (report.rows, report.labels, report.rejected) == (3, 2, 1)
    assert report.encoding == "utf-8"
    assert report.problems == [problem]
    assert label_pairs(ctx) == [("first café", "a"), ("third naïve", "c")]


def test_latin1_file_is_read_in_its_encoding(ctx, tmp_path):
    content = "text,label\ncafé au lait,coffee\nplain tea,tea\nnaïve question,other\nsmall order,other\n"
    report = import_file(ctx, write(tmp_path, "latin1.csv", content.encode("latin-1")), labeled=True)

    assert (report.rows, report.labels, report.rejected, report.encoding) == (4, 4, 0, "cp1252")
    assert label_pairs(ctx) == [("café au lait", "coffee"), ("naïve question", "other"), ("plain tea", "tea"),
                                ("small order", "other")]


# -- text normalisation ------------------------------------------------------------------------------


@pytest.mark.parametrize("name, content, problem", [
    ("nul.csv", "text,label\nfine,a\nhalf\x00way,b\n", ("line 3", "text holds a NUL byte")),
    ("nul.jsonl", jsonl({"text": "fine", "label": "a"}, {"text": "half\x00way", "label": "b"}), ("line 2", "text holds a NUL byte")),
], ids=["csv", "jsonl"])
def test_nul_byte_in_text_is_rejected(ctx, tmp_path, name, content, problem):
    report = import_file(ctx, write(tmp_path, name, content), labeled=True)

    assert report.problems == [problem]
    assert label_pairs(ctx) == [("fine", "a")]


@pytest.mark.parametrize("raw, stored", [
    ("bell\x07escape\x1bdelete\x7fend", "bell escape delete end"),
    ("c1 next-line\x85and csi\x9bend", "c1 next-line and csi end"),
    ("form\x0cfeed and vertical\x0btab", "form feed and vertical tab"),
    ("carriage\rreturn", "carriage return"),
    ("tab\tand\nnewline stay", "tab\tand\nnewline stay"),
    ("  \x07 surrounding space and controls \x1b ", "surrounding space and controls"),
], ids=["c0-and-del", "c1", "ff-vt", "cr", "tab-newline-kept", "stripped"])
def test_control_characters_become_spaces(ctx, tmp_path, raw, stored):
    report = import_file(ctx, write(tmp_path, "controls.jsonl", jsonl({"text": raw, "label": "other"})), labeled=True)

    assert (report.labels, report.rejected) == (1, 0)
    assert label_pairs(ctx) == [(stored, "other")]


UNICODE_TEXTS = [
    "where is my order 📦🚚",
    "أين طلبي؟",
    "איפה ההזמנה שלי?",
    "\u200fהזמנה 12345 \u200eorder",  # right-to-left and left-to-right marks are kept
    "我的订单在哪里",
    "cafe\u0301 ＭＹ order",  # a combining accent and full-width letters: not NFKC-normalised on import
    "👍🏽 thanks 🇮🇱",
]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_emoji_and_right_to_left_text_are_stored_unchanged(ctx, tmp_path, fmt):
    labels_ = ["track_order"] * 6 + ["other"]
    if fmt == "csv":
        path = CORPUS / "unicode.csv"
    elif fmt == "jsonl":
        path = write(tmp_path, "unicode.jsonl", jsonl(*({"text": t, "label": l} for t, l in zip(UNICODE_TEXTS, labels_))))
    else:
        path = tmp_path / "unicode.parquet"
        pd.DataFrame({"text": UNICODE_TEXTS, "label": labels_}).to_parquet(path)

    report = import_file(ctx, path, labeled=True)

    assert (report.rows, report.labels, report.rejected) == (7, 7, 0)
    assert sorted(label_pairs(ctx)) == sorted(zip(UNICODE_TEXTS, labels_))


def test_formula_like_text_is_stored_verbatim(ctx):
    report = import_file(ctx, CORPUS / "formulas.csv", labeled=True)

    assert (report.rows, report.labels, report.rejected) == (5, 5, 0)
    assert sorted(text for text, _ in label_pairs(ctx)) == sorted([
        "=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1:A2)", '=HYPERLINK("http://example.com","click me")',
    ])


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_ten_megabyte_text_is_rejected_as_too_long(ctx, tmp_path, fmt):
    huge = "x" * 10_000_000
    rows = [("first", "a"), (huge, "b"), ("third", "c")]
    if fmt == "csv":
        path = write(tmp_path, "huge.csv", "text,label\n" + "".join(f"{t},{l}\n" for t, l in rows))
        where, reason = "line 3", re.escape(TOO_LONG)  # never read whole: skipped a MiB at a time
    elif fmt == "jsonl":
        path = write(tmp_path, "huge.jsonl", jsonl(*({"text": t, "label": l} for t, l in rows)))
        where, reason = "line 2", re.escape(TOO_LONG)
    else:
        path = tmp_path / "huge.parquet"
        pd.DataFrame(rows, columns=["text", "label"]).to_parquet(path)
        where, reason = "row 2", r"text is 10,000,000 characters; the limit is 100,000 \(setting max_text_length\)"

    report = import_file(ctx, path, labeled=True)

    assert (report.rows, report.labels, report.rejected) == (3, 2, 1)
    [(got_where, got_reason)] = report.problems
    assert got_where == where
    assert re.fullmatch(reason, got_reason), got_reason
    assert label_pairs(ctx) == [("first", "a"), ("third", "c")]


def test_length_limit_is_inclusive_and_counts_characters_after_stripping(ctx, tmp_path):
    content = jsonl(
        {"text": "é" * 100_000, "label": "at_limit"},  # 100,000 characters (200,000 bytes): the default limit
        {"text": "  " + "y" * 100_000 + "  ", "label": "padded"},
        {"text": "z" * 100_001, "label": "over"},
    )
    report = import_file(ctx, write(tmp_path, "limit.jsonl", content), labeled=True)

    assert report.problems == [("line 3", "text is 100,001 characters; the limit is 100,000 (setting max_text_length)")]
    assert sorted(label for _, label in label_pairs(ctx)) == ["at_limit", "padded"]


def test_csv_field_longer_than_the_csv_modules_default_limit_is_read_when_settings_allow(settings, clock, tmp_path):
    ctx = Context.open(settings.replace(max_text_length=300_000), clock=clock)
    long_text = "word " * 40_000  # 200,000 characters: over csv's default 131,072 field limit
    path = write(tmp_path, "long.csv", f"text,label\n{long_text},other\nshort,other\n")

    report = import_file(ctx, path, labeled=True)

    assert (report.rows, report.labels, report.rejected) == (2, 2, 0)
    assert sorted(len(text) for text, _ in label_pairs(ctx)) == [5, 199_999]  # the trailing space is stripped


# -- files that cannot be imported at all ------------------------------------------------------------


def _zero_row_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "zero.parquet"
    pd.DataFrame({"text": pd.Series([], dtype=object), "label": pd.Series([], dtype=object)}).to_parquet(path)
    return path


BAD_FILES = {
    "empty-csv": (lambda tmp: CORPUS / "empty.csv", r"empty\.csv is empty: it needs a header with a 'text' column"),
    "empty-jsonl": (lambda tmp: CORPUS / "empty.jsonl", r"empty\.jsonl is empty: it needs one JSON object per line"),
    "blank-jsonl": (lambda tmp: write(tmp, "blank.jsonl", "\n  \n\n"), r"blank\.jsonl is empty"),
    "header-only-csv": (lambda tmp: CORPUS / "header_only.csv", r"header_only\.csv has a header but no rows"),
    "zero-row-parquet": (_zero_row_parquet, r"zero\.parquet has a header but no rows"),
    "missing-text-column": (lambda tmp: CORPUS / "missing_text_column.csv",
                            r"has no 'text' column \(columns found: query, label\); rename the query column to 'text'"),
    "parquet-missing-text-column": (
        lambda tmp: (pd.DataFrame({"query": ["a"], "intent": ["b"]}).to_parquet(tmp / "q.parquet"), tmp / "q.parquet")[1],
        r"has no 'text' column \(columns found: query, intent\)"),
    "not-parquet": (lambda tmp: write(tmp, "fake.parquet", "text,label\na,b\n"), r"fake\.parquet is not a readable Parquet file"),
    "empty-parquet": (lambda tmp: write(tmp, "zero-bytes.parquet", b""), r"zero-bytes\.parquet is not a readable Parquet file"),
    "unknown-extension": (lambda tmp: write(tmp, "file.xlsx", "text,label\na,b\n"),
                          r"^file\.xlsx: unknown file type '\.xlsx': use \.csv, \.tsv or \.txt \(delimited text\), \.jsonl or "
                          r"\.ndjson \(JSON Lines\), or \.parquet$"),
    "header-names-text-twice": (lambda tmp: CORPUS / "header_twice.csv",
                                r"/header_twice\.csv: columns 'text' and 'Text ' both read as 'text' \(names are compared "
                                r"trimmed and lower-cased\): rename or remove one of them$"),
    "no-text-column-under-any-delimiter": (lambda tmp: CORPUS / "no_text_any_delimiter.csv",
                                           r"has no 'text' column \(columns found: query, intent\)"),
    "unknown-encoding": (lambda tmp: CORPUS / "semicolon.csv", r"^unknown encoding 'klingon': use a name Python knows"),
    "missing-file": (lambda tmp: tmp / "missing.csv", r"missing\.csv does not exist or is not a file"),
    "directory": (lambda tmp: (tmp / "folder.csv").mkdir() or tmp / "folder.csv", r"folder\.csv is a folder: import its files one by one"),
    # A file the OS refuses to read (EIO): root ignores permissions, so a link to /proc/self/mem stands in for them.
    "unreadable-csv": (lambda tmp: (tmp / "mem.csv").symlink_to("/proc/self/mem") or tmp / "mem.csv",
                       r"mem\.csv cannot be read \(Input/output error\): check that it is a readable file"),
    "unreadable-jsonl": (lambda tmp: (tmp / "mem.jsonl").symlink_to("/proc/self/mem") or tmp / "mem.jsonl",
                         r"mem\.jsonl cannot be read \(Input/output error\)"),
}


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_a_file_that_cannot_be_imported_raises_stores_nothing_and_says_so(ctx, tmp_path, labelled_csv, case):
    import_file(ctx, labelled_csv, labeled=True)  # 800 labelled rows already stored
    before = (count_rows(ctx.db), labels(ctx), [e["id"] for e in recent_events(ctx.db, limit=1000)])
    make, message = BAD_FILES[case]
    path = make(tmp_path)

    with pytest.raises(InputError, match=message) as refused:
        import_file(ctx, path, labeled=True, encoding="klingon" if case == "unknown-encoding" else None)

    assert (count_rows(ctx.db), labels(ctx)) == before[:2] == ({"queries": 0, "labels": 800}, before[1])
    [event] = [e for e in recent_events(ctx.db, limit=1000) if e["id"] not in before[2]]  # the refusal, and only it
    assert (event["kind"], event["severity"], event["message"]) == (
        "import", "error", f"Import of {path.name} refused: {refused.value} Nothing was stored.")
    assert (event["details"]["labels"], event["details"]["queries"], event["details"]["refused"]) == (0, 0, True)
    assert list((ctx.settings.home / "imports").iterdir()) == []  # nothing staged is left behind


def test_a_file_whose_rows_are_all_rejected_stores_nothing_but_the_event(ctx, tmp_path, labelled_csv):
    import_file(ctx, labelled_csv, labeled=True)
    before = labels(ctx)

    report = import_file(ctx, write(tmp_path, "bad.csv", "text,label\n,a\nno label,\n"), labeled=True)

    assert (report.rows, report.labels, report.queries, report.rejected) == (2, 0, 0, 2)
    assert labels(ctx) == before
    event = recent_events(ctx.db, limit=1)[0]
    assert (event["kind"], event["severity"], event["message"]) == (
        "import", "warning", "Imported bad.csv: 2 rows read, nothing stored, 2 rejected; no new labels.")


# -- columns and labels ----------------------------------------------------------------------------------


def test_extra_columns_are_ignored_and_reported(ctx):
    report = import_file(ctx, CORPUS / "extra_columns.csv", labeled=True)

    assert report.ignored_columns == ["customer_id", "notes"]
    assert (report.rows, report.labels, report.rejected) == (2, 2, 0)
    assert label_pairs(ctx) == [("i want a refund", "request_refund"), ("where is my order", "track_order")]


def test_labels_are_stripped_and_lower_cased(ctx):
    report = import_file(ctx, CORPUS / "labels_case.csv", labeled=True)

    assert report.rejected == 0
    assert label_pairs(ctx) == [
        ("where is my order", "track_order"),
        ("where is my package", "track_order"),
        ("where is my parcel", "track_order"),
    ]


@pytest.mark.parametrize("name, content, where", [
    ("empty.csv", "text,label\nfirst,\n", "line 2"),
    ("spaces.csv", "text,label\nfirst,   \n", "line 2"),
    ("null.jsonl", jsonl({"text": "first", "label": None}), "line 1"),
    ("nan.jsonl", '{"text": "first", "label": NaN}\n', "line 1"),
    ("missing.jsonl", jsonl({"text": "first"}), "line 1"),
], ids=["csv-empty", "csv-spaces", "jsonl-null", "jsonl-nan", "jsonl-missing"])
def test_empty_or_nan_label_is_rejected_in_a_labelled_import(ctx, tmp_path, name, content, where):
    report = import_file(ctx, write(tmp_path, name, content), labeled=True)

    assert (report.rows, report.labels, report.rejected) == (1, 0, 1)
    assert report.problems == [(where, LABEL_EMPTY)]


def test_confidence_must_be_a_number_from_0_to_1(ctx):
    report = import_file(ctx, CORPUS / "confidence.csv", labeled=False)

    assert (report.rows, report.queries, report.labels, report.rejected) == (9, 3, 0, 6)
    assert report.problems == [
        ("line 2", "confidence 'abc' is not a number: use a number from 0 to 1"),
        ("line 3", "confidence '-0.2' is outside [0, 1]"),
        ("line 4", "confidence '1.5' is outside [0, 1]"),
        ("line 5", "confidence 'NaN' is outside [0, 1]"),
        ("line 9", "confidence is missing: give the model's probability, a number from 0 to 1"),
        ("line 10", "confidence 'true' is not a number: use a number from 0 to 1"),
    ]
    assert [(text, confidence) for _, text, _, confidence, *_ in queries(ctx)] == [("q5", 0.7), ("q6", 1.0), ("q7", 0.0)]


@pytest.mark.parametrize("value, problem", [
    (True, "confidence True is not a number: use a number from 0 to 1"),
    ("0.9", None),
    (float("nan"), "confidence is missing: give the model's probability, a number from 0 to 1"),  # NaN counts as missing
    (float("inf"), "confidence inf is outside [0, 1]"),
    ([0.5], "confidence [0.5] is not a number: use a number from 0 to 1"),
], ids=["bool", "numeric-string", "nan", "inf", "list"])
def test_jsonl_confidence_types(ctx, tmp_path, value, problem):
    path = write(tmp_path, "c.jsonl", jsonl({"text": "where is it", "predicted_label": "track_order", "confidence": value}))

    report = import_file(ctx, path, labeled=False)

    assert report.problems == ([] if problem is None else [("line 1", problem)])
    assert report.queries == (1 if problem is None else 0)


def test_logged_queries_need_a_predicted_label(ctx, tmp_path):
    path = write(tmp_path, "q.csv", "text,predicted_label,confidence\nwhere is it,,0.9\n")

    report = import_file(ctx, path, labeled=False)

    assert report.problems == [
        ("line 2", "predicted_label is empty: logged queries need the model's label (or import with --labeled)")]


# -- where rows go -------------------------------------------------------------------------------------


def test_unlabelled_import_stores_queries_and_links_labels_to_them(ctx, tmp_path):
    path = write(tmp_path, "log.csv", (
        "text,predicted_label,confidence,label\n"
        "where is my order,Track_Order,0.91,track_order\n"
        "i want my money back,request_refund,0.55,\n"
        "cancel it,subscription_cancel,0.40, Account_Access \n"
    ))

    report = import_file(ctx, path, labeled=False)

    assert (report.rows, report.queries, report.labels, report.rejected) == (3, 3, 2, 0)
    stored = queries(ctx)
    assert [row[1:] for row in stored] == [
        ("cancel it", "subscription_cancel", 0.40, None, "import", NOW),
        ("i want my money back", "request_refund", 0.55, None, "import", NOW),
        ("where is my order", "track_order", 0.91, None, "import", NOW),
    ]
    ids = {text: qid for qid, text, *_ in stored}
    assert all(re.fullmatch(r"[0-9a-f]{32}", qid) for qid in ids.values())
    assert labels(ctx) == [
        ("cancel it", "account_access", ids["cancel it"], "import", NOW),
        ("where is my order", "track_order", ids["where is my order"], "import", NOW),
    ]


def test_labelled_import_with_predictions_stores_both_linked(ctx, tmp_path):
    path = write(tmp_path, "both.jsonl", jsonl(
        {"text": "where is my order", "label": "track_order", "predicted_label": "request_refund", "confidence": 0.6},
        {"text": "reset my password", "label": "account_access"},
        {"text": "no label here", "predicted_label": "other", "confidence": 0.9},
    ))

    report = import_file(ctx, path, labeled=True)

    assert (report.rows, report.queries, report.labels, report.rejected) == (3, 1, 2, 1)
    assert report.problems == [("line 3", LABEL_EMPTY)]
    [(qid, text, predicted, confidence, version, source, ts)] = queries(ctx)
    assert (text, predicted, confidence, version) == ("where is my order", "request_refund", 0.6, None)
    assert [(t, l, q) for t, l, q, *_ in labels(ctx)] == [
        ("reset my password", "account_access", None),
        ("where is my order", "track_order", qid),
    ]


def test_ts_column_is_parsed_to_naive_utc_and_defaults_to_now(ctx, tmp_path):
    path = write(tmp_path, "ts.csv", (
        "text,label,ts\n"
        "zoned,a,2026-01-01T00:30:00+02:00\n"
        "naive,a,2026-02-03 04:05:06\n"
        "no time,a,\n"
        "bad time,a,yesterday-ish\n"
    ))

    report = import_file(ctx, path, labeled=True)

    assert report.problems == [("line 5", "ts 'yesterday-ish' is not a date-time: use ISO 8601, e.g. 2026-11-01T12:00:00")]
    assert [(text, ts) for text, _, _, _, ts in labels(ctx)] == [
        ("naive", datetime(2026, 2, 3, 4, 5, 6)),
        ("no time", NOW),
        ("zoned", datetime(2025, 12, 31, 22, 30)),
    ]


def test_import_event_records_the_counts(ctx):
    import_file(ctx, CORPUS / "rejects.csv", labeled=True)

    [event] = recent_events(ctx.db, kind="import")
    assert (event["ts"], event["severity"], event["message"]) == (
        NOW, "warning", "Imported rejects.csv: 9 rows read, 5 labelled rows stored, 4 rejected; "
                        "5 new labels: account_access, human_agent, other, subscription_cancel, track_order.")
    details = event["details"]
    assert {k: details[k] for k in ("labeled", "rows", "labels", "queries", "rejected")} == {
        "labeled": True, "rows": 9, "labels": 5, "queries": 0, "rejected": 4}
    assert details["path"] == str(CORPUS / "rejects.csv")
    assert details["problems"] == [["line 3", "text is empty"], ["line 4", LABEL_EMPTY], ["line 5", "text is empty"],
                                   ["line 10", WIDTH_1_OF_2]]
    assert (details["sha256"], details["encoding"], details["dialect"]) == (
        hashlib.sha256((CORPUS / "rejects.csv").read_bytes()).hexdigest(), "utf-8", 'comma-separated, quote "')


def test_clean_import_event_is_info_and_summary_reads_well(ctx, labelled_csv):
    report = import_file(ctx, labelled_csv, labeled=True)

    assert report.summary() == f"{labelled_csv}: 800 rows read, 800 labelled rows stored, 0 rejected"
    [event] = recent_events(ctx.db, kind="import")
    intents = sorted(set(labelled_frame()["label"]))
    assert len(intents) == 20
    assert (event["severity"], event["message"]) == (
        "info", f"Imported labelled.csv: 800 rows read, 800 labelled rows stored, 0 rejected; 20 new labels: {', '.join(intents)}.")


def test_progress_is_reported_with_rows_and_bytes(ctx, labelled_csv):
    seen: list[tuple[int, int, int]] = []

    import_file(ctx, labelled_csv, labeled=True, progress=lambda *args: seen.append(args))

    size = labelled_csv.stat().st_size
    assert seen == [(800, size, size)]
