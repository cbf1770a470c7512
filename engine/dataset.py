"""Turn logged and labelled rows into a clean training set and a held-out evaluation set.

Pure functions over pandas DataFrames: no database, no I/O. The input has one row per
labelled query with columns ``text``, ``label``, ``confidence``, ``source`` and ``ts``
(other columns are ignored). ``source`` is ``"human"`` (an imported label or user
feedback: a person said so; ``confidence`` is ignored and may be NaN) or ``"pseudo"``
(the serving model's own prediction, with its confidence). An optional column ``rows`` makes
a row stand for that many log rows the rules cannot tell apart (a log grouped by the store,
``store.querylog.training_groups``): every count below is then a count of log rows, the same as
with the rows one by one.

Rules, applied in this order; every input row is counted by exactly one step of the
:class:`Funnel`, so ``rows_in`` equals the sum of all the other counts.

0. **Pseudo labels off, quarantine, untrusted pseudo labels.** With ``use_pseudo_labels=False``
   every pseudo row is dropped before counting: ``rows_in`` counts only the rows considered.
   Then rows flagged ``quarantined`` (an operator's quarantine rule matches them), pseudo rows
   flagged ``deployed = False`` (answered by a version the registry never deployed) and pseudo
   rows with ``ts`` before ``pseudo_since`` are left out, and counted as ``quarantined``,
   ``pseudo_not_deployed`` and ``pseudo_too_old`` (a row in the first of these that applies),
   also outside ``rows_in``.
1. **Malformed** (``malformed``). Texts are normalised (:func:`normalize_text`: Unicode
   NFKC, case-folded, whitespace collapsed) and labels are normalised
   (:func:`normalize_label`: Unicode NFKC, format characters such as zero-width spaces
   and byte-order marks removed, stripped and lower-cased, so ``" Track_Order "`` is
   ``"track_order"``) before anything else. A row is malformed when its text is not a
   string, holds a NUL byte, is blank (:func:`is_blank`: nothing but whitespace and control
   characters; the import's rule), or is longer than ``max_text_length``
   characters after normalisation; when its label is missing, NaN or empty; when
   ``known_labels`` is given and the label is not in it (compared normalised); when its
   source is neither ``"human"`` nor ``"pseudo"``; or, for a pseudo row, when its
   confidence is not a finite number in [0, 1] (a string, even ``"0.9"``, a bool, NaN,
   a negative number or more than 1).
2. **Low confidence** (``low_confidence``). Pseudo rows with confidence below
   ``min_confidence``; a confidence of exactly ``min_confidence`` is kept.
3. **Conflicts and duplicates** (``conflicts``, ``duplicates``). The rows left are
   grouped by normalised text, and one label wins each group:

   - if the group has any human row, only human rows vote (a human label always beats
     a pseudo label): the most frequent human label wins, a tie goes to the label whose
     latest row is the most recent, then to the label first in alphabetical order;
   - a pseudo-only group: the most frequent pseudo label wins, a tie goes to the highest
     mean confidence, then the most recent row, then alphabetical order.

   ``ts`` may hold datetimes, numbers or ISO 8601 strings; a missing ``ts`` counts as
   older than any time. Every row whose label is not the
   winner (human or pseudo) counts as a conflict; all but one of the rows with the
   winning label count as duplicates. One row per text remains.
4. **Evaluation split** (``reserved_for_eval``, ``eval_rows``, ``train_rows``), per label.
   Each text has a stable bucket 0..99 and a stable order (:func:`eval_key`, from a SHA-256
   of the normalised text). A text with ``eval_bucket(text) < eval_percent`` belongs to
   evaluation: if its label came from humans it goes to ``eval``; if it is pseudo-only its
   one remaining row is removed and counted ``reserved_for_eval`` (the evaluation set holds
   human labels only). Every other text goes to ``train``, with two corrections per winning
   label, so that every label with two or more human-labelled texts is both trained and
   judged:

   - a label with ``n >= 2`` human-labelled texts none of which is in the bucket slice lends
     its first text in :func:`eval_key` order to ``eval``;
   - a label whose human-labelled texts are all in the slice keeps its last one in ``train``
     (so a label with a single text trains on it, and is listed in
     :attr:`TrainingSet.labels_without_eval`).

   So a text in the slice stays in evaluation forever (unless its label has no other text),
   a large label holds out about ``eval_percent`` of its texts, and no model is trained on
   a text of the evaluation set it is judged on. The text a small label lends returns to
   training once one of the label's own texts falls in the slice.

5. **Training cap** (``over_training_cap``). With ``max_train_rows`` > 0, at most that many texts
   stay in ``train``: first the texts whose label came from people, then pseudo-only texts, the
   newest first within each (the time of the text's newest deciding row; none is the oldest), then
   text order. The rest are counted ``over_training_cap``; ``eval`` is never touched.

Empty input gives an empty :class:`TrainingSet` with all counts zero. An option out of
range (``min_confidence`` 0..1, ``eval_percent`` a whole number 0..50,
``max_text_length`` at least 1), a missing column, or a ``ts`` that is not a time raises
:class:`~engine.errors.InputError` naming what is wrong and what is valid.

>>> rows = pd.DataFrame({
...     "text": ["Where is  MY order", "where is my order", "cancel it"],
...     "label": ["Track_Order", "track_order", "cancel"],
...     "confidence": [None, 0.9, 0.3],
...     "source": ["human", "pseudo", "pseudo"],
...     "ts": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]),
... })
>>> ts = build_training_set(rows, eval_percent=0)
>>> ts.train.to_dict("records")
[{'text': 'where is my order', 'label': 'track_order'}]
>>> ts.funnel.as_dict()["low_confidence"], ts.funnel.as_dict()["duplicates"]
(1, 1)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import numbers
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd

from engine.errors import InputError

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("text", "label", "confidence", "source", "ts")
# The optional column of a grouped log (``store.querylog.training_groups``): how many log rows a row stands for.
WEIGHT = "rows"
HUMAN = "human"
PSEUDO = "pseudo"


def normalize_text(text: str) -> str:
    """Unicode NFKC, case-fold, whitespace collapsed to single spaces and stripped.

    NFKC is applied again after case-folding, so the result is stable:
    ``normalize_text(normalize_text(t)) == normalize_text(t)``.

    >>> normalize_text("  Where is\\tＭＹ  Order ")
    'where is my order'
    """
    if text.isascii():  # NFKC leaves ASCII alone and case-folds it as lower()
        return " ".join(text.lower().split())
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return " ".join(folded.split())


# C0 and C1 control characters but NUL, tab and newline: the import stores them as spaces (engine/importer.py).
_CONTROL = re.compile(r"[\x01-\x08\x0b-\x1f\x7f-\x9f]")


def is_blank(text: str) -> bool:
    """True when ``text`` holds nothing but whitespace and control characters: the import's empty text
    (it stores control characters as spaces, then strips), the classifier's empty query, and a malformed
    training row. ``normalize_text`` alone keeps a control character such as U+0001.

    >>> is_blank(" \x01\t\u3000"), is_blank("a\x01")
    (True, False)
    """
    return not _CONTROL.sub(" ", text).strip()


def normalize_label(label: Any) -> str | None:
    """Unicode NFKC, format characters removed, stripped and lower-cased; None/NaN/empty -> None.

    Format characters (Unicode category Cf: zero-width space and joiners, byte-order marks,
    direction marks, soft hyphens) are invisible, so two labels that print the same are
    the same label. Labels that merely look alike (a Cyrillic ``а`` for a Latin ``a``) stay
    different; :mod:`engine.labels` warns about them.

    >>> normalize_label(" Track_Order "), normalize_label("  "), normalize_label(float("nan"))
    ('track_order', None, None)
    >>> normalize_label("\ufefftrack\u200b_order"), normalize_label("ＴＲＡＣＫ")
    ('track_order', 'track')
    """
    if label is None or (not isinstance(label, str) and pd.api.types.is_scalar(label) and pd.isna(label)):
        return None
    text = str(label)
    if not text.isascii():
        text = "".join(ch for ch in unicodedata.normalize("NFKC", text) if unicodedata.category(ch) != "Cf")
    text = text.strip().lower()
    return text or None


def eval_bucket(normalized_text: str) -> int:
    """Stable bucket 0..99 from a SHA-256 of the normalised text.

    The bucket is the first 8 bytes of the SHA-256 of the UTF-8 text, read big-endian,
    modulo 100: the same text falls in the same bucket forever, in every process.

    >>> eval_bucket("where is my order")
    36
    """
    return eval_key(normalized_text)[0]


def eval_key(normalized_text: str) -> tuple[int, int]:
    """(bucket, the 64-bit number behind it): the order in which a label lends texts to evaluation.

    >>> eval_key("where is my order")[0] == eval_bucket("where is my order")
    True
    """
    number = int.from_bytes(hashlib.sha256(normalized_text.encode("utf-8")).digest()[:8], "big")
    return number % 100, number


@dataclass(frozen=True)
class Funnel:
    """How many input rows each step removed or kept; the counts from ``malformed`` to ``eval_rows``
    and ``over_training_cap`` add up to ``rows_in``; ``quarantined``, ``pseudo_not_deployed`` and
    ``pseudo_too_old`` count rows left out before ``rows_in`` (step 0)."""

    rows_in: int
    malformed: int
    low_confidence: int
    conflicts: int
    duplicates: int
    reserved_for_eval: int
    train_rows: int
    eval_rows: int
    # Left out before rows_in (step 0): under a quarantine rule, pseudo labels of versions never
    # deployed, pseudo labels older than the age window.
    quarantined: int = 0
    pseudo_not_deployed: int = 0
    pseudo_too_old: int = 0
    # Step 5: training texts beyond ``max_train_rows`` (inside rows_in, beside train_rows).
    over_training_cap: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts by name, in funnel order."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)
class TrainingSet:
    """A training set, its evaluation set, how it was built, and a hash of its contents.

    ``train`` and ``eval`` have columns ``text`` (normalised) and ``label``, one row per
    text, sorted by text; ``eval`` holds human labels only. ``labels`` are the sorted
    distinct labels of ``train``; ``labels_without_eval`` are those of them with no
    evaluation row (a label known from a single human-labelled text, or from pseudo labels
    only): the gate cannot judge them. ``data_hash`` is the SHA-256 hex of the UTF-8 JSON
    array ``[[text, label], ...]`` of ``train`` in its (sorted) order.
    """

    train: pd.DataFrame
    eval: pd.DataFrame
    funnel: Funnel
    labels: tuple[str, ...]
    data_hash: str
    labels_without_eval: tuple[str, ...] = ()


def build_training_set(
    rows: pd.DataFrame,
    *,
    known_labels: Iterable[str] | None = None,
    min_confidence: float = 0.5,
    max_text_length: int = 2000,
    eval_percent: int = 20,
    use_pseudo_labels: bool = True,
    pseudo_since: Any = None,
    max_train_rows: int = 0,
) -> TrainingSet:
    """Clean ``rows`` into a training set and a held-out evaluation set (rules in the module docstring).

    ``rows`` has columns text, label, confidence, source, ts, and optionally ``quarantined``
    (True: left out, counted), ``deployed`` (False on a pseudo row: left out, counted) and
    ``rows`` (a whole number >= 1: the row stands for that many log rows that the rules cannot
    tell apart, see :data:`WEIGHT`; every count is then a count of log rows).
    ``known_labels``: if given, a label outside it is malformed; None means any non-empty label
    is known. ``pseudo_since``: pseudo rows with ``ts`` before it are left out (None: no window).
    ``max_train_rows``: at most this many training texts (rule 5; 0: no cap).
    Raises :class:`~engine.errors.InputError` for an option out of range or a missing column.
    """
    _check_options(min_confidence=min_confidence, max_text_length=max_text_length, eval_percent=eval_percent,
                   max_train_rows=max_train_rows)
    _check_columns(rows)
    known = _normalize_known(known_labels)

    source_is = _source_masks(rows["source"])
    if not use_pseudo_labels:
        considered = ~source_is[PSEUDO]
        rows = rows.loc[considered]
        source_is = {name: mask[considered] for name, mask in source_is.items()}
    weight = _weights(rows)
    rows, source_is, weight, left_out = _leave_out(rows, source_is, weight, pseudo_since=pseudo_since)
    human, pseudo = source_is[HUMAN], source_is[PSEUDO]

    # Per-row Python work happens only once per distinct raw text and label.
    group, group_texts = _text_groups(rows["text"], max_text_length=max_text_length)
    label, label_names = _label_ids(rows["label"], known=known)
    confidence = _confidences(rows["confidence"])
    confidence_ok = np.isfinite(confidence) & (confidence >= 0.0) & (confidence <= 1.0)

    malformed = (group < 0) | (label < 0) | ~(human | pseudo) | (pseudo & ~confidence_ok)
    low = ~malformed & pseudo & (confidence < min_confidence)
    kept = ~(malformed | low)

    k_group, k_label, k_human = group[kept], label[kept], human[kept]
    has_human = np.zeros(len(group_texts), dtype=bool)
    has_human[k_group[k_human]] = True
    k_weight = weight[kept]
    winners, newest = _winners(
        group=k_group,
        label=k_label,
        deciding=k_human == has_human[k_group],
        confidence=np.where(k_human, 0.0, confidence[kept]),
        ts=_timestamps(rows["ts"].iloc[np.flatnonzero(kept)]),
        weight=k_weight,
    )
    winner_of = np.full(len(group_texts), -1, dtype=np.int64)
    winner_of[winners.index.to_numpy()] = winners.to_numpy()
    wins = k_label == winner_of[k_group]

    from_humans = has_human[winners.index.to_numpy()]
    in_eval = _stratified_eval(winners, group_texts, from_humans=from_humans, eval_percent=eval_percent)
    in_train = ~in_eval
    over_cap = _over_cap(in_train, from_humans=from_humans, newest=newest, max_train_rows=max_train_rows)
    train = _frame(winners[in_train & ~over_cap], group_texts, label_names)
    evaluation = _frame(winners[in_eval & from_humans], group_texts, label_names)

    funnel = Funnel(
        rows_in=int(weight.sum()),
        malformed=int(weight[malformed].sum()),
        low_confidence=int(weight[low].sum()),
        conflicts=int(k_weight[~wins].sum()),
        duplicates=int(k_weight[wins].sum()) - len(winners),
        reserved_for_eval=int((in_eval & ~from_humans).sum()),
        train_rows=len(train),
        eval_rows=len(evaluation),
        over_training_cap=int(over_cap.sum()),
        **left_out,
    )
    log.debug("training set funnel: %s", funnel.as_dict())
    pairs = list(zip(train["text"].tolist(), train["label"].tolist()))
    labels = tuple(sorted(set(train["label"].tolist())))
    judged = set(evaluation["label"].tolist())
    return TrainingSet(
        train=train,
        eval=evaluation,
        funnel=funnel,
        labels=labels,
        data_hash=hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode("utf-8")).hexdigest(),
        labels_without_eval=tuple(label for label in labels if label not in judged),
    )


def _stratified_eval(winners: pd.Series, group_texts: list[str], *, from_humans: np.ndarray,
                     eval_percent: int) -> np.ndarray:
    """Per winning text: does it go to evaluation? (rule 4 of the module docstring)."""
    if winners.empty:
        return np.zeros(0, dtype=bool)
    keys = [eval_key(group_texts[g]) for g in winners.index]
    frame = pd.DataFrame({
        "label": winners.to_numpy(),
        "bucket": np.array([k[0] for k in keys], dtype=np.int64),
        "number": np.array([k[1] for k in keys], dtype=np.uint64),
        "human": from_humans,
    })
    below = frame["bucket"].to_numpy() < eval_percent
    in_eval = below & ~from_humans  # pseudo-only texts: the bucket alone decides (they are reserved, not evaluated)
    human = frame[from_humans].sort_values(["label", "bucket", "number"], kind="stable")
    if human.empty:
        return in_eval
    by_label = human.groupby("label", sort=False)
    rank = by_label.cumcount().to_numpy()
    n = by_label["bucket"].transform("size").to_numpy()
    c = (human["bucket"].to_numpy() < eval_percent).astype(np.int64)
    c = pd.Series(c, index=human.index).groupby(human["label"].to_numpy(), sort=False).transform("sum").to_numpy()
    m = np.minimum(np.maximum(c, (n >= 2).astype(np.int64)), np.maximum(n - 1, 0))
    if eval_percent == 0:
        m = np.zeros_like(m)
    in_eval[human.index.to_numpy()] = rank < m
    return in_eval


def _over_cap(in_train: np.ndarray, *, from_humans: np.ndarray, newest: np.ndarray, max_train_rows: int) -> np.ndarray:
    """Per winning text (group order, which is text order): is it a training text beyond the cap? (rule 5).

    Kept first: texts whose label came from people, then pseudo-only texts; within each, the newest
    deciding row first (a missing time is the oldest), then text order.
    """
    over = np.zeros(len(in_train), dtype=bool)
    candidates = np.flatnonzero(in_train)
    if not max_train_rows or len(candidates) <= max_train_rows:
        return over
    # lexsort: the last key is the primary one; -newest puts the newest first, NaN (missing) sorts last.
    order = np.lexsort((candidates, -newest[candidates], ~from_humans[candidates]))
    over[candidates[order[max_train_rows:]]] = True
    return over


def _weights(rows: pd.DataFrame) -> np.ndarray:
    """How many log rows each row stands for: the ``rows`` column (whole numbers >= 1), else one each."""
    if WEIGHT not in rows.columns:
        return np.ones(len(rows), dtype=np.int64)
    values = rows[WEIGHT]
    numeric = pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype)
    as_float = values.to_numpy(dtype=float, na_value=np.nan) if numeric else None
    if as_float is None or not (np.isfinite(as_float).all() and (as_float >= 1).all()
                                and (as_float == np.floor(as_float)).all()):
        raise InputError(f"column {WEIGHT!r} (how many log rows a row stands for) holds a value that is not a whole "
                         "number of at least 1: give each row's count, or leave the column out (one row each)")
    return as_float.astype(np.int64)


def _leave_out(rows: pd.DataFrame, source_is: dict[str, np.ndarray], weight: np.ndarray, *,
               pseudo_since: Any) -> tuple[pd.DataFrame, dict[str, np.ndarray], np.ndarray, dict[str, int]]:
    """Step 0 of the funnel: drop quarantined rows, pseudo rows of versions never deployed and pseudo
    rows older than ``pseudo_since``; return what is left (rows, masks, weights) and each count (in that
    order of precedence)."""
    n = len(rows)
    quarantined = (rows["quarantined"].fillna(False).to_numpy(dtype=bool) if "quarantined" in rows.columns
                   else np.zeros(n, dtype=bool))
    pseudo = source_is[PSEUDO]
    not_deployed = pseudo & ~quarantined
    if "deployed" in rows.columns:
        not_deployed &= ~rows["deployed"].fillna(False).to_numpy(dtype=bool)
    else:
        not_deployed &= False
    too_old = np.zeros(n, dtype=bool)
    if pseudo_since is not None and n:
        # Naive times are UTC (the store's convention); a missing or unreadable ts is not old.
        stamps = pd.to_datetime(rows["ts"], errors="coerce", utc=True, format="mixed")
        since = pd.Timestamp(pseudo_since)
        since = since.tz_localize("UTC") if since.tzinfo is None else since
        older = (stamps < since).fillna(False).to_numpy(dtype=bool)
        too_old = pseudo & ~quarantined & ~not_deployed & older
    dropped = quarantined | not_deployed | too_old
    counts = {"quarantined": int(weight[quarantined].sum()), "pseudo_not_deployed": int(weight[not_deployed].sum()),
              "pseudo_too_old": int(weight[too_old].sum())}
    if not dropped.any():
        return rows, source_is, weight, counts
    kept = ~dropped
    return rows.loc[kept], {name: mask[kept] for name, mask in source_is.items()}, weight[kept], counts


def _check_options(*, min_confidence: Any, max_text_length: Any, eval_percent: Any, max_train_rows: Any) -> None:
    def is_int(value: Any) -> bool:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)

    real = isinstance(min_confidence, numbers.Real) and not isinstance(min_confidence, bool)
    if not (real and 0.0 <= min_confidence <= 1.0):
        raise InputError(f"min_confidence = {min_confidence!r} is out of range: use a number from 0 to 1")
    if not (is_int(max_text_length) and max_text_length >= 1):
        raise InputError(f"max_text_length = {max_text_length!r} is out of range: use a whole number of at least 1")
    if not (is_int(eval_percent) and 0 <= eval_percent <= 50):
        raise InputError(f"eval_percent = {eval_percent!r} is out of range: use a whole number from 0 to 50")
    if not (is_int(max_train_rows) and max_train_rows >= 0):
        raise InputError(f"max_train_rows = {max_train_rows!r} is out of range: use a whole number, 0 for no cap")


def _check_columns(rows: Any) -> None:
    expected = ", ".join(REQUIRED_COLUMNS)
    if not isinstance(rows, pd.DataFrame):
        raise InputError(f"rows must be a pandas DataFrame with columns {expected}, not {type(rows).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise InputError(f"rows lack column(s) {', '.join(missing)}: expected columns {expected}")


def _normalize_known(known_labels: Iterable[str] | None) -> frozenset[str] | None:
    if known_labels is None:
        return None
    if isinstance(known_labels, str):
        raise InputError(f"known_labels = {known_labels!r} is a single string: pass a list of labels")
    return frozenset(n for n in map(normalize_label, known_labels) if n is not None)


def _factorize(values: pd.Series) -> tuple[np.ndarray, list[Any]]:
    """Codes per row (-1 for missing) and the distinct values; unhashable values become missing."""
    try:
        codes, uniques = pd.factorize(values)
    except TypeError:
        codes, uniques = pd.factorize(values.map(lambda v: v if isinstance(v, str) else None))
    return codes, uniques.to_numpy(dtype=object).tolist()


def _text_groups(texts: pd.Series, *, max_text_length: int) -> tuple[np.ndarray, list[str]]:
    """A group id per row (-1 if malformed) and the normalised text of each group, ids in text order."""
    codes, uniques = _factorize(texts)
    # A text holding a NUL byte, or nothing but blanks and control characters, is refused by the import and the
    # classifier too (isprintable() first: a C scan that passes almost every text without the regex of is_blank).
    normalized = [normalize_text(t) if isinstance(t, str) and "\x00" not in t else None for t in uniques]
    normalized = [t if t and len(t) <= max_text_length and (t.isprintable() or not is_blank(t)) else None
                  for t in normalized]
    return _regroup(codes, normalized)


def _label_ids(labels: pd.Series, *, known: frozenset[str] | None) -> tuple[np.ndarray, list[str]]:
    """A label id per row (-1 if missing or unknown) and the label names, ids in name order."""
    codes, uniques = _factorize(labels)
    normalized = [normalize_label(v) for v in uniques]
    if known is not None:
        normalized = [v if v in known else None for v in normalized]
    return _regroup(codes, normalized)


def _regroup(codes: np.ndarray, normalized: list[str | None]) -> tuple[np.ndarray, list[str]]:
    """Map raw-value codes onto sorted distinct normalised values; None and -1 map to -1."""
    names = sorted({v for v in normalized if v is not None})
    rank = {v: i for i, v in enumerate(names)}
    lookup = np.array([rank.get(v, -1) if v is not None else -1 for v in normalized] + [-1], dtype=np.int64)
    return lookup[codes], names  # code -1 (missing raw value) picks the trailing -1


def _source_masks(source: pd.Series) -> dict[str, np.ndarray]:
    codes, uniques = _factorize(source)
    return {
        name: np.isin(codes, [i for i, v in enumerate(uniques) if isinstance(v, str) and v == name])
        for name in (HUMAN, PSEUDO)
    }


def _confidences(values: pd.Series) -> np.ndarray:
    """Confidence as floats; anything that is not a real number (strings, bools) becomes NaN."""
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return np.full(len(values), np.nan)
    if pd.api.types.is_numeric_dtype(dtype):
        return values.to_numpy(dtype=float, na_value=np.nan)
    return np.array(
        [
            float(v) if isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) else math.nan
            for v in values.to_numpy(dtype=object)
        ],
        dtype=float,
    )


def _timestamps(ts: pd.Series) -> pd.Series:
    """``ts`` as comparable values: datetimes and numbers as they are, strings parsed as ISO 8601."""
    if pd.api.types.is_datetime64_any_dtype(ts.dtype) or (
        pd.api.types.is_numeric_dtype(ts.dtype) and not pd.api.types.is_bool_dtype(ts.dtype)
    ):
        return ts.reset_index(drop=True)
    try:
        return pd.to_datetime(ts, utc=True, format="ISO8601").reset_index(drop=True)
    except (ValueError, TypeError) as exc:
        raise InputError(f"column 'ts' holds a value that is not a timestamp ({exc}): use datetimes or ISO 8601 strings") from None


def _winners(
    *, group: np.ndarray, label: np.ndarray, deciding: np.ndarray, confidence: np.ndarray, ts: pd.Series,
    weight: np.ndarray,
) -> tuple[pd.Series, np.ndarray]:
    """The winning label id per group id (index), from the deciding rows only (each row counting its
    ``weight``, its confidence weighted by it), and per winner the time of its group's newest deciding
    row as a rank (higher is newer; NaN: none has a time), for the training cap."""
    votes = pd.DataFrame({"group": group, "label": label, "weight": weight,
                          "weighted": confidence * weight, "ts": ts})[deciding]
    tally = votes.groupby(["group", "label"], sort=False).agg(
        count=("weight", "sum"), weighted=("weighted", "sum"), ts=("ts", "max")
    )
    # The mean confidence; equal means tie despite float noise (a sum of one row's mean times its
    # count, as a grouped log gives, may differ from the sum of the rows in the last bits).
    tally["confidence"] = (tally["weighted"] / tally["count"]).round(9)
    tally = tally.reset_index().sort_values(
        ["group", "count", "confidence", "ts", "label"],
        ascending=[True, False, False, False, True],
        na_position="last",
        kind="stable",
    )
    # Dense ranks order datetimes and numbers alike, exactly; a group without a time keeps NaN.
    newest = tally.groupby("group", sort=False)["ts"].max().rank(method="dense")
    first = tally.drop_duplicates("group")
    groups = first["group"].to_numpy()
    winners = pd.Series(first["label"].to_numpy(), index=pd.Index(groups, name="group"), name="label")
    return winners, newest.reindex(groups).to_numpy(dtype=float)


def _frame(winners: pd.Series, group_texts: list[str], label_names: list[str]) -> pd.DataFrame:
    """Rows (text, label) for the winners, sorted by text (group ids are in text order)."""
    return pd.DataFrame(
        {
            "text": pd.Series([group_texts[g] for g in winners.index], dtype=str),
            "label": pd.Series([label_names[v] for v in winners.to_numpy()], dtype=str),
        }
    )
