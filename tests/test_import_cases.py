"""Issue 12, cases 1-12: files that are valid for their authors, labels that look alike, sizes and structure.

Each test names its case and asserts the exact outcome: rows stored, rows rejected (where, why), and
for the command line the exit code (0 every row stored, 1 some rows rejected, 2 the file refused).
The files are in tests/data/imports (written by its make_corpus.py); big files are made in tmp_path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.context import Context
from engine.errors import InputError
from engine.importer import BATCH_ROWS, import_file
from store.events import recent_events
from store.querylog import count_rows
from tests.conftest import ROOT, run_cli

CORPUS = Path(__file__).resolve().parent / "data" / "imports"
NOW = datetime(2026, 3, 4, 12, 0, 0)


def stored(ctx: Context, table: str = "labels") -> list[tuple]:
    column = "label" if table == "labels" else "predicted_label"
    with ctx.db.read() as con:
        return con.execute(f"SELECT text, {column} FROM {table} ORDER BY text").fetchall()


def events(ctx: Context) -> list[tuple[str, str]]:
    return [(e["severity"], e["message"]) for e in recent_events(ctx.db, kind="import", limit=100)]


# -- 1. dialects ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name, dialect", [
    ("semicolon.csv", 'semicolon-separated, quote "'),
    ("tab.tsv", 'tab-separated, quote "'),
    ("pipe.csv", 'pipe-separated, quote "'),
], ids=["semicolon", "tab", "pipe"])
def test_case_1_the_delimiter_is_detected(ctx, name, dialect):
    report = import_file(ctx, CORPUS / name, labeled=True)

    n = 300 if name == "semicolon.csv" else 20
    assert (report.rows, report.labels, report.rejected, report.dialect) == (n, n, 0, dialect)
    pairs = stored(ctx)
    if name == "semicolon.csv":  # texts keep their commas; labels are their own column
        assert pairs[:2] == [("Hallo, wo ist meine Bestellung 1, bitte", "track_order"),
                             ("Hallo, wo ist meine Bestellung 10, bitte", "track_order")]
        assert sorted({label for _, label in pairs}) == ["cancel_order", "track_order"]
        assert sum(label == "cancel_order" for _, label in pairs) == 100
    else:
        assert pairs[0] == ("where, is; order 0", "track_order")


def test_case_1_semicolon_file_from_the_command_line_exits_0(tmp_path):
    done = run_cli("import", str(CORPUS / "semicolon.csv"), "--labeled", home=tmp_path / "home")

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        '  read as utf-8 (the bytes are valid UTF-8; --encoding NAME overrides), semicolon-separated, quote "',
        "  2 new labels: cancel_order, track_order",
        f"{CORPUS / 'semicolon.csv'}: 300 rows read, 300 labelled rows stored, 0 rejected",
    ]


def test_case_1_a_file_with_no_text_column_under_any_delimiter_names_the_columns(ctx):
    with pytest.raises(InputError, match=r"/no_text_any_delimiter\.csv has no 'text' column \(columns found: query, intent\); "
                                         r"rename the query column to 'text'$"):
        import_file(ctx, CORPUS / "no_text_any_delimiter.csv", labeled=True)


# -- 2. encodings --------------------------------------------------------------------------------


def test_case_2_a_windows_1252_file_is_read_in_its_encoding(ctx):
    report = import_file(ctx, CORPUS / "cp1252.csv", labeled=True)

    assert (report.rows, report.labels, report.rejected) == (8, 8, 0)
    assert (report.encoding, report.encoding_how) == ("cp1252", "guessed by charset-normalizer (the bytes are not UTF-8)")
    assert [text for text, _ in stored(ctx)] == sorted([
        "where is my order", "café au lait please", "naïve question about fees", "Grüße aus Köln", "price in € please",
        "plain text", "crème brûlée order", "another plain one"])


def test_case_2_encoding_can_be_named(ctx):
    report = import_file(ctx, CORPUS / "cp1252.csv", labeled=True, encoding="latin-1")

    assert (report.encoding, report.encoding_how, report.labels) == ("iso8859-1", "named with --encoding", 8)
    # latin-1 reads the euro sign's byte as a C1 control character, which becomes a space
    assert "price in   please" in [text for text, _ in stored(ctx)]


@pytest.mark.parametrize("encoding, message", [
    ("utf-16", "cp1252.csv cannot be read as utf-16 (UTF-16 stream does not start with BOM): name its real encoding "
               "with --encoding (utf-16-le or utf-16-be for UTF-16 without a byte order mark), or leave --encoding out "
               "to have it detected"),
    ("rot13", "'rot13' is a codec for other transformations, not a text encoding: use a text encoding, e.g. utf-8, "
              "cp1252, latin-1, utf-16, shift_jis"),
    ("base64", "'base64' is a codec for other transformations, not a text encoding: use a text encoding, e.g. utf-8, "
               "cp1252, latin-1, utf-16, shift_jis"),
], ids=["utf-16 without a byte order mark", "rot13", "base64"])
def test_case_2_an_encoding_that_cannot_read_the_file_is_refused_with_exit_2(tmp_path, encoding, message):
    # Codecs Python knows that fail on this file, or are no text encodings at all: refused, no traceback.
    done = run_cli("import", str(CORPUS / "cp1252.csv"), "--labeled", "--encoding", encoding, home=tmp_path / "home")

    assert (done.returncode, done.stderr) == (2, f"error: {message}\n")


def test_a_folder_is_refused_as_a_folder(tmp_path):
    (tmp_path / "exports").mkdir()
    done = run_cli("import", str(tmp_path / "exports"), "--labeled", home=tmp_path / "home")

    assert (done.returncode, done.stderr) == (
        2, "error: exports is a folder: import its files one by one, each .csv, .tsv or .txt (delimited text), .jsonl or "
           ".ndjson (JSON Lines), or .parquet\n")


def test_case_2_a_utf8_file_with_one_damaged_line_rejects_that_line_and_exits_1(tmp_path):
    done = run_cli("import", str(CORPUS / "utf8_one_bad_line.csv"), "--labeled", home=tmp_path / "home")

    assert done.returncode == 1
    assert "  rejected line 4: not valid UTF-8 on this line: save the file as UTF-8 (or name its encoding with --encoding)" \
        in done.stdout.splitlines()
    assert done.stdout.splitlines()[-1].endswith("4 rows read, 3 labelled rows stored, 1 rejected")


def test_case_2_utf16_with_a_byte_order_mark(ctx):
    report = import_file(ctx, CORPUS / "utf16.tsv", labeled=True)

    assert (report.encoding, report.dialect, report.labels) == ("utf-16", 'tab-separated, quote "', 2)
    assert stored(ctx) == [("café au lait", "coffee"), ("where is my order", "track_order")]


# -- 3. headers ----------------------------------------------------------------------------------


def test_case_3_header_names_are_trimmed_and_lower_cased(ctx):
    report = import_file(ctx, CORPUS / "header_spaces.csv", labeled=False)

    assert (report.rows, report.queries, report.labels, report.rejected, report.ignored_columns) == (2, 2, 2, 0, [])
    assert stored(ctx) == [("refund me", "request_refund"), ("where is it", "track_order")]  # the ' label' column is read
    report = import_file(ctx, CORPUS / "header_capitals.csv", labeled=True)
    assert (report.labels, report.ignored_columns) == (1, [])


def test_case_3_two_columns_with_one_name_refuse_the_file(tmp_path):
    done = run_cli("import", str(CORPUS / "header_twice.csv"), "--labeled", home=tmp_path / "home")

    assert done.returncode == 2
    assert done.stderr == (f"error: {CORPUS}/header_twice.csv: columns 'text' and 'Text ' both read as 'text' (names are compared "
                           "trimmed and lower-cased): rename or remove one of them\n")


# -- 4. broken quotes ------------------------------------------------------------------------------


QUOTE_LINE_3 = 'a quote opened on line 3 is not closed where the field ends (read up to line {}): close it, or double a quote inside a quoted text ("")'


def test_case_4_an_unclosed_quote_is_reported_at_its_line_and_the_lines_after_it_are_read(ctx):
    report = import_file(ctx, CORPUS / "unclosed_quote.csv", labeled=True)

    assert (report.rows, report.labels, report.rejected) == (6, 5, 1)
    assert report.problems == [("line 3", QUOTE_LINE_3.format(7))]
    assert stored(ctx) == [("cancel my plan", "cancel_order"), ("reset my password", "account_access"),
                           ("speak to a human", "human_agent"), ("thanks a lot", "thanks"),
                           ("where is my order", "track_order")]


def test_case_4_a_later_quoted_comma_never_glues_records_into_one_row(ctx):
    report = import_file(ctx, CORPUS / "unclosed_quote_then_comma.csv", labeled=True)

    assert (report.rows, report.labels, report.rejected) == (5, 4, 1)
    assert report.problems == [("line 3", QUOTE_LINE_3.format(5))]
    assert stored(ctx) == [("cancel my plan", "cancel_order"), ("speak to a human", "human_agent"),
                           ("where is my order", "track_order"), ("yes, please", "confirm")]


def test_case_4_a_row_with_more_fields_than_the_header_is_rejected_not_cut(ctx):
    report = import_file(ctx, CORPUS / "unquoted_comma.csv", labeled=True)

    assert report.problems == [("line 2", "3 field(s), but the header has 2: put a text that holds ',' in double quotes, "
                                          "and give every row all 2 columns")]
    assert stored(ctx) == [("fine", "other")]


@pytest.mark.parametrize("content, problem", [
    ('text,label\n"closed"then more,a\nok,b\n', ("line 2", 'text follows a closing quote on line 2: put the whole field in '
                                                           'quotes and double every quote inside it ("")')),
    ('text,label\nok,b\n"never closed,a\n', ("line 3", QUOTE_LINE_3.format(3))),
], ids=["text-after-closing-quote", "quote-open-at-end-of-file"])
def test_case_4_other_broken_quoting(ctx, tmp_path, content, problem):
    path = tmp_path / "q.csv"
    path.write_text(content)

    report = import_file(ctx, path, labeled=True)

    assert report.problems == [problem]
    assert stored(ctx) == [("ok", "b")]


@pytest.mark.parametrize("content, pairs, problems", [
    # Found by a random hypothesis draw: Python's csv.writer and pandas' to_csv (line terminator \n) leave a
    # text's \r unquoted; the record is one line and was rejected whole ("new-line character seen").
    ("text,label\n0\r,track_order\n", [("0", "track_order")], []),
    ("text,label\nwhere is\rmy order,track_order\nfine,other\n", [("fine", "other"), ("where is my order", "track_order")], []),
    # The same draw's other face: next to a broken quote (line 2) the \r record (line 3) was rejected too.
    ('text,label\n"quoted"then text,label\n0\r,a\n', [("0", "a")],
     [("line 2", 'text follows a closing quote on line 2: put the whole field in quotes and double every quote inside it ("")')]),
    # A label ending in \r in a file whose lines end in \n: the \r is the label's, and is stripped like a space.
    ("text,label\nhello,greet\r\nbye,other\n", [("bye", "other"), ("hello", "greet")], []),
    # A label holding \r is one record, rejected at its own line; its neighbours are stored.
    ("text,label\nfirst,a\nsecond,b\rc\nthird,d\n", [("first", "a"), ("third", "d")],
     [("line 3", "label holds a control character (a line break or a tab): a label is one line of text")]),
    # In a file whose header ends in \r\n, \r\n ends every line.
    ("text,label\r\nhello\r there,greet\r\nbye,other\r\n", [("bye", "other"), ("hello  there", "greet")], []),
], ids=["pandas-minimal", "inside-a-text", "next-to-a-broken-quote", "end-of-a-label", "inside-a-label", "crlf-file"])
def test_case_4_a_carriage_return_inside_an_unquoted_field_is_data(ctx, tmp_path, content, pairs, problems):
    path = tmp_path / "cr.csv"
    path.write_bytes(content.encode())

    report = import_file(ctx, path, labeled=True)

    assert report.problems == problems
    assert stored(ctx) == pairs


def test_case_4_pandas_to_csv_of_texts_with_carriage_returns_round_trips(ctx, tmp_path):
    texts = ["0\r", "a\rb", "\rleading", "ok"]
    path = tmp_path / "pandas.csv"
    pd.DataFrame({"text": texts, "label": ["x", "y", "z", "w"]}).to_csv(path, index=False)
    assert b'0\r,x' in path.read_bytes()  # written unquoted

    report = import_file(ctx, path, labeled=True)

    assert (report.rows, report.labels, report.rejected) == (4, 4, 0)
    assert stored(ctx) == [("0", "x"), ("a b", "y"), ("leading", "z"), ("ok", "w")]


# -- 5, 6, 7. labels -----------------------------------------------------------------------------


def test_case_5_labels_that_print_alike_are_one_label_and_look_alikes_are_named(tmp_path):
    done = run_cli("import", str(CORPUS / "lookalike_labels.jsonl"), "--labeled", home=tmp_path / "home")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "  2 new labels: track_order, tr\u0430ck_order" in lines
    assert ("  warning: label 'track_order' looks like 'tr\u0430ck_order' (character 3 is U+0061 LATIN SMALL LETTER A, "
            "not U+0430 CYRILLIC SMALL LETTER A): fix the file if they are one class") in lines


def test_case_5_zero_width_space_bom_and_case_fold_into_one_label(ctx):
    report = import_file(ctx, CORPUS / "lookalike_labels.jsonl", labeled=True)

    assert [label for _, label in stored(ctx)] == ["track_order", "track_order", "track_order", "tr\u0430ck_order",
                                                   "track_order"]
    assert report.confusable == [("track_order", "tr\u0430ck_order",
                                  "character 3 is U+0061 LATIN SMALL LETTER A, not U+0430 CYRILLIC SMALL LETTER A")]


def test_case_5_a_look_alike_of_a_stored_label_is_named(ctx, tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("text,label\nwhere is it,track_order\n")
    import_file(ctx, path, labeled=True)
    path = tmp_path / "two.csv"
    path.write_text("text,label\nwhere is it now,tr\u0430ck_order\n")

    report = import_file(ctx, path, labeled=True)

    assert report.new_labels == ["tr\u0430ck_order"]
    assert report.confusable == [("tr\u0430ck_order", "track_order",
                                  "character 3 is U+0430 CYRILLIC SMALL LETTER A, not U+0061 LATIN SMALL LETTER A")]
    [event] = recent_events(ctx.db, kind="import", limit=1)
    assert event["details"]["confusable"] == [list(report.confusable[0])]


def test_case_6_labels_that_are_not_one_text_or_number_are_rejected_by_line(ctx):
    report = import_file(ctx, CORPUS / "nonscalar_labels.jsonl", labeled=True)

    assert (report.rows, report.labels, report.rejected) == (9, 3, 6)
    assert report.problems == [
        ("line 1", 'label true is a boolean: a label is a text (or a number); write it as "true" if that is the class'),
        ("line 2", "label [1, 2] is a list: a label is one text (or number)"),
        ("line 3", "label {'a': 1} is an object: a label is one text (or number)"),
        ("line 4", "label inf is not a finite number: a label is a text (or a number)"),
        ("line 8", "label holds a control character (a line break or a tab): a label is one line of text"),
        ("line 9", "label is empty: every row of a --labeled import needs a label"),
    ]
    assert stored(ctx) == [("a float that is whole", "7"), ("a fraction", "2.5"), ("a whole number", "7")]


def test_case_6_parquet_list_and_struct_labels_are_rejected(ctx, tmp_path):
    path = tmp_path / "nested.parquet"
    pq.write_table(pa.table({
        "text": ["a list", "a struct", "fine"],
        "label": pa.array([["a", "b"], None, None], type=pa.list_(pa.string())),
        "predicted_label": pa.array([None, {"x": 1}, None], type=pa.struct([("x", pa.int64())])),
        "confidence": [0.5, 0.5, 0.5],
    }), path)

    report = import_file(ctx, path, labeled=False)

    assert report.problems == [
        ("row 1", "label ['a', 'b'] is a list: a label is one text (or number)"),
        ("row 2", "predicted_label {'x': 1} is an object: a label is one text (or number)"),
        ("row 3", "predicted_label is empty: logged queries need the model's label (or import with --labeled)"),
    ]
    assert count_rows(ctx.db) == {"queries": 0, "labels": 0}


def test_case_7_new_labels_are_listed(ctx, tmp_path):
    first = tmp_path / "first.csv"
    first.write_text("text,label\nwhere is it,track_order\n")
    assert import_file(ctx, first, labeled=True).new_labels == ["track_order"]
    second = tmp_path / "second.csv"
    second.write_text("text,label\nwhere is it now,track_order\nrefund,request_refund\ncancel,cancel_order\nhi,greet\n")

    report = import_file(ctx, second, labeled=True)

    assert report.new_labels == ["cancel_order", "greet", "request_refund"]
    assert report.new_labels_line() == "3 new labels: cancel_order, greet, request_refund"
    assert events(ctx)[0] == ("info", "Imported second.csv: 4 rows read, 4 labelled rows stored, 0 rejected; "
                                      "3 new labels: cancel_order, greet, request_refund.")


# -- 8. the same file twice ---------------------------------------------------------------------------


def test_case_8_the_same_bytes_are_refused_unless_again(ctx, labelled_csv, tmp_path):
    import_file(ctx, labelled_csv, labeled=True)
    copy = tmp_path / "renamed.csv"
    copy.write_bytes(labelled_csv.read_bytes())

    with pytest.raises(InputError, match=r"^renamed\.csv has the same bytes as a file imported on 2026-03-04 12:00 UTC "
                                         r"\(event #\d+, 800 rows stored\): importing it again would store every row "
                                         r"twice\. Pass --again to import it anyway\.$"):
        import_file(ctx, copy, labeled=True)
    assert count_rows(ctx.db) == {"queries": 0, "labels": 800}

    report = import_file(ctx, copy, labeled=True, again=True)
    assert (report.labels, report.again) == (800, True)
    assert count_rows(ctx.db) == {"queries": 0, "labels": 1600}


def test_case_8_a_file_whose_rows_were_all_rejected_can_be_imported_again(ctx, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("text,label\n,a\n")
    assert import_file(ctx, path, labeled=True).labels == 0

    assert import_file(ctx, path, labeled=True).rejected == 1  # nothing was stored the first time: not refused


def test_case_8_refused_reimport_exits_2(tmp_path, labelled_csv):
    home = tmp_path / "home"
    assert run_cli("import", str(labelled_csv), "--labeled", home=home).returncode == 0

    again = run_cli("import", str(labelled_csv), "--labeled", home=home)
    forced = run_cli("import", str(labelled_csv), "--labeled", "--again", home=home)

    assert again.returncode == 2 and "Pass --again to import it anyway." in again.stderr
    assert forced.returncode == 0, forced.stderr


# -- 9. sizes ------------------------------------------------------------------------------------------


def test_case_9_a_sparse_file_with_a_huge_line_is_read_in_bounded_memory(ctx, tmp_path):
    """A 300 MB line of NUL bytes (a sparse file): skipped a MiB at a time, never held."""
    import tracemalloc

    path = tmp_path / "sparse.csv"
    with open(path, "wb") as f:
        f.write(b"text,label\nbefore,a\n")
        f.truncate(f.tell() + 300_000_000)
        f.seek(0, 2)
        f.write(b"\nafter,b\n")

    tracemalloc.start()
    try:
        report = import_file(ctx, path, labeled=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert (report.rows, report.labels, report.rejected) == (3, 2, 1)
    assert report.problems == [("line 3", "the line is over 865,536 bytes: a row holds one text of at most 100,000 "
                                          "characters (setting max_text_length)")]
    assert stored(ctx) == [("after", "b"), ("before", "a")]
    assert peak < 40_000_000  # Python allocations; the file is 300 MB


def test_case_9_parquet_is_read_in_batches_with_progress(ctx, tmp_path):
    path = tmp_path / "many.parquet"
    n = 2 * BATCH_ROWS + 5
    pq.write_table(pa.table({"text": [f"query {i}" for i in range(n)], "label": ["a", "b"] * (n // 2) + ["a"]}), path,
                   row_group_size=10_000)
    seen = []

    report = import_file(ctx, path, labeled=True, progress=lambda *a: seen.append(a))

    assert (report.rows, report.labels) == (n, n)
    assert [rows for rows, _, _ in seen] == [BATCH_ROWS, 2 * BATCH_ROWS, n]
    assert seen[-1][1] == seen[-1][2] == path.stat().st_size


# -- 10. all or nothing --------------------------------------------------------------------------------


def test_case_10_one_bad_line_after_60000_good_ones_is_rejected_and_the_rest_stored_once(ctx, tmp_path):
    path = tmp_path / "big.jsonl"
    with open(path, "w") as f:
        for i in range(60_000):
            f.write(json.dumps({"text": f"query {i}", "label": "a" if i % 2 else "b"}) + "\n")
        f.write('{"text": "deep", "label": ' + "[" * 5000 + "]" * 5000 + "}\n")

    report = import_file(ctx, path, labeled=True)

    assert (report.rows, report.labels, report.rejected) == (60_001, 60_000, 1)
    assert report.problems == [("line 60001", "not valid JSON here: nested too deeply (a row is one flat object)")]
    assert count_rows(ctx.db) == {"queries": 0, "labels": 60_000}
    assert [severity for severity, _ in events(ctx)] == ["warning"]
    with pytest.raises(InputError, match="Pass --again"):
        import_file(ctx, path, labeled=True)
    assert count_rows(ctx.db) == {"queries": 0, "labels": 60_000}


def test_case_10_an_interrupted_import_stores_nothing_and_ends_with_its_event(ctx, tmp_path):
    path = tmp_path / "big.csv"
    pd.DataFrame({"text": [f"query {i}" for i in range(50_000)], "label": ["a", "b"] * 25_000}).to_csv(path, index=False)

    def interrupt(rows, done, total):
        if rows >= 2 * BATCH_ROWS:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_file(ctx, path, labeled=True, progress=interrupt)

    assert count_rows(ctx.db) == {"queries": 0, "labels": 0}
    assert events(ctx) == [("error", "Import of big.csv interrupted. Nothing was stored.")]
    assert list((ctx.settings.home / "imports").iterdir()) == []
    assert import_file(ctx, path, labeled=True).labels == 50_000  # not refused: nothing was stored


def test_case_10_a_killed_import_stores_nothing_and_the_next_one_cleans_up(tmp_path, settings, clock):
    """SIGKILL in the middle of a real import process: no row is stored; its staged files are removed later."""
    path = tmp_path / "big.csv"
    n = 400_000
    pd.DataFrame({"text": [f"query number {i}" for i in range(n)], "label": ["a", "b"] * (n // 2)}).to_csv(path, index=False)
    home = settings.home
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRAINER_")}
    env.update({"RETRAINER_HOME": str(home), "PYTHONPATH": str(ROOT)})
    process = subprocess.Popen([sys.executable, "-m", "engine", "import", str(path), "--labeled"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staged = home / "imports"
    deadline = time.monotonic() + 60
    while not list(staged.glob("*/labels.parquet")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the import finished before it could be killed: make the file bigger"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert list(staged.iterdir())  # the dead import's staging folder is still there

    ctx = Context.open(settings, clock=clock)
    assert count_rows(ctx.db) == {"queries": 0, "labels": 0}
    small = tmp_path / "small.csv"
    small.write_text("text,label\nhello,a\n")
    import_file(ctx, small, labeled=True)
    assert list(staged.iterdir()) == []
    assert count_rows(ctx.db) == {"queries": 0, "labels": 1}


# -- 11. lines that used to raise ---------------------------------------------------------------------


def test_case_11_hostile_lines_are_rejected_with_reasons(settings, clock):
    ctx = Context.open(settings.replace(max_text_length=100_000), clock=clock)  # lines up to ~864 KB are read

    report = import_file(ctx, CORPUS / "hostile.jsonl", labeled=False)

    assert (report.rows, report.queries, report.rejected) == (5, 2, 3)
    assert report.problems == [
        ("line 2", "not valid JSON here: nested too deeply (a row is one flat object)"),
        ("line 3", "a number on this line has more than 4,300 digits: write numbers in the usual way (a confidence is "
                   "a number from 0 to 1)"),
        ("line 4", "keys 'text' and 'Text' both read as 'text': give each field once"),
    ]
    assert stored(ctx, "queries") == [("also fine", "other"), ("fine", "other")]


def test_case_11_with_the_default_line_limit_the_deep_line_is_read_and_refused_as_nested(ctx):
    report = import_file(ctx, CORPUS / "hostile.jsonl", labeled=False)

    assert report.problems[0] == ("line 2", "not valid JSON here: nested too deeply (a row is one flat object)")


def test_case_11_a_confidence_with_5000_digits_in_a_csv(ctx):
    report = import_file(ctx, CORPUS / "digits.csv", labeled=False)

    assert report.problems == [("line 3", "confidence '111111111111111111111111111111111111111... (5,002 characters) is "
                                          "outside [0, 1]")]


def test_case_11_a_lone_surrogate_escape_in_json_is_a_rejected_line_not_a_traceback(ctx, tmp_path):
    """``"\\ud800"`` alone decodes to half a character, which no text can be stored as (it was a UnicodeEncodeError)."""
    path = tmp_path / "surrogates.jsonl"
    path.write_text('{"text": "ok", "label": "a"}\n'
                    '{"text": "bad \\ud800 x", "label": "a"}\n'
                    '{"text": "a pair \\ud83d\\ude00 is one character", "label": "b"}\n'
                    '{"text": "fine", "label": "b", "note": "\\udc80"}\n')

    report = import_file(ctx, path, labeled=True)

    assert report.problems == [
        ("line 2", "text holds \\ud800, half of a surrogate pair and not a character: write the character itself, "
                   "or both halves of its \\u escape"),
        ("line 4", "note holds \\udc80, half of a surrogate pair and not a character: write the character itself, "
                   "or both halves of its \\u escape")]
    assert stored(ctx) == [("a pair \U0001f600 is one character", "b"), ("ok", "a")]


# -- 12. timestamps ------------------------------------------------------------------------------------


def test_case_12_timestamps_outside_the_documented_range_are_rejected_by_line(ctx):
    report = import_file(ctx, CORPUS / "timestamps.csv", labeled=True)

    outside = "is outside the accepted range: 2000-01-01 to 2099-12-31 (UTC)"
    assert report.problems == [
        ("line 3", f"ts '99999999999999999' (read as seconds since 1970-01-01 UTC) {outside}"),
        ("line 4", f"ts '-1' (read as seconds since 1970-01-01 UTC) {outside}"),
        ("line 5", f"ts '9999-12-31T23:59:59' {outside}"),
        ("line 6", f"ts '1999-12-31T23:59:59' {outside}"),
        ("line 10", "ts 'yesterday' is not a date-time: use ISO 8601, e.g. 2026-11-01T12:00:00"),
    ]
    with ctx.db.read() as con:
        assert con.execute("SELECT text, ts FROM labels ORDER BY text").fetchall() == [
            ("a date", datetime(2026, 2, 3)),
            ("unix seconds", datetime(2023, 11, 14, 22, 13, 20)),
            ("zoned", datetime(2025, 12, 31, 22, 30)),
            ("zulu", datetime(2026, 1, 1, 0, 30)),
        ]
