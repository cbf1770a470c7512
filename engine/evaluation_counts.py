"""The evaluation texts' n-gram counts, kept between retrains: a model's TF-IDF features without re-analysing the texts.

Every retrain scores a new candidate on the whole evaluation set. With the default ``char``
preset, scikit-learn's ``TfidfVectorizer.transform`` spends ~55 µs a text in its pure-Python
analyzer (cutting each text into character n-grams and counting them against the fitted
vocabulary): about 1.1 s for 20,000 texts, whatever the model. The analyzer's output does not
depend on the fitted vocabulary, only on the analyzer's settings, so the n-grams of each
evaluation text are counted once per analyzer configuration, into an *evaluation vocabulary*
of every n-gram the texts contain, and kept. A model's features are then its own vocabulary
looked up once per evaluation term (not per n-gram occurrence), the count matrix's columns
remapped, and the model's own fitted ``TfidfTransformer`` and classifier applied:
**bit-identical** to ``pipeline.predict_proba(texts)`` (tests/test_evaluation_counts.py asserts
``np.array_equal`` for every preset on real multilingual text), 5 to 15 times faster.

What it serves: a scikit-learn ``Pipeline`` whose first step is a ``TfidfVectorizer`` or a
``FeatureUnion`` of them (each of the presets in engine/pipelines.py, and a team's pipeline of
that shape). Anything else (a team's own estimator, ``CalibratedClassifierCV``, a vectorizer
subclass, weighted union parts, an analyzer whose callables cannot be fingerprinted) is answered
by the model's ordinary ``predict``/``predict_proba``. An adopted model (:class:`engine.adopt.AdoptedModel`)
is served like the model it wraps, its answers read as its labels; :attr:`EvaluationCounts.served` says how
many texts went which way.

Files, keys and invalidation (like engine/prediction_cache.py):

- one ``.npz`` file per analyzer configuration in ``<home>/cache/counts``, named after a
  fingerprint (SHA-256, first 16 hex digits) of the analyzer's settings (``analyzer``,
  ``ngram_range``, ``preprocessor``, ``tokenizer``, ``token_pattern``, ``lowercase``,
  ``strip_accents``, ``stop_words``, ``input``, ``encoding``, ``decode_error``), the Python
  version and its Unicode database version (``str.lower`` and the regexes follow them), and the
  running scikit-learn version; a file for another scikit-learn is never read and is deleted at
  the next store of its configuration, a file no configuration used for ``STALE_DAYS`` days is
  deleted at any store;
- a callable setting (the presets' ``feature_text``) enters the fingerprint by its code, its
  default arguments and the values of the globals it reads (``FEATURE_CHARS``), so changing the
  function changes the file; a callable that cannot be fingerprinted that way (a closure, a
  ``functools.partial``, one reading a non-constant global) makes its configuration unservable
  here (the ordinary predict is used);
- rows are keyed by :func:`engine.prediction_cache.text_keys`; a store keeps the current
  evaluation set's texts only, and their terms only;
- a file that cannot be read counts as empty (a warning), one that cannot be written is skipped
  (a warning): the counts can be lost, never change an answer.

Size (measured 2026-11-30 on the demo's 20,000 evaluation rows, 14,111 distinct texts, ``char``
preset): 133 stored n-grams a text, 5 bytes each (int32 column, uint8 count), 9.8 MB, read in
~7 ms; the candidate's probabilities from it in 70-230 ms (load 5) against 1.15 s for
``predict_proba`` on the texts. It grows with the evaluation set: ~100 MB at 200,000 texts.

>>> from sklearn.feature_extraction.text import TfidfVectorizer
>>> analyzer_fingerprint(TfidfVectorizer(analyzer="char_wb")) == analyzer_fingerprint(TfidfVectorizer(analyzer="char_wb", min_df=3))
True
>>> analyzer_fingerprint(TfidfVectorizer(preprocessor=lambda t, n=[1]: t)) is None
True
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import logging
import os
import sys
import time
import types
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from engine.adopt import AdoptedModel
from engine.prediction_cache import text_keys
from engine.registry import SKLEARN_VERSION

log = logging.getLogger(__name__)

SUFFIX = ".npz"
# A configuration's file not stored for this many days is deleted at the next store (any configuration).
STALE_DAYS = 7
# The settings that make a vectorizer's analyzer (sklearn CountVectorizer.build_analyzer and decode).
ANALYZER_SETTINGS = ("input", "encoding", "decode_error", "strip_accents", "lowercase", "preprocessor", "tokenizer",
                     "analyzer", "stop_words", "token_pattern", "ngram_range")
_PRIMITIVES = (type(None), bool, int, float, complex, str, bytes)


class _Unservable(Exception):
    """This model or vectorizer is answered the ordinary way (the message says why, for the debug log)."""


def _constant(value: Any) -> bool:
    """A value whose repr fixes it: numbers, strings, None, and tuples/frozensets of them."""
    if isinstance(value, _PRIMITIVES):
        return True
    if isinstance(value, (tuple, frozenset)):
        return all(_constant(v) for v in value)
    return False


def _code_parts(code: types.CodeType, names: set[str]) -> list[Any]:
    """The code's bytecode and constants (nested code included); the global names it reads go into ``names``."""
    parts: list[Any] = [code.co_code.hex(), code.co_names]
    names.update(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            parts.append(_code_parts(const, names))
        elif _constant(const):
            parts.append(repr(const))
        else:
            raise _Unservable(f"constant {type(const).__name__} in {code.co_name}")
    return parts


def _callable_fingerprint(fn: Any, seen: frozenset[int] = frozenset()) -> str:
    """What decides a plain function's behaviour: its code, defaults and the constant globals it reads.

    Raises _Unservable for anything else (closures, partials, callable objects, globals that are
    not constants, standard-library modules or plain functions fingerprinted the same way).
    """
    if not isinstance(fn, types.FunctionType):
        raise _Unservable(f"{type(fn).__name__} is not a plain function")
    if fn.__closure__:
        raise _Unservable(f"{fn.__qualname__} is a closure")
    defaults = (fn.__defaults__ or ()) + tuple(sorted((fn.__kwdefaults__ or {}).items()))
    if not _constant(defaults):
        raise _Unservable(f"{fn.__qualname__} has a default argument that is not a constant")
    names: set[str] = set()
    parts: list[Any] = [fn.__module__, fn.__qualname__, repr(defaults), _code_parts(fn.__code__, names)]
    for name in sorted(names & fn.__globals__.keys()):  # the others are builtins or attribute names
        value = fn.__globals__[name]
        if _constant(value):
            parts.append((name, repr(value)))
        elif isinstance(value, types.ModuleType) and value.__name__.partition(".")[0] in sys.stdlib_module_names:
            parts.append((name, value.__name__))
        elif isinstance(value, types.FunctionType) and id(value) not in seen and len(seen) < 8:
            parts.append((name, _callable_fingerprint(value, seen | {id(fn)})))
        else:
            raise _Unservable(f"{fn.__qualname__} reads global {name!r}, a {type(value).__name__}")
    return hashlib.sha256(repr(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _setting(value: Any) -> str:
    if callable(value):
        return "callable:" + _callable_fingerprint(value)
    if isinstance(value, (list, set, frozenset)):  # stop words given as a collection
        if not all(isinstance(v, str) for v in value):
            raise _Unservable("stop words that are not strings")
        return repr(sorted(value))
    if not _constant(value):
        raise _Unservable(f"setting of type {type(value).__name__}")
    return repr(value)


def analyzer_fingerprint(vectorizer: Any) -> str | None:
    """16 hex digits naming ``vectorizer``'s analyzer configuration in this Python (the file name adds the
    scikit-learn version), or
    None when it cannot be served from kept counts (not exactly a ``TfidfVectorizer``, input other than
    ``"content"``, or a callable setting that cannot be fingerprinted)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        if type(vectorizer) is not TfidfVectorizer:
            raise _Unservable(f"{type(vectorizer).__name__} is not a TfidfVectorizer")
        if vectorizer.input != "content":
            raise _Unservable(f"input={vectorizer.input!r}")
        parts = [(name, _setting(getattr(vectorizer, name))) for name in ANALYZER_SETTINGS]
    except _Unservable as exc:
        log.debug("evaluation counts: not kept for this vectorizer: %s", exc)
        return None
    parts += [("python", sys.version), ("unicode", unicodedata.unidata_version)]  # scikit-learn's: in the file name
    return hashlib.sha256(repr(parts).encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass
class _Counts:
    """N-gram counts of texts: ``matrix`` (texts x terms, CSR, sorted column indices, whole-number data)
    over ``terms`` (sorted by code point, as scikit-learn sorts a fitted vocabulary), rows keyed by ``keys``."""

    keys: np.ndarray
    matrix: sp.csr_array
    terms: list[str]

    def rows(self, keys: np.ndarray) -> np.ndarray:
        return pd.Index(self.keys).get_indexer(keys)


def _empty() -> _Counts:
    return _Counts(np.zeros(0, dtype=np.uint64), sp.csr_array((0, 0), dtype=np.int32), [])


def _count(analyze: Any, texts: Sequence[str], terms: list[str]) -> tuple[sp.csr_array, list[str]]:
    """Counts of ``texts``' n-grams over ``terms`` extended by the new ones (appended, unsorted)."""
    index = {t: i for i, t in enumerate(terms)}
    added: list[str] = []
    indices: list[int] = []
    values: list[int] = []
    indptr = [0]
    for text in texts:
        counter: dict[int, int] = {}
        for term in analyze(text):
            j = index.get(term)
            if j is None:
                if not isinstance(term, str):
                    raise _Unservable(f"the analyzer yields {type(term).__name__}, not str")
                j = index[term] = len(index)
                added.append(term)
            counter[j] = counter.get(j, 0) + 1
        indices.extend(counter)
        values.extend(counter.values())
        indptr.append(len(indices))
    matrix = sp.csr_array((np.asarray(values, dtype=np.int32), np.asarray(indices, dtype=np.int32),
                           np.asarray(indptr, dtype=np.int64)), shape=(len(texts), len(index)))
    return matrix, added


def _merge(old: _Counts, keep: np.ndarray, new_keys: np.ndarray, new: sp.csr_array, added: list[str],
           order: np.ndarray) -> _Counts:
    """Rows ``keep`` of ``old`` and the ``new`` rows (counted over old.terms + ``added``), arranged by
    ``order`` (indices into their concatenation), with sorted terms and only the terms in use."""
    if added:  # insert the new terms at their sorted places: old columns shift right, rows stay sorted
        new_sorted = sorted(range(len(added)), key=added.__getitem__)
        places = np.fromiter((bisect.bisect_left(old.terms, added[i]) for i in new_sorted), dtype=np.int64,
                             count=len(added))
        shift = np.arange(len(old.terms), dtype=np.int64)
        shift += np.searchsorted(places, shift, side="right")
        added_at = np.empty(len(added), dtype=np.int64)
        added_at[new_sorted] = places + np.arange(len(added))
        column = np.concatenate([shift, added_at])
        terms: list[Any] = [None] * (len(old.terms) + len(added))
        for j, t in zip(column.tolist(), old.terms + added):
            terms[j] = t
    else:
        column = np.arange(len(old.terms), dtype=np.int64)
        terms = list(old.terms)
    kept = old.matrix[keep] if old.matrix.shape[0] else sp.csr_array((0, len(old.terms)), dtype=np.int32)
    kept = sp.csr_array((kept.data, column[kept.indices], kept.indptr), shape=(kept.shape[0], len(terms)))
    fresh = sp.csr_array((new.data, column[new.indices], new.indptr), shape=(new.shape[0], len(terms)))
    fresh.sort_indices()
    both = sp.vstack([kept, fresh], format="csr")[order]
    used = np.zeros(len(terms), dtype=bool)
    used[both.indices] = True
    if not used.all():  # texts left the evaluation set: drop the terms only they had (columns stay in order)
        renumber = np.cumsum(used) - 1
        terms = [t for t, u in zip(terms, used.tolist()) if u]
        both = sp.csr_array((both.data, renumber[both.indices], both.indptr), shape=(both.shape[0], len(terms)))
    index = np.int32 if both.nnz < np.iinfo(np.int32).max else np.int64  # scipy keeps indices and indptr alike
    matrix = sp.csr_array((both.data.astype(_count_dtype(both.data), copy=False), both.indices.astype(index),
                           both.indptr.astype(index)), shape=both.shape)
    matrix.has_sorted_indices = True
    keys = np.concatenate([old.keys[keep], new_keys])[order]
    return _Counts(keys, matrix, terms)


def _count_dtype(data: np.ndarray) -> np.dtype:
    top = int(data.max()) if data.size else 0
    return np.dtype(np.uint8 if top < 2 ** 8 else np.uint16 if top < 2 ** 16 else np.int32)


class EvaluationCounts:
    """The n-gram counts of one evaluation set's texts, per analyzer configuration.

    ``texts``: the evaluation texts (str); ``folder``: where counts are kept between retrains
    (``<home>/cache/counts``), or None to keep them in this object only. :meth:`transform`,
    :meth:`predict_proba` and :meth:`predict` take texts of this evaluation set (any subset, any
    order; a text outside it sends the call the ordinary way) and return exactly what the model's
    own method returns. ``served`` counts the texts answered from counts (``"counts"``) and the
    ordinary way (``"ordinary"``); ``counted`` the texts whose n-grams were analysed here.
    """

    def __init__(self, texts: Sequence[str], *, folder: Path | None = None, keys: np.ndarray | None = None):
        self.texts = list(texts)
        self.keys = text_keys(self.texts) if keys is None else np.asarray(keys)
        if self.keys.shape != (len(self.texts),):
            raise ValueError(f"keys must be one per text: {self.keys.shape} for {len(self.texts)} texts")
        self.folder = None if folder is None else Path(folder)
        codes, uniques = pd.factorize(self.keys)
        self.unique_keys = np.asarray(uniques, dtype=np.uint64)
        self._row_of = pd.Index(self.unique_keys)
        self._first = np.unique(codes, return_index=True)[1]  # the first text of each distinct key
        self._counts: dict[str, _Counts] = {}
        self.served = {"counts": 0, "ordinary": 0}
        self.counted = 0

    # -- the model's methods ---------------------------------------------------------------------------

    def predict_proba(self, model: Any, texts: Sequence[str]) -> np.ndarray:
        """``model.predict_proba(texts)``, bit for bit (shape texts x classes)."""
        return self._call(model, texts, "predict_proba")

    def predict(self, model: Any, texts: Sequence[str]) -> np.ndarray:
        """``model.predict(texts)``, bit for bit (one label per text)."""
        return self._call(model, texts, "predict")

    def transform(self, vectorizer: Any, texts: Sequence[str]) -> Any:
        """``vectorizer.transform(texts)`` (sparse, texts x the vectorizer's features), the same arrays."""
        texts = list(texts)
        try:
            return self._transform(vectorizer, texts, self._rows(texts))
        except _Unservable as exc:
            log.debug("evaluation counts: ordinary transform: %s", exc)
            return vectorizer.transform(texts)

    def _call(self, model: Any, texts: Sequence[str], method: str) -> Any:
        texts = list(texts)
        if isinstance(model, AdoptedModel):  # an adopted pipeline: its own probabilities, read as its labels
            proba = self._call(model.model, texts, "predict_proba")
            return proba if method == "predict_proba" else model.classes_[np.asarray(proba).argmax(axis=1)]
        try:
            first, rest = self._split(model)
            rows = self._rows(texts)
            features = self._features(first, texts, rows)
        except _Unservable as exc:
            log.debug("evaluation counts: ordinary %s: %s", method, exc)
            self.served["ordinary"] += len(texts)
            return getattr(model, method)(texts)
        self.served["counts"] += len(texts)
        return getattr(rest, method)(features)

    @staticmethod
    def _split(model: Any) -> tuple[Any, Any]:
        """(first step, the rest as a Pipeline) of a Pipeline these counts can serve."""
        import sklearn
        from sklearn.pipeline import FeatureUnion, Pipeline

        if type(model) is not Pipeline or len(model.steps) < 2:
            raise _Unservable(f"{type(model).__name__} is not a Pipeline of a vectorizer and more")
        if sklearn.get_config().get("transform_output", "default") != "default":
            raise _Unservable("a transform_output other than the default is configured")
        first = model.steps[0][1]
        if type(first) is not FeatureUnion and analyzer_fingerprint(first) is None:
            raise _Unservable(f"the first step is a {type(first).__name__} whose analyzer is not fingerprinted")
        return first, model[1:]

    def _rows(self, texts: list[str]) -> np.ndarray:
        keys = self.keys if texts == self.texts else text_keys(texts)
        rows = self._row_of.get_indexer(keys)
        if (rows < 0).any():
            raise _Unservable(f"{int((rows < 0).sum())} text(s) outside the evaluation set")
        return rows

    def _features(self, first: Any, texts: list[str], rows: np.ndarray) -> Any:
        from sklearn.pipeline import FeatureUnion

        if type(first) is not FeatureUnion:
            return self._transform(first, texts, rows)
        if first.transformer_weights or getattr(first, "_sklearn_output_config", {}).get("transform", "default") != "default":
            raise _Unservable("a FeatureUnion with weights or a configured output")
        kept = [(name, part) for name, part in first.transformer_list if not (isinstance(part, str) and part == "drop")]
        if any(isinstance(part, str) for _, part in kept):
            raise _Unservable("a FeatureUnion with a 'passthrough' part")
        served = [analyzer_fingerprint(part) is not None for _, part in kept]
        if not any(served):
            raise _Unservable("a FeatureUnion without a TfidfVectorizer whose analyzer is fingerprinted")
        # FeatureUnion.transform: each part's transform (a part not served here: its own), then _hstack.
        return first._hstack([self._transform(part, texts, rows) if ok else part.transform(texts)
                              for (_, part), ok in zip(kept, served)])

    def _transform(self, vectorizer: Any, texts: list[str], rows: np.ndarray) -> Any:
        """TfidfVectorizer.transform: CountVectorizer's counts over its vocabulary_ (dtype, sorted columns,
        ``binary``), then its fitted TfidfTransformer (sublinear tf, idf, norm) on them."""
        fingerprint = analyzer_fingerprint(vectorizer)
        vocabulary = getattr(vectorizer, "vocabulary_", None)
        tfidf = getattr(vectorizer, "_tfidf", None)
        if fingerprint is None or vocabulary is None or tfidf is None or not hasattr(tfidf, "idf_") and tfidf.use_idf:
            raise _Unservable("not a fitted TfidfVectorizer with a fingerprinted analyzer")
        counts = self._counts_for(fingerprint, vectorizer)
        sub = counts.matrix if len(rows) == counts.matrix.shape[0] and (rows == np.arange(len(rows))).all() \
            else counts.matrix[rows]
        # One vocabulary lookup per evaluation term (of these rows only, when they are few).
        used = np.arange(len(counts.terms)) if sub.nnz >= len(counts.terms) else np.unique(sub.indices)
        column = np.full(len(counts.terms), -1, dtype=np.int64)
        terms = counts.terms
        column[used] = np.fromiter((vocabulary.get(terms[j], -1) for j in used.tolist()), dtype=np.int64,
                                   count=used.size)
        mapped = column[sub.indices]
        known = mapped >= 0
        indptr = np.concatenate([[0], np.cumsum(known)])[sub.indptr]
        index_dtype = np.int32 if known.sum() <= np.iinfo(np.int32).max else np.int64
        matrix = sp.csr_array((sub.data[known].astype(vectorizer.dtype), mapped[known].astype(index_dtype),
                               indptr.astype(index_dtype)), shape=(len(rows), len(vocabulary)))
        in_order = column[column >= 0]
        if in_order.size > 1 and not (np.diff(in_order) > 0).all():  # a vocabulary given unsorted
            matrix.sort_indices()
        else:
            matrix.has_sorted_indices = True
        if vectorizer.binary:
            matrix.data.fill(1)
        return tfidf.transform(matrix, copy=False)

    # -- the counts of each analyzer configuration ----------------------------------------------------

    def _counts_for(self, fingerprint: str, vectorizer: Any) -> _Counts:
        counts = self._counts.get(fingerprint)
        if counts is not None:
            return counts
        old = self._read(fingerprint)
        where = old.rows(self.unique_keys)
        missing = np.flatnonzero(where < 0)
        if missing.size == 0 and len(old.keys) == len(self.unique_keys) and (where == np.arange(len(where))).all():
            counts = old
        else:
            new, added = _count(vectorizer.build_analyzer(), [self.texts[i] for i in self._first[missing]], old.terms)
            self.counted += int(missing.size)
            found = np.flatnonzero(where >= 0)
            # Concatenated: the old rows where[found], then the new rows; row i of the result is order[i].
            order = np.empty(len(self.unique_keys), dtype=np.int64)
            order[found] = np.arange(found.size)
            order[missing] = found.size + np.arange(missing.size)
            counts = _merge(old, where[found], self.unique_keys[missing], new, added, order)
            self._store(fingerprint, counts)
        self._counts[fingerprint] = counts
        return counts

    def path(self, fingerprint: str) -> Path:
        """The file of one analyzer configuration (``analyzer_fingerprint``) under this scikit-learn."""
        if self.folder is None:
            raise ValueError("these counts are kept in memory only (folder=None)")
        digest = "".join(c for c in fingerprint.lower()[:16] if c in "0123456789abcdef")
        return self.folder / f"{digest}-sklearn{SKLEARN_VERSION}{SUFFIX}"

    def _read(self, fingerprint: str) -> _Counts:
        if self.folder is None:
            return _empty()
        path = self.path(fingerprint)
        if not path.exists():
            return _empty()
        try:
            with np.load(path, allow_pickle=False) as f:
                if str(f["fingerprint"]) != fingerprint:
                    raise ValueError(f"it holds the counts of configuration {f['fingerprint']}")
                keys, indptr, indices, data = f["keys"], f["indptr"], f["indices"], f["data"]
                joined, ends = f["terms"].tobytes().decode("utf-8", "surrogatepass"), f["term_ends"].tolist()
            if (ends[-1] if ends else 0) != len(joined) or (indices.size and int(indices.max()) >= len(ends)):
                raise ValueError("its terms and its counts do not match")
            terms = [joined[a:b] for a, b in zip([0] + ends[:-1], ends)]
            matrix = sp.csr_array((data, indices, indptr), shape=(len(keys), len(terms)))
            matrix.check_format(full_check=False)
            matrix.has_sorted_indices = True
            return _Counts(keys, matrix, terms)
        except Exception as exc:  # damaged or foreign: counted again
            log.warning("evaluation counts: ignoring %s: %s", path, exc)
            return _empty()

    def _store(self, fingerprint: str, counts: _Counts) -> None:
        if self.folder is None:
            return
        path = self.path(fingerprint)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{SUFFIX}")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as out:
                np.savez(out, fingerprint=np.array(fingerprint), keys=counts.keys, indptr=counts.matrix.indptr,
                         indices=counts.matrix.indices, data=counts.matrix.data,
                         terms=np.frombuffer("".join(counts.terms).encode("utf-8", "surrogatepass"), dtype=np.uint8),
                         term_ends=np.cumsum(np.fromiter(map(len, counts.terms), dtype=np.int64,
                                                         count=len(counts.terms))))
            os.replace(tmp, path)
            stale_before = time.time() - STALE_DAYS * 86400
            for other in self.folder.glob(f"*{SUFFIX}"):
                if other != path and (other.name.startswith(path.name[:16]) or other.stat().st_mtime < stale_before):
                    other.unlink(missing_ok=True)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            log.warning("evaluation counts: could not keep counts in %s: %s", self.folder, exc)

