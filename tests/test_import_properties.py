"""Property-based tests of the importer (hypothesis) over generated CSV and JSON Lines files.

Invariants, whatever the rows:
- every input record is either stored exactly once or rejected, with the line it starts on;
- a refused file stores nothing (and the store keeps what it had);
- the command's exit code is the README's: 0 every row stored, 1 some rows rejected, 2 the file refused.

The expected outcome of each generated row comes from the README's rules, written out here
independently of the importer (:func:`expected_text`, :func:`expected_label`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import tempfile
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from engine.cli import main
from engine.config import load_settings
from engine.context import Context
from engine.errors import InputError
from engine.importer import import_file

CONTROL = re.compile(r"[\x01-\x08\x0b-\x1f\x7f-\x9f]")
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Texts with everything a CSV can trip on: delimiters, quotes, line breaks, controls, NUL, any script.
TEXTS = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30) | st.sampled_from(
    ["", "  ", 'say "hi", please', "a;b|c\td", "line one\nline two", "crlf\r\ninside", "\x00nul", "\u200b", "café"])
LABELS = st.sampled_from(["track_order", " Track_Order ", "track\u200b_order", "ｒｅｆｕｎｄ", "", "  ", "a\nb", "cancel"]) | \
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)
DELIMITERS = st.sampled_from([",", ";", "\t", "|"])
ENDINGS = st.sampled_from(["\n", "\r\n"])


def expected_text(text: str) -> str | None:
    """The stored text, or None if the row is rejected (README: Rows)."""
    if "\x00" in text:
        return None
    cleaned = CONTROL.sub(" ", text).strip()
    return cleaned or None


def expected_label(value) -> str | None:
    """The stored label, or None if the row is rejected (README: Labels)."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        return None
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        value = str(int(value)) if value == int(value) else repr(float(value))
    label = "".join(ch for ch in unicodedata.normalize("NFKC", value) if unicodedata.category(ch) != "Cf")
    label = label.strip().lower()
    if not label or any(unicodedata.category(ch) == "Cc" for ch in label) or len(label) > 200:
        return None
    return label


@contextlib.contextmanager
def fresh_home():
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def cli_import(home: Path, path: Path, *extra: str) -> int:
    """``python -m engine import PATH --labeled`` in this process; its exit code."""
    old = os.environ.get("RETRAINER_HOME")
    os.environ["RETRAINER_HOME"] = str(home / "home")
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return main(["import", str(path), "--labeled", *extra])
    finally:
        if old is None:
            del os.environ["RETRAINER_HOME"]
        else:
            os.environ["RETRAINER_HOME"] = old


def stored_pairs(home: Path) -> Counter:
    ctx = Context.open(load_settings(env={}, home=home / "home"))
    with ctx.db.read() as con:
        return Counter(con.execute("SELECT text, label FROM labels").fetchall())


def problem_lines(home: Path) -> set[int]:
    ctx = Context.open(load_settings(env={}, home=home / "home"))
    with ctx.db.read() as con:
        details = con.execute("SELECT details FROM events WHERE kind = 'import'").fetchone()[0]
    return {int(where.split()[1]) for where, _ in json.loads(details)["problems"]}


JUNK = {  # lines that break on their own, whatever follows them: (text, the delimiter-dependent width)
    "text-after-quote": lambda d: f'"quoted"then text{d}label',
    "three-fields": lambda d: f"one{d}two{d}three",
    "one-field": lambda d: "only a text",
}


def write_csv(rows, *, delimiter: str, ending: str, junk: list[tuple[int, str]]):
    """The file's text, the line each generated row starts on, and the junk lines' numbers."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=ending)
    writer.writerow(["text", "label"])
    starts, junk_lines = [], []
    junk_at = dict(junk)
    for i, row in enumerate(rows):
        if i in junk_at:
            junk_lines.append(out.getvalue().count("\n") + 1)
            out.write(JUNK[junk_at[i]](delimiter) + ending)
        starts.append(out.getvalue().count("\n") + 1)
        writer.writerow(row)
    return out.getvalue(), starts, junk_lines


@PROPERTY
@example(rows=[("0\r", "track_order")], delimiter=",", ending="\n", junk=[])  # a random draw: \r unquoted (case 4)
@example(rows=[("0\r", "a")], delimiter=",", ending="\n", junk=[(0, "text-after-quote")])  # was rejected {2, 3}
@given(rows=st.lists(st.tuples(TEXTS, LABELS), min_size=1, max_size=15), delimiter=DELIMITERS, ending=ENDINGS,
       junk=st.lists(st.tuples(st.integers(0, 14), st.sampled_from(sorted(JUNK))), max_size=3, unique_by=lambda j: j[0]))
def test_every_csv_record_is_stored_once_or_rejected_at_its_line(rows, delimiter, ending, junk):
    with fresh_home() as home:
        content, starts, junk_lines = write_csv(rows, delimiter=delimiter, ending=ending, junk=junk)
        path = home / "rows.csv"
        path.write_bytes(content.encode("utf-8"))

        code = cli_import(home, path)

        expected = Counter()
        rejected = set(junk_lines)
        for (text, label), line in zip(rows, starts):
            clean_text, clean_label = expected_text(text), expected_label(label)
            if clean_text is None or clean_label is None:
                rejected.add(line)
            else:
                expected[(clean_text, clean_label)] += 1
        assert stored_pairs(home) == expected
        assert problem_lines(home) == rejected
        assert code == (1 if rejected else 0)


@PROPERTY
@given(rows=st.lists(st.tuples(st.text(alphabet="abc xyz", min_size=1, max_size=10), st.sampled_from(["a", "b"])),
                     min_size=1, max_size=15),
       broken_at=st.integers(0, 14), delimiter=DELIMITERS)
def test_an_unclosed_quote_rejects_its_line_only(rows, broken_at, delimiter):
    """Rows after an unclosed quote are read as their own records, never glued into one."""
    broken_at = min(broken_at, len(rows))
    lines = ["text" + delimiter + "label"] + [f"{t}{delimiter}{l}" for t, l in rows]
    lines.insert(broken_at + 1, f'"never closed{delimiter}a')
    with fresh_home() as home:
        path = home / "rows.csv"
        path.write_text("\n".join(lines) + "\n")

        code = cli_import(home, path)

        assert stored_pairs(home) == Counter((t.strip(), l) for t, l in rows if t.strip())
        assert problem_lines(home) == {broken_at + 2} | {i + 2 + (i >= broken_at) for i, (t, _) in enumerate(rows)
                                                          if not t.strip()}
        assert code == 1


JSON_LABELS = LABELS | st.sampled_from([True, False, None, [1, 2], {"a": 1}, 7, 7.0, 2.5, float("inf"), -3])


@PROPERTY
@given(rows=st.lists(st.tuples(TEXTS, JSON_LABELS), min_size=1, max_size=15),
       junk=st.lists(st.tuples(st.integers(0, 14), st.sampled_from(['{"text": "x", ', "[1, 2]", '"just text"', ""])),
                     max_size=3, unique_by=lambda j: j[0]))
def test_every_jsonl_line_is_stored_once_or_rejected_at_its_line(rows, junk):
    lines, expected, rejected = [], Counter(), set()
    junk_at = dict(junk)
    for i, (text, label) in enumerate(rows):
        if i in junk_at:
            lines.append(junk_at[i])
            if junk_at[i]:  # a blank line is skipped, not rejected
                rejected.add(len(lines))
        lines.append(json.dumps({"text": text, "label": label}, ensure_ascii=False))
        clean_text, clean_label = expected_text(text), expected_label(label)
        if clean_text is None or clean_label is None:
            rejected.add(len(lines))
        else:
            expected[(clean_text, clean_label)] += 1
    with fresh_home() as home:
        path = home / "rows.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

        code = cli_import(home, path)

        assert stored_pairs(home) == expected
        assert problem_lines(home) == rejected
        assert code == (1 if rejected else 0)


@PROPERTY
@given(rows=st.lists(st.tuples(TEXTS, LABELS), min_size=1, max_size=10),
       header=st.sampled_from(["query,label", "text,Text,label", "text,label, TEXT", "Label,intent", ""]))
def test_a_refused_file_stores_nothing_and_exits_2(rows, header):
    with fresh_home() as home:
        first = home / "first.csv"
        first.write_text("text,label\nalready stored,kept\n")
        assert cli_import(home, first) == 0
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)
        path = home / "refused.csv"
        path.write_text((header + "\n" if header else "") + out.getvalue())

        code = cli_import(home, path)

        assert code == 2
        assert stored_pairs(home) == Counter({("already stored", "kept"): 1})


def test_the_properties_run_on_a_real_store():
    """The helpers above read what the importer wrote: one hand-made case, checked exactly."""
    with fresh_home() as home:
        path = home / "rows.csv"
        path.write_text("text,label\nhello,Greet\n,empty\n")
        assert cli_import(home, path) == 1
        assert stored_pairs(home) == Counter({("hello", "greet"): 1})
        assert problem_lines(home) == {3}
        ctx = Context.open(load_settings(env={}, home=home / "home"))
        with pytest.raises(InputError, match="Pass --again"):
            import_file(ctx, path, labeled=True)


# -- line ends, encodings and extensions a spreadsheet writes (classic Mac \r, UTF-16 .txt) ---------------

SWAP_CR_LF = str.maketrans({"\r": "\n", "\n": "\r"})


@PROPERTY
@example(rows=[("G1 mac one", "greetings"), ("G1 mac two", "humor")], delimiter=",", ending="\r", encoding="utf-8",
         suffix=".csv", junk=[])  # the tester's file: read as a header and no rows before
@example(rows=[("crlf\r\ninside", "a"), ("a\nb", "b")], delimiter="\t", ending="\r", encoding="utf-16", suffix=".txt",
         junk=[(1, "three-fields")])
@given(rows=st.lists(st.tuples(TEXTS, LABELS), min_size=1, max_size=15), delimiter=DELIMITERS,
       ending=st.sampled_from(["\n", "\r\n", "\r"]), encoding=st.sampled_from(["utf-8", "utf-16", "cp1252"]),
       suffix=st.sampled_from([".csv", ".tsv", ".txt"]),
       junk=st.lists(st.tuples(st.integers(0, 14), st.sampled_from(sorted(JUNK))), max_size=3, unique_by=lambda j: j[0]))
def test_every_record_is_stored_once_or_rejected_whatever_the_line_ends_and_encoding(rows, delimiter, ending, encoding,
                                                                                    suffix, junk):
    """Rows in = rows stored + rows rejected at their line, for LF, CRLF and classic-Mac CR files, in UTF-8,
    UTF-16 (with its byte-order mark, as Excel's "Unicode text") or cp1252, named .csv, .tsv or .txt.

    In a file whose lines end with \\r, a \\r inside a text is a line break of that text (stored as \\n) and
    a \\n is a character of its field (stored, like every control character but tab and newline, as a space).
    """
    if encoding == "cp1252":  # only texts cp1252 can write (and no controls it maps to other characters)
        rows = [(text.encode("cp1252", "ignore").decode("cp1252"), label.encode("cp1252", "ignore").decode("cp1252"))
                for text, label in rows]
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=ending)
    writer.writerow(["text", "label"])
    breaks = "\r" if ending == "\r" else "\n"
    starts, rejected = [], set()
    junk_at = dict(junk)
    for i, row in enumerate(rows):
        if i in junk_at:
            rejected.add(out.getvalue().count(breaks) + 1)
            out.write(JUNK[junk_at[i]](delimiter) + ending)
        starts.append(out.getvalue().count(breaks) + 1)
        writer.writerow(row)
    expected = Counter()
    for (text, label), line in zip(rows, starts):
        if ending == "\r":
            text, label = text.translate(SWAP_CR_LF), label.translate(SWAP_CR_LF)
        clean_text, clean_label = expected_text(text), expected_label(label)
        if clean_text is None or clean_label is None:
            rejected.add(line)
        else:
            expected[(clean_text, clean_label)] += 1
    with fresh_home() as home:
        path = home / f"rows{suffix}"
        path.write_bytes(out.getvalue().encode(encoding))

        code = cli_import(home, path, "--encoding", encoding)

        assert stored_pairs(home) == expected
        assert problem_lines(home) == rejected
        assert code == (1 if rejected else 0)


@PROPERTY
@example(body=b"G1 mac one,greetings\rG1 mac two,humor\r", ending=b"\r")
@given(body=st.binary(max_size=300) | st.lists(st.sampled_from([b"a", b",", b'"', b"\r", b"\n", b"\r\n", b"\xe9", b"\x00",
                                                                 b"\xff\xfe", b"  ", b";"]), max_size=60).map(b"".join),
       ending=st.sampled_from([b"\n", b"\r\n", b"\r"]))
def test_hostile_bytes_never_lose_a_row_silently(body, ending):
    """Whatever follows the header: the file is refused with nothing stored (exit 2), or every row read is
    stored or rejected with a reason (the import event's counts, and the store's)."""
    with fresh_home() as home:
        path = home / "hostile.csv"
        path.write_bytes(b"text,label" + ending + body)

        code = cli_import(home, path)

        ctx = Context.open(load_settings(env={}, home=home / "home"))
        with ctx.db.read() as con:
            details = json.loads(con.execute("SELECT details FROM events WHERE kind = 'import'").fetchone()[0])
            stored = con.execute("SELECT count(*) FROM labels").fetchone()[0]
        if code == 2:
            assert (details["refused"], stored) == (True, 0)
            return
        assert details["rows"] == details["labels"] + details["rejected"] == stored + details["rejected"]
        assert len(details["problems"]) == min(details["rejected"], 20)
        assert all(reason for _, reason in details["problems"])
        assert code == (1 if details["rejected"] else 0)
