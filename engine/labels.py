"""Labels as files carry them: how a value becomes a label, and which labels only look alike.

A label is read by :func:`read_label`:

- text is normalised by :func:`engine.dataset.normalize_label` (Unicode NFKC, format
  characters such as zero-width spaces and byte-order marks removed, stripped, lower-cased);
- a number (JSON, Parquet) is read as its shortest text: ``7`` and ``7.0`` are ``"7"``,
  ``2.5`` is ``"2.5"``; CSV cells are text and are kept as written (``"7.0"`` stays ``"7.0"``);
- rejected, with the reason: a boolean, a list, an object or any other non-scalar value, a
  number that is not finite (``1e400`` reads as infinity, ``NaN``), a label holding a control
  character (a line break, a tab), and a label longer than :data:`MAX_LABEL_LENGTH` characters.

Labels that print alike but differ (a Cyrillic ``а`` for a Latin ``a``) are found by their
Unicode TR39 *skeleton* (:func:`skeleton`): two labels are confusable when their skeletons are
equal. The table behind it is Unicode's ``confusables.txt`` as shipped by the
``confusable-homoglyphs`` package (3.3.1: Unicode 15.1 data).
"""

from __future__ import annotations

import math
import re
import unicodedata
from decimal import Decimal
from functools import lru_cache
from typing import Any, Iterable

from confusable_homoglyphs import confusables as _homoglyphs

from engine.dataset import normalize_label

MAX_LABEL_LENGTH = 200


def read_label(value: Any, *, column: str = "label") -> tuple[str | None, str | None]:
    """(label, None), (None, None) when the value is missing, or (None, the reason it is rejected).

    >>> read_label(" Track_Order "), read_label(7.0), read_label(None)
    (('track_order', None), ('7', None), (None, None))
    >>> read_label(True)[1]
    'label true is a boolean: a label is a text (or a number); write it as "true" if that is the class'
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    if isinstance(value, bool):
        word = "true" if value else "false"
        return None, f'{column} {word} is a boolean: a label is a text (or a number); write it as "{word}" if that is the class'
    if isinstance(value, (int, float, Decimal)):
        if isinstance(value, float) and math.isnan(value):
            return None, None  # NaN is how pandas and Parquet write a missing value
        if not math.isfinite(value):
            return None, f"{column} {value} is not a finite number: a label is a text (or a number)"
        text = str(int(value)) if value == int(value) else repr(float(value))
        return normalize_label(text), None
    if not isinstance(value, str):
        kind = {list: "a list", tuple: "a list", dict: "an object"}.get(type(value), f"a {type(value).__name__}")
        shown = repr(value)
        return None, f"{column} {shown[:60]}{'...' if len(shown) > 60 else ''} is {kind}: a label is one text (or number)"
    if len(value) > 4 * MAX_LABEL_LENGTH:  # not worth normalising (nor caching)
        return None, f"{column} is {len(value):,} characters; a label is at most {MAX_LABEL_LENGTH}"
    return _read_text(value, column)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc


@lru_cache(maxsize=65536)
def _read_text(value: str, column: str) -> tuple[str | None, str | None]:
    """read_label for a text: files repeat a few labels millions of times, so each is read once."""
    label = normalize_label(value)
    if label is None:
        return None, None
    if _CONTROL.search(label):
        return None, f"{column} holds a control character (a line break or a tab): a label is one line of text"
    if len(label) > MAX_LABEL_LENGTH:
        return None, f"{column} is {len(label):,} characters; a label is at most {MAX_LABEL_LENGTH}"
    return label, None


@lru_cache(maxsize=4096)
def _prototype(ch: str) -> str:
    """The character TR39 maps ``ch`` to, from the package's two-way table.

    The table lists, for a prototype, every character confusable with it, and for any other
    character its one prototype. A pair that lists only each other is mapped to the smaller.
    """
    entries = _homoglyphs.confusables_data.get(ch)
    if not entries:
        return ch
    if len(entries) > 1:
        return ch
    other = entries[0]["c"]
    back = _homoglyphs.confusables_data.get(other) or []
    if len(back) == 1 and back[0]["c"] == ch:
        return min(ch, other)
    return other


def skeleton(label: str) -> str:
    """The Unicode TR39 skeleton of ``label``: NFD, each character to its prototype, NFD again.

    >>> skeleton("tr\\u0430ck_order") == skeleton("track_order")
    True
    >>> skeleton("track_order") == skeleton("trick_order")
    False
    """
    decomposed = unicodedata.normalize("NFD", label)
    return unicodedata.normalize("NFD", "".join(_prototype(ch) for ch in decomposed))


def confusable_pairs(new: Iterable[str], known: Iterable[str]) -> list[tuple[str, str]]:
    """(new label, label it looks like) for every new label whose skeleton another label shares.

    ``new`` are the labels a file brings; ``known`` those already stored. A pair is listed once,
    sorted; labels that are equal are not pairs.

    >>> confusable_pairs(["tr\\u0430ck_order", "refund"], ["track_order"])
    [('trаck_order', 'track_order')]
    """
    new = sorted(set(new))
    by_skeleton: dict[str, set[str]] = {}
    for label in set(known) | set(new):
        by_skeleton.setdefault(skeleton(label), set()).add(label)
    pairs = set()
    for label in new:
        for other in by_skeleton[skeleton(label)]:
            if other != label and (other, label) not in pairs:
                pairs.add((label, other))
    return sorted(pairs)


def describe_difference(a: str, b: str) -> str:
    """Where two look-alike labels differ, in words, e.g. ``character 3: U+0430 CYRILLIC SMALL LETTER A, not U+0061 ...``.

    >>> describe_difference("tr\\u0430ck", "track")
    'character 3 is U+0430 CYRILLIC SMALL LETTER A, not U+0061 LATIN SMALL LETTER A'
    """
    for index, (x, y) in enumerate(zip(a, b), start=1):
        if x != y:
            return f"character {index} is {_name(x)}, not {_name(y)}"
    return f"one is {len(a)} characters, the other {len(b)}"


def _name(ch: str) -> str:
    return f"U+{ord(ch):04X} {unicodedata.name(ch, 'UNNAMED')}"
