"""Reading import files as a stream of rows, whatever their dialect and encoding, in bounded memory.

Three formats, by extension: delimited text (``.csv``, ``.tsv``, ``.txt``: Excel's "Unicode text"
export is tab-separated UTF-16 named ``.txt``), JSON Lines (``.jsonl``, ``.ndjson``) and
Parquet (``.parquet``). A reader yields :class:`Row` items one at a time: the place in the file
(``"line 7"`` for text files, the first line of the record; ``"row 7"`` for Parquet), the values
by normalised column name, or the reason the record cannot be read.

Libraries, and why:

- **Encoding**: a byte-order mark decides; otherwise strict UTF-8 over samples of the file
  (its first MiB and three 64 KiB pieces spread over the rest) decides; otherwise
  ``charset-normalizer`` chooses. Its guesses tie often on mostly-ASCII files (cp1250, cp1252,
  cp1257 read ``café`` alike), so the Windows code pages spreadsheets write are tried first,
  and a tie goes to the first of :data:`PREFERRED_CODE_PAGES` (cp1252 first). ``--encoding``
  overrides all of this. UTF-16 and UTF-32 files are converted to a UTF-8 copy first.
- **CSV dialect**: ``clevercsv``'s sniffer chooses the delimiter; quoting is RFC 4180's (``"``,
  doubled inside a quoted field), whatever the sample suggests. The sniffer read every
  spreadsheet variant we tried where DuckDB's sniffer and Python's ``csv.Sniffer`` each got one
  wrong (a semicolon file whose texts hold commas; a pipe file). The header decides between
  candidates: the dialect must give a ``text`` column. Records are split by Python's ``csv``
  module in strict mode, fed one physical line at a time. Lines end as the header line ends
  (``\r\n`` or ``\n``); a ``\r`` anywhere else is a character of its field, quoted or not
  (pandas writes it unquoted). A file whose lines end with ``\r`` alone (classic Mac OS, old
  Excel for Mac) is read from a copy with ``\r`` and ``\n`` swapped (:func:`cr_line_ends`,
  :func:`swap_cr_lf`): its ``\r`` end the lines, and a ``\n`` in it is a character of its field.
- **Parquet**: ``pyarrow.parquet.ParquetFile.iter_batches`` (one row group in memory at a time).
- **Speed**: :meth:`CsvReader.batches` splits the well-formed lines of a 4 MiB chunk with
  ``pyarrow.compute`` (``split_pattern``; ``extract_regex``, RE2, for lines with quotes) and
  leaves every other line to the ``csv`` module; Parquet batches stay pyarrow columns.

Memory: a physical line longer than ``max_record_bytes`` is never held (it is skipped in 1 MiB
pieces and reported), a record spanning lines is bounded by the same limit, CSV is read
:data:`CHUNK_BYTES` at a time, and Parquet in batches of :data:`PARQUET_BATCH` rows.

Broken CSV quoting: a quote that is never closed, or closed and followed by anything but a
delimiter or the line's end, makes the record unreadable: it is reported at the line where it
starts and reading resumes on the next line, so no row is ever built from several records.
A quote closed later *before a delimiter* makes a valid multi-line field: CSV cannot tell that
from a text with line breaks.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import logging
import os
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from engine.errors import InputError

log = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
ACCEPTED = ".csv, .tsv or .txt (delimited text), .jsonl or .ndjson (JSON Lines), or .parquet"
"""The extensions :data:`FORMATS` reads, as a refusal names them."""
COLUMNS = ("text", "label", "predicted_label", "confidence", "ts")
PREFERRED_CODE_PAGES = ("cp1252", "cp1250", "cp1251", "cp1253", "cp1254", "cp1257", "cp1255", "cp1256", "cp1258")
DELIMITERS = (",", ";", "\t", "|")
_BAD_RUN = re.compile("[\udc80-\udcff]+")
SAMPLE_HEAD = 1 << 20
SAMPLE_PIECE = 64 << 10
SKIP_PIECE = 1 << 20
PARQUET_BATCH = 20_000
JSON_BATCH = 20_000
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass(frozen=True)
class Row:
    """One record: where it is, its values by column (None if unreadable) and why it is unreadable."""

    where: str
    values: dict[str, Any] | None
    problem: str | None = None


def column_name(raw: Any) -> str:
    """A header name as the importer reads it: NFKC, format characters removed, trimmed, lower-case,
    runs of spaces and hyphens as one underscore.

    >>> column_name(" Predicted Label"), column_name("\\ufeffText"), column_name("TS")
    ('predicted_label', 'text', 'ts')
    """
    text = unicodedata.normalize("NFKC", str(raw))
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf").strip().lower()
    return re.sub(r"[\s\-]+", "_", text)


def header_columns(raw_names: list[Any], *, path: Path) -> tuple[dict[int, str], list[str]]:
    """(position -> column for the columns read, the raw names ignored). Refuses a missing text column
    and two columns that read as the same one."""
    names = [column_name(n) for n in raw_names]
    if not any(names):
        raise InputError(f"{path} is empty: it needs a header with a 'text' column and, as available, "
                         f"{', '.join(COLUMNS[1:])}")
    used: dict[int, str] = {}
    seen: dict[str, Any] = {}
    for position, (raw, name) in enumerate(zip(raw_names, names)):
        if name not in COLUMNS:
            continue
        if name in seen:
            raise InputError(
                f"{path}: columns {seen[name]!r} and {raw!r} both read as {name!r} (names are compared trimmed "
                "and lower-cased): rename or remove one of them")
        seen[name] = raw
        used[position] = name
    if "text" not in seen:
        raise InputError(f"{path} has no 'text' column (columns found: {', '.join(map(str, raw_names))}); "
                         "rename the query column to 'text'")
    ignored = [str(raw) for raw, name in zip(raw_names, names) if name not in COLUMNS]
    return used, ignored


# -- encodings ---------------------------------------------------------------------------------


def _samples(path: Path, size: int) -> list[bytes]:
    with open(path, "rb") as f:
        pieces = [f.read(SAMPLE_HEAD)]
        if size > SAMPLE_HEAD + 3 * SAMPLE_PIECE:
            for share in (0.25, 0.5, 0.75):
                f.seek(int(size * share))
                pieces.append(f.read(SAMPLE_PIECE))
    return pieces


def _is_utf8(piece: bytes, *, first: bool) -> bool:
    if not first:  # a piece from the middle may start inside a character: skip its continuation bytes
        piece = piece.lstrip(bytes(range(0x80, 0xC0)))[:]
    try:
        codecs.getincrementaldecoder("utf-8")().decode(piece, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _utf8_evidence(samples: list[bytes]) -> tuple[int, int]:
    """(non-ASCII characters that decode as UTF-8, runs of bytes that do not) in the samples.

    Text in a single-byte code page almost never forms valid UTF-8 sequences by chance, so a
    file with more of the first than the second is UTF-8 with a few damaged lines (rejected
    one by one), not a file in another encoding.
    """
    valid = invalid = 0
    for i, piece in enumerate(samples):
        if i:
            piece = piece.lstrip(bytes(range(0x80, 0xC0)))
        text = piece.decode("utf-8", errors="surrogateescape")
        valid += sum(1 for ch in text if ch >= "\x80" and not "\udc80" <= ch <= "\udcff")
        invalid += len(_BAD_RUN.findall(text))
    return valid, invalid


def detect_encoding(path: Path, *, size: int) -> tuple[str, str]:
    """(Python codec name, how it was chosen) for the file's bytes; raises InputError if nothing fits."""
    samples = _samples(path, size)
    head = samples[0]
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name, "byte-order mark"
    if all(_is_utf8(piece, first=i == 0) for i, piece in enumerate(samples)):
        return "utf-8", "the bytes are valid UTF-8"
    valid, invalid = _utf8_evidence(samples)
    if valid > invalid:
        return "utf-8", f"mostly valid UTF-8 ({valid:,} characters beyond ASCII, {invalid:,} places that are not UTF-8)"
    from charset_normalizer import from_bytes

    data = b"\n".join(samples)
    for isolation in (list(PREFERRED_CODE_PAGES), None):
        matches = list(from_bytes(data, cp_isolation=isolation))
        if not matches:
            continue
        best = min(m.chaos for m in matches)
        tied = [m for m in matches if m.chaos == best]
        fits = {enc for m in tied for enc in [m.encoding, *m.could_be_from_charset]}
        choice = next((cp for cp in PREFERRED_CODE_PAGES if cp in fits), tied[0].encoding)
        return choice, "guessed by charset-normalizer (the bytes are not UTF-8)"
    raise InputError(f"{path.name}: cannot tell its encoding (it is not UTF-8): save it as UTF-8, "
                     "or name the encoding with --encoding (e.g. cp1252)")


def check_encoding(name: str) -> str:
    """A text encoding Python knows, or InputError.

    Python also knows codecs that are not text encodings (rot13, base64, zlib: bytes to bytes or str to
    str); they are refused here, as the ones it does not know.
    """
    try:
        info = codecs.lookup(name)
    except LookupError as exc:
        raise InputError(f"unknown encoding {name!r}: use a name Python knows, e.g. utf-8, cp1252, latin-1, "
                         "utf-16, shift_jis") from exc
    if not getattr(info, "_is_text_encoding", True):  # codecs.CodecInfo marks the non-text codecs so
        raise InputError(f"{name!r} is a codec for other transformations, not a text encoding: use a text encoding, e.g. "
                         "utf-8, cp1252, latin-1, utf-16, shift_jis")
    return info.name


def transcode_to_utf8(path: Path, encoding: str, target: Path) -> Path:
    """Copy a UTF-16/32 file as UTF-8 (streamed), for the line-based readers.

    Raises InputError when the file cannot be read in ``encoding`` at all (plain "utf-16" needs a byte
    order mark; a file without one is utf-16-le or utf-16-be).
    """
    try:
        with open(path, "r", encoding=encoding, errors="surrogateescape", newline="") as src, \
                open(target, "w", encoding="utf-8", errors="surrogateescape", newline="") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    except UnicodeError as exc:
        raise InputError(f"{path.name} cannot be read as {encoding} ({exc}): name its real encoding with --encoding "
                         "(utf-16-le or utf-16-be for UTF-16 without a byte order mark), or leave --encoding out "
                         "to have it detected") from exc
    return target


def cr_line_ends(path: Path) -> bool:
    """True when the file's lines end with ``\r`` alone (classic Mac OS; old Excel for Mac saves CSV so).

    The header's line decides, as it decides between ``\r\n`` and ``\n``: the file's first line
    break is a ``\r`` not followed by ``\n``. Read from its first MiB, as bytes of an
    ASCII-compatible encoding (UTF-16/32 files are converted to UTF-8 first).
    """
    with open(path, "rb") as f:
        head = f.read(SAMPLE_HEAD)
    cr, lf = head.find(b"\r"), head.find(b"\n")
    return cr >= 0 and (lf < 0 or cr + 1 < lf)


_SWAP_CR_LF = bytes.maketrans(b"\r\n", b"\n\r")


def swap_cr_lf(path: Path, target: Path) -> Path:
    """Copy a file with its ``\r`` and ``\n`` bytes swapped (streamed), for a file whose lines end with ``\r``.

    Line numbers stay those of the file; a ``\n`` inside a line becomes a ``\r``, a character of its
    field. Only for ASCII-compatible encodings (where the bytes 0x0D and 0x0A are always those
    characters): UTF-16 and UTF-32 files are converted to UTF-8 first.
    """
    with open(path, "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk.translate(_SWAP_CR_LF))
    return target


ASCII_COMPATIBLE_SPLIT = re.compile(r"^(utf[-_]?(16|32))", re.IGNORECASE)


def needs_transcoding(encoding: str) -> bool:
    """UTF-16 and UTF-32 cannot be split at b'\\n': they are converted to UTF-8 first."""
    return bool(ASCII_COMPATIBLE_SPLIT.match(codecs.lookup(encoding).name))


# -- physical lines ----------------------------------------------------------------------------


class LineTooLong(Exception):
    """A physical line over the limit; it has been skipped."""


class Lines:
    """Decoded physical lines of a binary file with their numbers and byte offsets, each at most
    ``limit`` bytes; a longer line is skipped in pieces and raises :class:`LineTooLong`.

    Decoding errors become lone surrogates (``surrogateescape``), found later per row.
    """

    def __init__(self, f: BinaryIO, *, encoding: str, limit: int):
        self.f = f
        self.encoding = encoding
        self.limit = limit
        self.number = 0        # lines read so far
        self.offset = f.tell()  # byte offset of the next line

    def __iter__(self) -> "Lines":
        return self

    def __next__(self) -> str:
        raw = self.f.readline(self.limit + 1)
        if not raw:
            raise StopIteration
        self.number += 1
        self.offset += len(raw)
        if len(raw) > self.limit and not raw.endswith(b"\n"):
            while True:
                piece = self.f.readline(SKIP_PIECE)
                self.offset += len(piece)
                if not piece or piece.endswith(b"\n"):
                    break
            raise LineTooLong(self.number)
        return raw.decode(self.encoding, errors="surrogateescape")

    def seek(self, *, offset: int, number: int) -> None:
        """Go back to the start of line ``number + 1``, at byte ``offset``."""
        self.f.seek(offset)
        self.offset = offset
        self.number = number


_CR_MARK = "\ud800"  # a lone high surrogate: decoding never makes one (surrogateescape makes U+DC80-U+DCFF)


class _CsvLines:
    """Physical lines for the ``csv`` module, with every carriage return that does not end its line
    kept as data.

    Lines end the way the file's first line (the header) ends: at ``\r\n`` in a file whose
    header ends so, otherwise at ``\n``. A ``\r`` anywhere else is a character of its field,
    quoted or not: ``pandas.DataFrame.to_csv`` and Python's ``csv.writer`` (line terminator
    ``\n``) write ``0\r,label`` and ``text,label\r`` unquoted, and the ``csv`` module alone
    would refuse the first ("new-line character seen in unquoted field") and cut the ``\r``
    off the second. Such a ``\r`` passes through the ``csv`` module as :data:`_CR_MARK` and
    :meth:`restore` puts it back.
    """

    def __init__(self, lines: Lines):
        self.lines = lines
        self.crlf: bool | None = None  # the header's line ending, once read
        self.marked = False  # a \r was replaced since the last restore()

    def __iter__(self) -> "_CsvLines":
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        if self.crlf is None:
            self.crlf = line.endswith("\r\n")
        if "\r" not in line:
            return line
        if self.crlf and line.endswith("\r\n"):
            end = "\r\n"
        elif line.endswith("\n"):
            end = "\n"
        else:  # the last line, without a line break
            end = "\r" if self.crlf and line.endswith("\r") else ""
        body = line[: len(line) - len(end)]
        if "\r" not in body:
            return line
        self.marked = True
        return body.replace("\r", _CR_MARK) + end

    def restore(self, fields: list[str]) -> list[str]:
        """A record's fields with their carriage returns back."""
        if not self.marked:
            return fields
        self.marked = False
        return [value.replace(_CR_MARK, "\r") for value in fields]


# -- readers -----------------------------------------------------------------------------------


@dataclass
class Source:
    """What a reader found out about the file before its rows: shown in the report."""

    kind: str
    encoding: str = ""
    encoding_how: str = ""
    dialect: str = ""
    ignored_columns: list[str] = field(default_factory=list)
    bytes_read: int = 0


CHUNK_BYTES = 4 << 20  # CsvReader.batches reads this many bytes at a time


@dataclass
class RowBatch:
    """Records of a file in file order, in two parts.

    ``numbers`` and ``columns``: records read as columns (``numbers[i]`` is the line, or Parquet row,
    of the values ``columns[name][i]``, pyarrow arrays); ``rows``: records read one at a time
    (:class:`Row`, problems included). ``kind`` names the places: ``"line"`` or ``"row"``.
    """

    kind: str = "line"
    numbers: Any = None
    columns: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)

    def __len__(self) -> int:
        return (0 if self.numbers is None else len(self.numbers)) + len(self.rows)


def _record_pattern(delimiter: str, width: int) -> str:
    """An RE2 pattern that matches a line holding exactly one well-formed record of ``width`` fields,
    one capture group a field: unquoted (no quote, delimiter, \\r, \\n or NUL) or quoted and closed on
    the line (quotes inside doubled). The ``csv`` module reads every such line to the same fields."""
    d = re.escape(delimiter) if delimiter != "\t" else r"\t"
    one = rf'[^"{d}\r\n\x00]*|"(?:[^"\r\n\x00]|"")*"'
    return r"\A" + d.join(f"(?P<f{i}>{one})" for i in range(width)) + r"\z"


def _mask(array: Any) -> Any:
    """A pyarrow boolean array as numpy, null as False."""
    import pyarrow.compute as pc

    return pc.fill_null(array, False).to_numpy(zero_copy_only=False)


def _unquote(values: Any) -> Any:
    """Fields matched by :func:`_record_pattern`: a quoted one loses its quotes and its doubled quotes."""
    import pyarrow.compute as pc

    quoted = pc.starts_with(values, '"')
    if not pc.any(quoted).as_py():
        return values
    inner = pc.replace_substring(pc.utf8_slice_codeunits(values, 1, -1), '""', '"')
    return pc.if_else(quoted, inner, values)


def _chunk_decodable(encoding: str) -> bool:
    """True when decoding a chunk of lines at once gives the lines decoded one by one: UTF-8, and
    single-byte code pages."""
    name = codecs.lookup(encoding).name
    if name in ("utf-8", "utf-8-sig"):
        return True
    return len(bytes(range(256)).decode(name, errors="replace")) == 256


def _split_lines(chunk: bytes) -> tuple[Any, Any]:
    """(the chunk's lines without their line breaks as a pyarrow binary array, each line's byte offset
    in the chunk as numpy int64). The last line may lack its line break."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    data = chunk if chunk.endswith(b"\n") else chunk + b"\n"
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    bounds = np.concatenate(([0], ends + 1)).astype(np.int32)
    with_breaks = pa.BinaryArray.from_buffers(pa.binary(), len(ends), [None, pa.py_buffer(bounds), pa.py_buffer(data)])
    return pc.binary_slice(with_breaks, 0, -1), bounds[:-1].astype(np.int64)


def _text_lines(raw: Any, chunk: bytes, encoding: str) -> Any:
    """The lines ``raw`` (split from ``chunk`` by :func:`_split_lines`) as pyarrow text, or None when
    some of their bytes are not valid in the encoding."""
    import pyarrow as pa

    if codecs.lookup(encoding).name not in ("utf-8", "utf-8-sig"):
        try:
            lines = _split_lines(chunk.decode(encoding).encode("utf-8"))[0]
        except UnicodeDecodeError:
            return None
        if len(lines) != len(raw):  # a code page whose line break is not the byte 0x0A (EBCDIC)
            return None
        raw = lines
    try:
        return raw.cast(pa.string())
    except pa.ArrowInvalid:
        return None


class CsvReader:
    """Rows of a CSV file (see the module docstring for dialects, encodings and broken quotes)."""

    def __init__(self, f: BinaryIO, *, path: Path, encoding: str, limit: int, source: Source, max_text_length: int):
        self.f = f
        self.path = path
        self.limit = limit
        self.too_long = _too_long_message(limit, max_text_length)
        self.source = source
        self.lines = Lines(f, encoding=encoding, limit=limit)
        self.dialect = self._sniff(encoding)
        csv.field_size_limit(max(csv.field_size_limit(), limit))
        self.csv_lines = _CsvLines(self.lines)
        self.reader = csv.reader(self.csv_lines, dialect=self.dialect)
        self.columns = self._header()

    def _sniff(self, encoding: str) -> type[csv.Dialect]:
        start = self.f.tell()
        sample = self.f.read(SAMPLE_PIECE)
        self.f.seek(start)
        text = sample.decode(encoding, errors="replace")
        if len(sample) == SAMPLE_PIECE and "\n" in text:
            text = text[: text.rindex("\n") + 1]
        first = next((line for line in text.splitlines() if line.strip()), "")
        sniffed = None
        try:
            import clevercsv

            sniffed = clevercsv.Sniffer().sniff(text, delimiters=list(DELIMITERS))
        except Exception as exc:  # clevercsv raises its own Error and, on odd samples, others
            log.debug("clevercsv could not sniff %s: %s", self.path, exc)
        candidates = [sniffed.delimiter] if sniffed and sniffed.delimiter in DELIMITERS else []
        candidates += [d for d in DELIMITERS if d not in candidates]
        # RFC 4180 quoting, whatever the sniffer guesses: a sample full of apostrophes ("don't") must not
        # make ' a quote, nor a path ("C:\\new") make \\ an escape.
        quote, escape = '"', None
        chosen = candidates[0]
        for delimiter in candidates:
            row = next(csv.reader([first], delimiter=delimiter, quotechar=quote), [])
            if "text" in {column_name(n) for n in row}:
                chosen = delimiter
                break

        class Dialect(csv.Dialect):
            delimiter = chosen
            quotechar = quote
            escapechar = escape
            doublequote = True
            skipinitialspace = False
            lineterminator = "\n"
            quoting = csv.QUOTE_MINIMAL
            strict = True

        names = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
        self.source.dialect = f"{names[chosen]}-separated, quote {quote}"
        return Dialect

    def _header(self) -> dict[int, str]:
        while True:
            try:
                row = next(self.reader)
            except StopIteration:
                raise InputError(f"{self.path} is empty: it needs a header with a 'text' column and, as available, "
                                 f"{', '.join(COLUMNS[1:])}") from None
            except (csv.Error, LineTooLong) as exc:
                raise InputError(f"{self.path.name}: its header (line {self.lines.number}) cannot be read ({exc}): "
                                 "the first line must name the columns, e.g. text,label") from exc
            if row:
                break
        row = self.csv_lines.restore(row)
        if any(_has_surrogates(name) for name in row):
            raise InputError(f"{self.path.name}: its header is not valid {self.source.encoding}: "
                             "save the file as UTF-8 or name its encoding with --encoding")
        used, ignored = header_columns(row, path=self.path)
        self.width = len(row)
        self.source.ignored_columns = ignored
        self.header = row
        return used

    def __iter__(self) -> Iterator[Row]:
        while (rows := self._next_record()) is not None:
            yield from rows

    def _next_record(self) -> list[Row] | None:
        """The next record, read by the ``csv`` module: ``[]`` for a blank line, ``[row]``, or None at the end."""
        start_number, start_offset = self.lines.number, self.lines.offset
        try:
            record = next(self.reader)
        except StopIteration:
            return None
        except LineTooLong as exc:
            return list(self._too_long(start_number, start_offset, int(str(exc))))
        except csv.Error as exc:
            return list(self._broken(start_number, start_offset, str(exc)))
        finally:
            self.source.bytes_read = self.lines.offset
        if not record:
            return []  # a blank line
        record = self.csv_lines.restore(record)
        where = f"line {start_number + 1}"
        if len(record) != self.width:
            if len(record) == 1 and not record[0].strip():
                return []  # a line of spaces
            return [Row(where, None, self._width_problem(len(record), carriage_return=any("\r" in v for v in record)))]
        return [Row(where, {name: record[i] for i, name in self.columns.items()})]

    def batches(self) -> Iterator[RowBatch]:
        """The records, a chunk of about :data:`CHUNK_BYTES` at a time (the same rows and problems as
        iterating the reader).

        A line that is one well-formed record (the header's number of fields, each unquoted or
        quoted and closed on the line, no ``\r`` or NUL inside, within the line limit) is split
        with the others of its chunk at its delimiters (``pyarrow.compute.split_pattern``), or,
        when it holds a quote, by one regular expression (:func:`_record_pattern`, RE2); every
        other line starts a record read by the ``csv`` module, exactly as :meth:`__iter__`.
        A chunk with bytes that are not valid in the encoding is read by the ``csv`` module whole.
        """
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        pattern = _record_pattern(self.dialect.delimiter, self.width)
        fast_codec = _chunk_decodable(self.lines.encoding)
        while True:
            offset, number = self.lines.offset, self.lines.number
            self.f.seek(offset)
            chunk = self.f.read(CHUNK_BYTES)
            if not chunk:
                return
            end = len(chunk) if len(chunk) < CHUNK_BYTES else chunk.rfind(b"\n") + 1  # whole lines only
            if end == 0:  # one line longer than a chunk: far over the line limit, reported as such
                self.lines.seek(offset=offset, number=number)
                yield RowBatch(rows=self._next_record() or [])
                continue
            chunk = chunk[:end]
            raw, starts = _split_lines(chunk)
            n = len(raw)
            sizes = pc.binary_length(raw).to_numpy(zero_copy_only=False).astype(np.int64)  # bytes, without the line break
            lines = _text_lines(raw, chunk, self.lines.encoding) if fast_codec else None
            if lines is None:
                yield RowBatch(rows=self._slow_until(offset=offset, number=number, end=offset + end))
                continue
            starts += offset
            body = pc.replace_substring_regex(lines, r"\r\z", "") if self.csv_lines.crlf else lines
            blank = pc.equal(body, "").to_numpy(zero_copy_only=False)
            quoted = pc.match_substring(body, '"').to_numpy(zero_copy_only=False)
            delimiters = pc.count_substring(body, self.dialect.delimiter).to_numpy(zero_copy_only=False)
            plain = ~quoted & (delimiters == self.width - 1) & ~_mask(pc.match_substring_regex(body, r"[\r\x00]"))
            fast = plain & (sizes <= self.limit) & ~blank
            fields = None
            if quoted.any():
                fields = pc.extract_regex(pc.if_else(pa.array(quoted), body, pa.scalar(None, pa.string())), pattern)
                fast |= _mask(fields.is_valid()) & (sizes <= self.limit)
            if self.lines.encoding == "utf-8-sig":  # the csv module's lines are decoded one by one: a BOM is cut
                fast &= ~_mask(pc.starts_with(body, "\ufeff"))
            rows: list[Row] = []
            resume = 0  # the first line not read yet as part of a record read by the csv module
            for i in np.flatnonzero(~fast & ~blank):
                if i < resume:
                    continue
                self.lines.seek(offset=int(starts[i]), number=number + int(i))
                got = self._next_record()
                if got is None:
                    break
                rows += got
                resume = self.lines.number - number
                fast[i:resume] = False
            if resume > n:  # a record that began in this chunk ended after it
                next_offset, next_number = self.lines.offset, self.lines.number
            else:
                next_offset, next_number = offset + end, number + n
            keep = np.flatnonzero(fast)
            taken = pa.array(keep)
            pieces = pc.split_pattern(body.take(taken), self.dialect.delimiter)
            offsets = pieces.offsets.to_numpy()
            flat = pc.list_flatten(pieces)
            quoted_kept = quoted[keep]
            inside = fields.take(taken) if fields is not None and quoted_kept.any() else None
            columns = {}
            for position, name in sorted(self.columns.items()):
                values = flat.take(pa.array(offsets[:-1] - offsets[0] + position))
                if inside is not None:
                    values = pc.if_else(pa.array(quoted_kept), _unquote(pc.struct_field(inside, [position])), values)
                columns[name] = values
            self.lines.seek(offset=next_offset, number=next_number)
            self.source.bytes_read = next_offset
            yield RowBatch(numbers=number + 1 + keep, columns=columns, rows=rows)

    def _slow_until(self, *, offset: int, number: int, end: int) -> list[Row]:
        """Every record starting before byte ``end``, read by the csv module."""
        self.lines.seek(offset=offset, number=number)
        rows: list[Row] = []
        while self.lines.offset < end:
            got = self._next_record()
            if got is None:
                break
            rows += got
        return rows

    def _width_problem(self, got: int, *, carriage_return: bool = False) -> str:
        """Why a record of ``got`` fields is rejected; ``carriage_return``: it holds a \r that does not end a line,
        as when rows end with \r alone under a header ending otherwise (files of two kinds of line end joined)."""
        delimiter = {",": "','", ";": "';'", "\t": "a tab", "|": "'|'"}[self.dialect.delimiter]
        problem = (f"{got} field(s), but the header has {self.width}: put a text that holds {delimiter} "
                   f"in double quotes, and give every row all {self.width} columns")
        if carriage_return:
            ending = "\\r\\n" if self.csv_lines.crlf else "\\n"
            problem += (f" (the line holds a \\r that does not end it: lines end as the header line ends, with {ending}; "
                        "save the file with one kind of line end)")
        return problem

    def _broken(self, start_number: int, start_offset: int, message: str) -> Iterator[Row]:
        """A record with broken quoting: report its first line, resume on the line after it."""
        line = start_number + 1
        if "field larger than field limit" in message:
            yield from self._too_long(start_number, start_offset, self.lines.number)
            return
        if "unexpected end of data" in message or self.lines.number > line:
            reason = (f"a quote opened on line {line} is not closed where the field ends "
                      f"(read up to line {self.lines.number}): close it, or double a quote inside a quoted text (\"\")")
        elif "expected after" in message:
            reason = (f"text follows a closing quote on line {line}: put the whole field in quotes and double "
                      "every quote inside it (\"\")")
        else:
            reason = f"not valid CSV ({message})"
        yield Row(f"line {line}", None, reason)
        self._resume_after(start_number, start_offset)

    def _too_long(self, start_number: int, start_offset: int, at_line: int) -> Iterator[Row]:
        line = start_number + 1
        if at_line == line:
            yield Row(f"line {line}", None, self.too_long)
            return
        # A record over the limit that spans lines: broken quoting, or a text far over any limit.
        yield Row(f"line {line}", None, f"a quoted field opened on line {line} runs past {self.limit:,} bytes "
                                        f"(line {at_line}): is a quote not closed?")
        self._resume_after(start_number, start_offset)

    def _resume_after(self, start_number: int, start_offset: int) -> None:
        self.lines.seek(offset=start_offset, number=start_number)
        with contextlib.suppress(LineTooLong, StopIteration):  # the record's first line, already reported
            next(self.lines)


class JsonLinesReader:
    """Rows of a JSON Lines file: one object a line; blank lines are skipped."""

    def __init__(self, f: BinaryIO, *, path: Path, encoding: str, limit: int, source: Source, max_text_length: int):
        self.lines = Lines(f, encoding=encoding, limit=limit)
        self.limit = limit
        self.too_long = _too_long_message(limit, max_text_length)
        self.source = source
        self.path = path

    def __iter__(self) -> Iterator[Row]:
        while True:
            try:
                line = next(self.lines)
            except StopIteration:
                return
            except LineTooLong as exc:
                yield Row(f"line {exc}", None, self.too_long)
                continue
            finally:
                self.source.bytes_read = self.lines.offset
            where = f"line {self.lines.number}"
            if self.lines.number == 1:
                line = line.lstrip("\ufeff")
            if not line.strip():
                continue
            yield _json_row(where, line.rstrip("\r\n"))

    def batches(self) -> Iterator[RowBatch]:
        """The rows in batches of :data:`JSON_BATCH` (each line is parsed by ``json``)."""
        rows: list[Row] = []
        for row in self:
            rows.append(row)
            if len(rows) >= JSON_BATCH:
                yield RowBatch(rows=rows)
                rows = []
        if rows:
            yield RowBatch(rows=rows)


def _json_row(where: str, line: str) -> Row:
    if _has_surrogates(line):
        return Row(where, None, "not valid text in the file's encoding on this line: save the file as UTF-8")
    try:
        value = json.loads(line, object_pairs_hook=_object)
    except json.JSONDecodeError as exc:
        return Row(where, None, f"not valid JSON ({exc.msg} at column {exc.colno})")
    except _DuplicateKey as exc:
        return Row(where, None, str(exc))
    except RecursionError:
        return Row(where, None, "not valid JSON here: nested too deeply (a row is one flat object)")
    except ValueError as exc:  # int parsing limits: a number with thousands of digits
        if "digits" in str(exc):
            return Row(where, None, f"a number on this line has more than {sys.get_int_max_str_digits():,} digits: "
                                    "write numbers in the usual way (a confidence is a number from 0 to 1)")
        return Row(where, None, f"not valid JSON here: {exc}")
    if not isinstance(value, dict):
        return Row(where, None, 'not a JSON object: each line must be like {"text": "...", "label": "..."}')
    for key, item in value.items():  # a \\ud800 escape alone decodes to a lone surrogate, which no text can store
        if isinstance(item, str) and (lone := _LONE_SURROGATE.search(item)):
            return Row(where, None, f"{key} holds \\u{ord(lone.group()):04x}, half of a surrogate pair and not a "
                                    "character: write the character itself, or both halves of its \\u escape")
    return Row(where, value)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class _DuplicateKey(ValueError):
    """A JSON object names the same key twice (which value was meant cannot be known)."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    raw_of: dict[str, str] = {}
    for key, value in pairs:
        name = column_name(key)
        if name in out:
            raise _DuplicateKey(f"keys {raw_of[name]!r} and {key!r} both read as {name!r}: give each field once")
        out[name] = value
        raw_of[name] = key
    return out


class ParquetReader:
    """Rows of a Parquet file, a batch at a time (``iter_batches``), only the columns read."""

    def __init__(self, path: Path, *, source: Source):
        import pyarrow.parquet as pq

        self.path = path
        self.source = source
        try:
            self.file = pq.ParquetFile(path)
            names = self.file.schema_arrow.names
        except Exception as exc:  # pyarrow raises many kinds for a bad file
            raise InputError(f"{path} is not a readable Parquet file ({type(exc).__name__}: {exc})") from exc
        used, ignored = header_columns(names, path=path)
        self.source.ignored_columns = ignored
        self.source.dialect = f"{self.file.metadata.num_row_groups} row group(s)"
        self.columns = [names[i] for i in sorted(used)]
        self.names = {names[i]: used[i] for i in used}
        self.total_rows = self.file.metadata.num_rows

    def batches(self) -> Iterator[RowBatch]:
        """The rows as columns, :data:`PARQUET_BATCH` at a time (pyarrow arrays, as stored)."""
        import numpy as np

        number = 0
        size = os.path.getsize(self.path)
        try:
            for batch in self.file.iter_batches(batch_size=PARQUET_BATCH, columns=self.columns):
                columns = {self.names[name]: batch.column(name) for name in batch.schema.names}
                numbers = np.arange(number + 1, number + 1 + batch.num_rows, dtype=np.int64)
                number += batch.num_rows
                self.source.bytes_read = int(size * number / max(self.total_rows, 1))
                yield RowBatch(kind="row", numbers=numbers, columns=columns)
        except (OSError, ValueError, ArithmeticError) as exc:  # a damaged page
            raise InputError(f"{self.path.name}: row {number + 1} onwards cannot be read "
                             f"({type(exc).__name__}: {exc}); nothing was stored") from exc


def _too_long_message(limit: int, max_text_length: int) -> str:
    return (f"the line is over {limit:,} bytes: a row holds one text of at most {max_text_length:,} characters "
            "(setting max_text_length)")


_SURROGATE = re.compile("[\udc80-\udcff]")


def _has_surrogates(value: str) -> bool:
    return _SURROGATE.search(value) is not None


def has_surrogates(value: str) -> bool:
    """True when a text holds bytes its encoding could not decode (kept as lone surrogates)."""
    return _has_surrogates(value)
