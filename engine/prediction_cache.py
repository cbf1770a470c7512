"""Each model version's predicted labels on evaluation texts, kept between retrains.

Every retrain scores the champion, and the slow-decay guard up to three more deployed
versions, on the whole evaluation set; that set changes only a little between two
retrains (new human labels join it, nothing else moves). A fitted model's answer to a
text never changes, so each version's answers are kept, one Parquet file per version in
``<home>/cache/predictions``, and only the texts a version has not seen yet are
predicted (its model is not even loaded when none are new). With 20,000 evaluation rows
that turns ~0.4 s per version into a lookup of a few milliseconds (benchmarks/gate_speed.py).

Keys and invalidation:

- the file is named after the version, the first 16 hex digits of its model file's
  SHA-256 (as recorded in the registry) and the running scikit-learn version; a file
  written for another model file or another scikit-learn is never read, and is deleted
  the next time that version's answers are stored;
- a row is keyed by a 64-bit hash of the exact text the model was given
  (``pandas.util.hash_pandas_object``, fixed key); each store keeps the texts of the
  current evaluation set only, so a file never outgrows it;
- a file that cannot be read (damaged, foreign) counts as empty; a file that cannot be
  written (disk full) is skipped with a warning. The cache can lose answers, never change
  a score: whatever it lacks is predicted again.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from engine.registry import SKLEARN_VERSION, check_version

log = logging.getLogger(__name__)

SUFFIX = ".parquet"


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """A 64-bit key per text (uint64), the same in every process and run.

    >>> int(text_keys(["where is my parcel"])[0]) == int(text_keys(["where is my parcel", "x"])[0])
    True
    """
    return pd.util.hash_pandas_object(pd.Series(list(texts), dtype=object), index=False).to_numpy()


class PredictionCache:
    """Predicted labels per (version, model checksum, scikit-learn version) and evaluation text.

    ``folder`` is created on the first store. Labels come back as a list of str in the
    order of the texts asked for.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path(self, version: str, sha256: str) -> Path:
        """The file holding ``version``'s answers for the model file with checksum ``sha256``."""
        digest = "".join(c for c in sha256.lower()[:16] if c in "0123456789abcdef")
        return self.folder / f"{check_version(version)}-{digest}-sklearn{SKLEARN_VERSION}{SUFFIX}"

    def lookup(self, version: str, sha256: str, texts: Sequence[str], *,
               keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(labels, found): an object array of the known labels (None where unknown) and a bool mask.

        ``keys``: ``text_keys(texts)`` when the caller has them already (one hash pass per evaluation set).
        """
        keys = text_keys(texts) if keys is None else keys
        labels = np.full(len(keys), None, dtype=object)
        known = self._read(self.path(version, sha256))
        if known is None or known.empty:
            return labels, np.zeros(len(keys), dtype=bool)
        where = pd.Index(known["key"].to_numpy()).get_indexer(keys)
        found = where >= 0
        labels[found] = known["label"].to_numpy(dtype=object)[where[found]]
        return labels, found

    def store(self, version: str, sha256: str, texts: Sequence[str], labels: Sequence[Any], *,
              keys: np.ndarray | None = None) -> None:
        """Keep ``version``'s answers to ``texts`` (replacing what was kept), atomically; never raises for I/O.

        ``keys``: ``text_keys(texts)`` when the caller has them already.
        """
        path = self.path(version, sha256)
        keys = text_keys(texts) if keys is None else keys
        frame = pd.DataFrame({"key": keys, "label": pd.array([str(x) for x in labels], dtype="string")})
        frame = frame.drop_duplicates("key")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            frame.to_parquet(tmp, index=False)
            os.replace(tmp, path)
            for stale in self.folder.glob(f"{version}-*{SUFFIX}"):
                if stale != path:
                    stale.unlink(missing_ok=True)
        except OSError as exc:  # disk full, read-only, a file where the folder should be
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            log.warning("prediction cache: could not keep %s's answers in %s: %s", version, self.folder, exc)

    def predict(self, version: str, sha256: str, texts: Sequence[str], *, load: Callable[[], Any],
                predict: Callable[[Any, list[str]], Sequence[Any]] | None = None,
                keys: np.ndarray | None = None) -> list[str]:
        """``version``'s label for each text: kept answers, and ``load()``'s model for the rest.

        ``load`` is called only when a text is new to this version; whatever it raises
        (ModelLoadError, say) reaches the caller. The new texts are answered by
        ``predict(model, texts)`` (default ``model.predict(texts)``; the gate passes
        ``EvaluationCounts.predict``, which returns the same labels), and the answers stored.
        ``keys``: ``text_keys(texts)`` when the caller has them already.
        """
        texts = list(texts)
        keys = text_keys(texts) if keys is None else keys
        labels, found = self.lookup(version, sha256, texts, keys=keys)
        if not found.all():
            missing = np.flatnonzero(~found)
            model = load()
            asked = [texts[i] for i in missing]
            answers = model.predict(asked) if predict is None else predict(model, asked)
            labels[missing] = np.asarray(answers, dtype=object)
            self.store(version, sha256, texts, labels, keys=keys)
        return [str(x) for x in labels]

    def _read(self, path: Path) -> pd.DataFrame | None:
        if not path.exists():
            return None
        try:
            return pd.read_parquet(path, columns=["key", "label"])
        except Exception as exc:  # a damaged or foreign file: its answers are predicted again
            log.warning("prediction cache: ignoring %s: %s", path, exc)
            return None
