"""Writes CSVs the way spreadsheets save them, from real text nobody here wrote (committed; rerun to rebuild).

Text: package descriptions from PyPI's index (as listed in /work/.library/env/packages/pypi.tsv on the
machine that built these files): accents, CJK, Cyrillic, emoji, quotes, commas and semicolons, as
their authors wrote them. Labels: a keyword of the text (sdk, mcp, cli, api, other).

- ``source.csv``: the rows, UTF-8, comma, written by Python's csv module (the input of the others);
- ``lo_*``: LibreOffice Calc (headless ``soffice --convert-to``) opening source.csv and saving it again:
  ``lo_semicolon_cp1252.csv`` (what Calc writes with a Western-European locale's ';' and Windows-1252),
  ``lo_comma_utf8.csv`` (Calc's default), ``lo_tab_utf16.tsv`` (Calc's "Unicode" text export);
  ``lo_xlsx_roundtrip.csv`` (saved as .xlsx by Calc, then that .xlsx saved as CSV by Calc);
- ``excel_style_bom_crlf.csv``: UTF-8 with a byte-order mark and CRLF line ends, as Excel's
  "CSV UTF-8" writes (written by Python: no Excel here).

Run from the project root with LibreOffice installed (apt-get install libreoffice-calc-nogui):
    .venv/bin/python tests/data/imports/libreoffice/make.py /work/.library/env/packages/pypi.tsv
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LABELS = (("sdk", "SDK"), ("mcp", "MCP"), ("cli", "CLI"), ("api", "API"))


def label_of(text: str) -> str:
    return next((label for label, word in LABELS if word in text), "other")


def pick(index: Path) -> list[tuple[str, str]]:
    western, other_scripts, punctuated = [], [], []
    with open(index, encoding="utf-8", errors="strict") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 5 or not parts[4].strip() or parts[4].strip() != parts[4]:
                continue
            text = parts[4]
            if re.search(r"[^\x00-\x7f]", text):
                try:
                    text.encode("cp1252")
                    western.append(text)
                except UnicodeEncodeError:
                    other_scripts.append(text)
            elif ('"' in text or ";" in text) and "," in text:
                punctuated.append(text)
    texts = list(dict.fromkeys(western[:60] + punctuated[:20] + other_scripts[:40]))
    return [(t, label_of(t)) for t in texts]


def soffice(source: Path, target_name: str, filter_spec: str, out: Path, *, infilter: str | None = None) -> Path:
    with tempfile.TemporaryDirectory() as work:
        args = ["soffice", "--headless", f"-env:UserInstallation=file://{work}/profile"]
        if infilter:
            args.append(f"--infilter={infilter}")
        args += ["--convert-to", filter_spec, "--outdir", work, str(source)]
        subprocess.run(args, check=True, capture_output=True, timeout=300)
        produced = next(p for p in Path(work).iterdir() if p.is_file())
        target = out / target_name
        shutil.copyfile(produced, target)
        return target


def main(index: Path) -> None:
    rows = pick(index)
    with open(HERE / "source.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    western = [(t, l) for t, l in rows if not re.search(r"[^\x00-\xff\u20ac\u2013\u2014\u2018\u2019\u201c\u201d\u2022\u2026]", t)]
    with open(HERE / "source_western.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows([(t, l) for t, l in western if _cp1252(t)])
    utf8_in = "CSV:44,34,76,1"
    calc = "Text - txt - csv (StarCalc)"
    soffice(HERE / "source_western.csv", "lo_semicolon_cp1252.csv", f"csv:{calc}:59,34,1,1", HERE, infilter=utf8_in)
    soffice(HERE / "source.csv", "lo_comma_utf8.csv", f"csv:{calc}:44,34,76,1", HERE, infilter=utf8_in)
    soffice(HERE / "source.csv", "lo_tab_utf16.tsv", f"csv:{calc}:9,34,65535,1", HERE, infilter=utf8_in)
    with tempfile.TemporaryDirectory() as work:
        xlsx = soffice(HERE / "source.csv", "roundtrip.xlsx", "xlsx", Path(work), infilter=utf8_in)
        soffice(xlsx, "lo_xlsx_roundtrip.csv", f"csv:{calc}:44,34,76,1", HERE)
    with open(HERE / "excel_style_bom_crlf.csv", "w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def _cp1252(text: str) -> bool:
    try:
        text.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


if __name__ == "__main__":
    main(Path(sys.argv[1]))
