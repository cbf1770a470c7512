"""The importer's row rules over whole columns: which rows surely pass, and their stored values.

:func:`engine.importer.clean_row` is the rule for one row and gives every rejection its reason.
Checking rows one at a time in Python cost about 50 µs a row, so the importer first runs
:func:`sure_rows` over a batch's columns (pyarrow compute; RE2 regular expressions, in C++): it
picks the rows that plainly pass every rule and computes their stored values, which are then
exactly what ``clean_row`` would return. Every other row (an empty or over-long text, a control
character, a value of an unusual type or form, a time outside the range...) goes to ``clean_row``,
so a rejected row gets the same reason at the same line either way.
``tests/test_column_rules.py`` checks that agreement on generated columns (hypothesis).

What "plainly passes" means, column by column:

- ``text``: a string of 1 to ``max_len`` characters with no control character other than tab and
  newline and no white space (Python's ``str.isspace``) at either end, so ``clean_row`` keeps it
  unchanged;
- ``label``, ``predicted_label``: strings; each distinct value is read once by
  :func:`engine.labels.read_label` (a batch holds few distinct labels); a row passes when the
  value reads as a label, or is missing where a label is not needed;
- ``confidence``: when needed (a predicted label, or not ``labeled``): a float or integer
  column, or a string of plain decimal digits (``0.93``, ``.5``, ``1e-3``), in [0, 1];
- ``ts``: missing (the import's time), a timestamp column (any unit; with a zone, read in UTC),
  an integer column or a string of digits (seconds since 1970-01-01 UTC), or a string
  ``YYYY-MM-DD[ T]HH:MM:SS[.ffffff]`` (read as UTC), within [TS_MIN, TS_MAX) and not past
  ``latest`` (a time in the future refuses the file: ``clean_row`` says so). With
  ``naive_is_utc=False`` (``import --tz``) only times that carry their zone (epoch seconds, a
  timestamp column with a zone) are sure; naive ones are read in the zone by ``clean_row``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.labels import read_label

_SPACE = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
_EDGE_SPACE = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in _SPACE) + "]"
BAD_TEXT = rf"[\x00-\x08\x0b-\x1f\x7f-\x{{9f}}]|\A{_EDGE_SPACE}|{_EDGE_SPACE}\z"
PLAIN_NUMBER = r"\A(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\z"
EPOCH_DIGITS = r"\A[0-9]{1,12}\z"
ISO_TIME = r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[T ](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?\z"


def sure_rows(columns: dict[str, Any], *, count: int, labeled: bool, max_len: int, now: datetime,
              ts_min: datetime, ts_max: datetime, latest: datetime | None = None,
              naive_is_utc: bool = True) -> tuple[Any, dict[str, Any]]:
    """(mask, values): ``mask`` (numpy bool, one per row) marks the rows that pass every rule of
    :func:`engine.importer.clean_row`; ``values`` are the stored columns of those rows (pyarrow
    arrays ``text``, ``label``, ``predicted_label`` (strings), ``confidence`` (float64),
    ``ts`` (timestamp[us], naive UTC)), in row order.

    ``columns`` are pyarrow arrays of ``count`` rows by normalised column name; absent columns
    are missing values. Rows outside the mask are for ``clean_row`` to decide.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    sure = np.ones(count, dtype=bool)
    text = _strings(columns.get("text"))
    if text is None:
        return np.zeros(count, dtype=bool), {}
    sure &= _mask(pc.and_(pc.is_valid(text), pc.invert(pc.match_substring_regex(text, BAD_TEXT))))
    lengths = pc.utf8_length(text).to_numpy(zero_copy_only=False)
    sure &= (lengths >= 1) & (lengths <= max_len)

    labels = {}
    for column in ("label", "predicted_label"):
        value, ok, present = _labels(columns.get(column), count, column=column)
        sure &= ok
        labels[column] = (value, present)
    label, has_label = labels["label"]
    predicted, has_predicted = labels["predicted_label"]
    if labeled:
        sure &= has_label
    needs_confidence = has_predicted if labeled else np.ones(count, dtype=bool)
    if not labeled:
        sure &= has_predicted
    confidence, ok = _confidence(columns.get("confidence"), count)
    sure &= ok | ~needs_confidence
    confidence = pc.if_else(pa.array(needs_confidence), confidence, pa.scalar(None, pa.float64()))

    ts, ok = _times(columns.get("ts"), count, now=now, ts_min=ts_min, ts_max=ts_max, latest=latest,
                    naive_is_utc=naive_is_utc)
    sure &= ok

    keep = pa.array(np.flatnonzero(sure))
    values = {"text": text.take(keep), "label": label.take(keep), "predicted_label": predicted.take(keep),
              "confidence": confidence.take(keep), "ts": ts.take(keep)}
    return sure, values


def _mask(array: Any) -> Any:
    """A pyarrow boolean array as numpy, null as False."""
    import pyarrow.compute as pc

    return pc.fill_null(array, False).to_numpy(zero_copy_only=False)


def _strings(array: Any) -> Any:
    """The array as pyarrow strings, or None if it holds another type."""
    import pyarrow as pa

    if array is None:
        return None
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_string(array.type):
        return array
    if pa.types.is_large_string(array.type) or pa.types.is_string_view(array.type):
        return array.cast(pa.string())
    return None


def _labels(array: Any, count: int, *, column: str) -> tuple[Any, Any, Any]:
    """(stored labels, rows surely read, rows with a label) for one label column."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if array is None or pa.types.is_null(array.type):
        return pa.nulls(count, pa.string()), np.ones(count, dtype=bool), np.zeros(count, dtype=bool)
    strings = _strings(array)
    if strings is None:  # numbers, booleans, lists: read one by one
        return pa.nulls(count, pa.string()), np.zeros(count, dtype=bool), np.zeros(count, dtype=bool)
    encoded = pc.dictionary_encode(strings)
    read = [read_label(value, column=column) for value in encoded.dictionary.to_pylist()]
    stored = pa.array([label for label, _ in read], pa.string())
    fine = pa.array([problem is None for _, problem in read], pa.bool_())
    indices = encoded.indices
    value = stored.take(indices)
    ok = _mask(fine.take(indices)) | ~_mask(pc.is_valid(indices))  # null: a missing label
    return value, ok, _mask(pc.is_valid(value))


def _confidence(array: Any, count: int) -> tuple[Any, Any]:
    """(confidence as float64, rows whose confidence is surely a number in [0, 1])."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    nothing = pa.nulls(count, pa.float64()), np.zeros(count, dtype=bool)
    if array is None:
        return nothing
    if pa.types.is_floating(array.type) or pa.types.is_integer(array.type):
        number = array.cast(pa.float64())
    else:
        strings = _strings(array)
        if strings is None:
            return nothing
        plain = _mask(pc.match_substring_regex(strings, PLAIN_NUMBER))
        if not plain.all():
            strings = pc.if_else(pa.array(plain), strings, pa.scalar(None, pa.string()))
        try:
            number = strings.cast(pa.float64())
        except pa.ArrowInvalid:  # a number pyarrow will not parse (say 1e999): clean_row decides
            return nothing
    ok = _mask(pc.and_(pc.greater_equal(number, 0.0), pc.less_equal(number, 1.0)))
    return number, ok


def _times(array: Any, count: int, *, now: datetime, ts_min: datetime, ts_max: datetime,
           latest: datetime | None = None, naive_is_utc: bool = True) -> tuple[Any, Any]:
    """(ts as timestamp[us], rows whose time is surely read so); a missing time is ``now``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    unit = pa.timestamp("us")
    if array is None or pa.types.is_null(array.type):
        return pa.array([now] * count, unit) if count else pa.array([], unit), np.ones(count, dtype=bool)
    nothing = pa.nulls(count, unit), np.zeros(count, dtype=bool)
    missing = ~_mask(pc.is_valid(array))
    if pa.types.is_timestamp(array.type):
        raw = array.cast(pa.int64())
        if array.type.unit == "ns":  # a part below a microsecond: clean_row decides
            micro = pc.divide(raw, 1000)
            ok = _mask(pc.equal(pc.multiply(micro, 1000), raw))
        else:
            micro = _times_checked(raw, {"s": 1_000_000, "ms": 1000, "us": 1}[array.type.unit])
            if micro is None:
                return nothing
            ok = np.ones(count, dtype=bool)
        ts = micro.cast(unit)
        if array.type.tz is None and not naive_is_utc:
            ok = np.zeros(count, dtype=bool)
    elif pa.types.is_integer(array.type):
        micro = _times_checked(array.cast(pa.int64()), 1_000_000)
        if micro is None:
            return nothing
        ts, ok = micro.cast(unit), np.ones(count, dtype=bool)
    else:
        strings = _strings(array)
        if strings is None:
            return nothing
        missing |= _mask(pc.equal(strings, ""))
        epoch = _mask(pc.match_substring_regex(strings, EPOCH_DIGITS))
        iso = _mask(pc.match_substring_regex(strings, ISO_TIME))
        seconds = pc.if_else(pa.array(epoch), strings, pa.scalar(None, pa.string())).cast(pa.int64())
        from_epoch = pc.multiply(seconds, 1_000_000).cast(unit)
        from_iso = _iso(strings, iso)
        ok = epoch | (iso & _mask(pc.is_valid(from_iso)) & naive_is_utc)
        ts = pc.if_else(pa.array(epoch), from_epoch, from_iso)
    low, high = pa.scalar(ts_min, unit), pa.scalar(ts_max, unit)
    ok = ok & _mask(pc.and_(pc.greater_equal(ts, low), pc.less(ts, high)))
    if latest is not None:
        ok = ok & _mask(pc.less_equal(ts, pa.scalar(latest, unit)))
    ts = pc.if_else(pa.array(missing), pa.scalar(now, unit), ts)
    return ts, ok | missing


def _times_checked(values: Any, factor: int) -> Any:
    """``values * factor`` (int64), or None when a product overflows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        return pc.multiply_checked(values, factor)
    except pa.ArrowInvalid:
        return None


def _iso(strings: Any, iso: Any) -> Any:
    """Timestamps of the ISO strings marked in ``iso`` (null elsewhere, and where a date is not valid)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    unit = pa.timestamp("us")
    chosen = pc.if_else(pa.array(iso), strings, pa.scalar(None, pa.string()))
    try:
        return chosen.cast(unit)
    except (pa.ArrowInvalid, OverflowError):  # a day or hour that does not exist: clean_row says which
        return pa.nulls(len(strings), unit)
