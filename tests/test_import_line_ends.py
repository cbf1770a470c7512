"""Line ends, extensions and staging a tester found wrong: classic-Mac CSV (lines ending ``\\r`` alone),
what a ``\\r`` inside a field becomes, Excel's "Unicode text" export (``.txt``), and the staging folders of
a dead import when the next import is refused.

Each case asserts the exact rows stored, the exact report or message, and for the command line its exit code.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.context import Context
from engine.errors import InputError
from engine.importer import import_file
try:
    from engine.readers import cr_line_ends, swap_cr_lf
except ImportError:
    cr_line_ends = swap_cr_lf = None
from store.querylog import count_rows
from tests.conftest import run_cli


def stored(ctx: Context) -> list[tuple[str, str]]:
    with ctx.db.read() as con:
        return con.execute("SELECT text, label FROM labels ORDER BY text").fetchall()


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


# -- 1. lines ending with \r alone (classic Mac OS, old Excel for Mac) ----------------------------------


def test_a_classic_mac_csv_is_imported_from_the_command_line(tmp_path):
    path = write(tmp_path, "g1.csv", b"text,label\rG1 mac one,greetings\rG1 mac two,humor\r")

    result = run_cli("import", str(path), "--labeled", home=tmp_path / "home")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        '  read as utf-8 (the bytes are valid UTF-8; --encoding NAME overrides), comma-separated, quote ", '
        "lines end with \\r (classic Mac OS)",
        "  2 new labels: greetings, humor",
        f"{path}: 2 rows read, 2 labelled rows stored, 0 rejected",
    ]


def test_a_classic_mac_csv_keeps_its_line_numbers_quotes_and_code_page(ctx, tmp_path):
    """cp1252 bytes, a quoted text with a line break (a \\r in the file), a broken row at line 4, no final \\r."""
    content = 'text;label\r"caf\xe9 au lait, bitte";order\r"two\rlines";other\rone;two;three\rlast;order'
    path = write(tmp_path, "mac.csv", content.encode("cp1252"))

    report = import_file(ctx, path, labeled=True)

    assert (report.rows, report.labels, report.rejected) == (4, 3, 1)
    assert report.dialect == 'semicolon-separated, quote ", lines end with \\r (classic Mac OS)'
    assert report.problems == [("line 5", "3 field(s), but the header has 2: put a text that holds ';' in double "
                                          "quotes, and give every row all 2 columns")]
    assert stored(ctx) == [("café au lait, bitte", "order"), ("last", "order"), ("two\nlines", "other")]


@pytest.mark.parametrize("header_end, shown", [("\n", "\\n"), ("\r\n", "\\r\\n")], ids=["lf", "crlf"])
def test_rows_ending_with_cr_under_a_header_ending_otherwise_are_rejected_naming_the_line_ends(ctx, tmp_path,
                                                                                               header_end, shown):
    """Two files joined: the header's line end decides, and the rejection says why the fields do not add up."""
    path = write(tmp_path, "joined.csv", f"text,label{header_end}A one,b\rC two,d\r".encode())

    report = import_file(ctx, path, labeled=True)

    assert (report.rows, report.labels, report.rejected) == (1, 0, 1)
    assert report.problems == [(
        "line 2", "3 field(s), but the header has 2: put a text that holds ',' in double quotes, and give every row all "
                  f"2 columns (the line holds a \\r that does not end it: lines end as the header line ends, with {shown}; "
                  "save the file with one kind of line end)")]


@pytest.mark.parametrize("head, expected", [
    (b"text,label\rG1,a\r", True),
    (b"text,label", False),
    (b"text,label\r\nG1,a\r\n", False),
    (b"text,label\nG1\r,a\n", False),  # pandas: an unquoted \r inside a text of an LF file
    (b"text,label\r", True),
], ids=["mac", "one-line", "crlf", "lf-with-cr-in-a-text", "mac-header-only"])
def test_the_header_line_decides_whether_lines_end_with_cr_alone(tmp_path, head, expected):
    assert cr_line_ends(write(tmp_path, "f.csv", head)) is expected


def test_swap_cr_lf_swaps_only_those_two_bytes(tmp_path):
    path = write(tmp_path, "f.csv", b"a\rb\nc\r\n\xe9\x00")

    swapped = swap_cr_lf(path, tmp_path / "copy")

    assert swapped.read_bytes() == b"a\nb\rc\n\r\xe9\x00"


# -- 2. a \r inside a field: read as part of the field, stored as a space (README: CSV dialects) ------


@pytest.mark.parametrize("ending", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_a_cr_inside_a_field_is_kept_in_its_row_and_stored_as_a_space(ctx, tmp_path, ending):
    content = ending.join(["text,label", '"CRX1 one\r\ntwo",a', '"CRX2 x\ry",a', "CRX4 a\rb,a", ""])
    path = write(tmp_path, "cr.csv", content.encode())

    report = import_file(ctx, path, labeled=True)

    assert (report.rows, report.labels, report.rejected) == (3, 3, 0)
    assert stored(ctx) == [("CRX1 one \ntwo", "a"), ("CRX2 x y", "a"), ("CRX4 a b", "a")]


# -- 3. Excel's "Unicode text" export: UTF-16 LE with a byte-order mark, tabs, .txt --------------------


def test_excels_unicode_text_export_with_the_txt_extension_is_imported(ctx, tmp_path):
    content = "text\tlabel\r\nwhere is my parcel, please\ttrack_order\r\nRückerstattung bitte\trefund\r\n"
    path = write(tmp_path, "Book1.txt", b"\xff\xfe" + content.encode("utf-16-le"))

    report = import_file(ctx, path, labeled=True)

    assert (report.rows, report.labels, report.rejected) == (2, 2, 0)
    assert (report.encoding, report.encoding_how, report.dialect) == ("utf-16", "byte-order mark", 'tab-separated, quote "')
    assert stored(ctx) == [("Rückerstattung bitte", "refund"), ("where is my parcel, please", "track_order")]


def test_an_unknown_extension_is_refused_naming_every_accepted_one(tmp_path):
    path = write(tmp_path, "Book1.xlsx", b"PK\x03\x04")

    result = run_cli("import", str(path), "--labeled", home=tmp_path / "home")

    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == ("error: Book1.xlsx: unknown file type '.xlsx': use .csv, .tsv or .txt "
                                              "(delimited text), .jsonl or .ndjson (JSON Lines), or .parquet")


# -- 4. a dead import's staging folder is removed by the next import, even a refused one ------------------


def dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize("refusal", ["already-imported", "unknown-extension", "missing-file"])
def test_a_refused_import_removes_what_a_dead_import_staged(ctx, tmp_path, refusal):
    path = write(tmp_path, "small.csv", b"text,label\nhello,a\n")
    import_file(ctx, path, labeled=True)
    staged = ctx.settings.home / "imports"
    dead = staged / f"{dead_pid()}-0123456789ab"
    dead.mkdir(parents=True)
    (dead / "labels.parquet").write_bytes(b"staged rows")
    alive = staged / "1-live0000000"  # pid 1 is always running: its folder stays
    alive.mkdir()
    target = {"already-imported": path, "unknown-extension": write(tmp_path, "small.xlsx", b"x"),
              "missing-file": tmp_path / "missing.csv"}[refusal]

    with pytest.raises(InputError):
        import_file(ctx, target, labeled=True)

    assert sorted(p.name for p in staged.iterdir()) == ["1-live0000000"]
    assert count_rows(ctx.db) == {"queries": 0, "labels": 1}
