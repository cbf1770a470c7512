"""Writes the issue-12 files of this corpus (their bytes are the point, so they are generated, then committed).

Run from the project root: .venv/bin/python tests/data/imports/make_corpus.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def write(name: str, content: str | bytes, *, encoding: str = "utf-8") -> None:
    (HERE / name).write_bytes(content if isinstance(content, bytes) else content.encode(encoding))


def main() -> None:
    # Case 1: a spreadsheet in a European locale saves semicolon-separated CSV; texts hold commas.
    rows = [(f"Hallo, wo ist meine Bestellung {i}, bitte", "track_order") if i % 3 else
            (f"Ich möchte Nummer {i} stornieren, danke", "cancel_order") for i in range(300)]
    write("semicolon.csv", "text;label\r\n" + "".join(f"{t};{l}\r\n" for t, l in rows))
    write("tab.tsv", "text\tlabel\n" + "".join(f"where, is; order {i}\ttrack_order\n" for i in range(20)))
    write("pipe.csv", "text|label\n" + "".join(f"where, is; order {i}|track_order\n" for i in range(20)))
    write("no_text_any_delimiter.csv", "query;intent\nwhere is it;track_order\n")

    # Case 2: Windows-1252 (what Excel writes on a Western-European Windows), accents in a few rows, CRLF.
    cp = ["where is my order", "café au lait please", "naïve question about fees", "Grüße aus Köln",
          "price in € please", "plain text", "crème brûlée order", "another plain one"]
    write("cp1252.csv", "text,label\r\n" + "".join(f"{t},other\r\n" for t in cp), encoding="cp1252")
    # UTF-8 with real accents and one damaged line (line 4): that line only is rejected.
    write("utf8_one_bad_line.csv", "text,label\ncafé au lait,coffee\nnaïve question,other\n".encode()
          + b"bad \xff\xfe bytes,other\n" + "crème brûlée,dessert\n".encode())
    # UTF-16 with a BOM (what "Unicode text" exports write), tab-separated.
    write("utf16.tsv", "text\tlabel\r\ncafé au lait\tcoffee\r\nwhere is my order\ttrack_order\r\n".encode("utf-16"))

    # Case 3: headers with spaces and capitals; a header naming one column twice.
    write("header_spaces.csv", "text,predicted_label,confidence, label\nwhere is it,track_order,0.9,track_order\n"
                               "refund me,track_order,0.6,request_refund\n")
    write("header_capitals.csv", "Text, Label\nwhere is it,track_order\n")
    write("header_twice.csv", "text,Text ,label\nfirst,second,a\n")

    # Case 4: an unclosed quote on line 3 of a 7-line file; the same with a later quoted comma.
    write("unclosed_quote.csv", 'text,label\nwhere is my order,track_order\n"i want a refund,request_refund\n'
                                "cancel my plan,cancel_order\nreset my password,account_access\n"
                                "speak to a human,human_agent\nthanks a lot,thanks\n")
    write("unclosed_quote_then_comma.csv", 'text,label\nwhere is my order,track_order\n"i want a refund,request_refund\n'
                                           'cancel my plan,cancel_order\n"yes, please",confirm\n'
                                           "speak to a human,human_agent\n")
    # A row whose text holds an unquoted comma: 3 fields under a 2-column header.
    write("unquoted_comma.csv", "text,label\nwhere is my order, please,track_order\nfine,other\n")

    # Case 5: one label written four ways that print the same, and a look-alike.
    labels = ["track_order", "track\u200b_order", "\ufefftrack_order", "tr\u0430ck_order", "TRACK_ORDER "]
    write("lookalike_labels.jsonl", "".join(json.dumps({"text": f"where is my order {i}", "label": l}, ensure_ascii=False) + "\n"
                                            for i, l in enumerate(labels)))

    # Case 6: JSON labels that are not one text or number.
    write("nonscalar_labels.jsonl", "".join(line + "\n" for line in [
        '{"text": "a boolean", "label": true}',
        '{"text": "a list", "label": [1, 2]}',
        '{"text": "an object", "label": {"a": 1}}',
        '{"text": "too big a number", "label": 1e400}',
        '{"text": "a whole number", "label": 7}',
        '{"text": "a float that is whole", "label": 7.0}',
        '{"text": "a fraction", "label": 2.5}',
        '{"text": "a line break", "label": "track\\norder"}',
        '{"text": "not a number", "label": NaN}',
    ]))

    # Case 11: lines that used to raise: nesting 100,000 deep; a confidence of 5,000 digits.
    write("hostile.jsonl", "".join(line + "\n" for line in [
        json.dumps({"text": "fine", "predicted_label": "other", "confidence": 0.5}),
        '{"text": "deep", "predicted_label": "other", "confidence": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"text": "digits", "predicted_label": "other", "confidence": ' + "1" * 5000 + "}",
        '{"text": "duplicate key", "Text": "again", "predicted_label": "other", "confidence": 0.5}',
        json.dumps({"text": "also fine", "predicted_label": "other", "confidence": 0.7}),
    ]))
    write("digits.csv", "text,predicted_label,confidence\nfine,other,0.5\nmany digits,other," + "1" * 5000 + "\n")

    # Case 12: timestamps in and out of the accepted range.
    write("timestamps.csv", "text,label,ts\n"
                            "unix seconds,a,1700000000\n"
                            "huge number,a,99999999999999999\n"
                            "minus one,a,-1\n"
                            "year 9999,a,9999-12-31T23:59:59\n"
                            "year 1999,a,1999-12-31T23:59:59\n"
                            "zoned,a,2026-01-01T00:30:00+02:00\n"
                            "zulu,a,2026-01-01T00:30:00Z\n"
                            "a date,a,2026-02-03\n"
                            "words,a,yesterday\n")


if __name__ == "__main__":
    main()
