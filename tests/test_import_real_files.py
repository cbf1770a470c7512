"""Files written by real spreadsheet software from real text nobody here wrote (tests/data/imports/libreoffice).

LibreOffice Calc 7.4 opened a UTF-8 CSV of package descriptions (accents, CJK, Cyrillic, emoji, quotes,
commas, semicolons) and saved it as a European-locale CSV (semicolon, Windows-1252), as its default
CSV, as "Unicode" text (UTF-16, tabs), and as .xlsx then CSV again; a UTF-8 file with a byte-order
mark and CRLF stands for Excel's "CSV UTF-8". Each must import every row, text for text, and say how
it read the file. (Before issue 12 the semicolon and UTF-16 files were refused: "no 'text' column".)
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from engine.importer import import_file

FILES = Path(__file__).resolve().parent / "data" / "imports" / "libreoffice"


def source(name: str) -> list[tuple[str, str]]:
    with open(FILES / name, encoding="utf-8", newline="") as f:
        return sorted((text.strip(), label) for text, label in list(csv.reader(f))[1:])


@pytest.mark.parametrize("name, reference, encoding, dialect", [
    ("lo_semicolon_cp1252.csv", "source_western.csv", "cp1252", 'semicolon-separated, quote "'),
    ("lo_comma_utf8.csv", "source.csv", "utf-8", 'comma-separated, quote "'),
    ("lo_tab_utf16.tsv", "source.csv", "utf-16", 'tab-separated, quote "'),
    ("lo_xlsx_roundtrip.csv", "source.csv", "utf-8", 'comma-separated, quote "'),
    ("excel_style_bom_crlf.csv", "source.csv", "utf-8-sig", 'comma-separated, quote "'),
], ids=["calc-semicolon-cp1252", "calc-default", "calc-utf16-tab", "calc-xlsx-roundtrip", "excel-style-bom-crlf"])
def test_a_spreadsheet_saved_file_imports_every_row_as_written(ctx, name, reference, encoding, dialect):
    expected = source(reference)

    report = import_file(ctx, FILES / name, labeled=True)

    assert (report.rows, report.labels, report.rejected) == (len(expected), len(expected), 0)
    assert (report.encoding, report.dialect) == (encoding, dialect)
    with ctx.db.read() as con:
        assert sorted(con.execute("SELECT text, label FROM labels").fetchall()) == expected
    assert len(expected) == (78 if reference == "source_western.csv" else 117)
