"""The Data page's figures: traffic by label, confidence, label mix, data quality, the query browser.

Days are calendar days in the viewer's zone, given as a fixed ``offset_minutes`` from UTC
(stored times are naive UTC); ``since_day`` turns "the last N days" into the UTC moment
the first of those days began.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

import pandas as pd

from store import rollups
from store.db import Database
from store.views import funnel

SPAN = "SELECT count(*) AS queries, min(ts) AS first, max(ts) AS last FROM queries"
# Every stored query is counted in the query_counts rollup (store/rollups.py), so its labels are the log's.
PREDICTED_LABELS = "SELECT DISTINCT predicted_label FROM query_counts WHERE predicted_label IS NOT NULL ORDER BY 1"
PREDICTED_LABELS_FROM_LOG = "SELECT DISTINCT predicted_label FROM queries WHERE predicted_label IS NOT NULL ORDER BY 1"

# Each figure twice: from the rollups (whole 15-minute buckets from $edge on, plus the rows of the log in
# [$since, $edge), the part of a bucket a period starts in), and from the log alone (*_FROM_LOG: the
# reference the rollups are tested against, used when the viewer's offset or a threshold does not fit them).
_DAY = "CAST({t} + to_minutes(CAST($offset AS BIGINT)) AS DATE)"
VOLUME_BY_LABEL = f"""
SELECT day, label, sum(n)::BIGINT AS queries FROM (
    SELECT {_DAY.format(t='bucket')} AS day, coalesce(predicted_label, '(none)') AS label, queries AS n
    FROM query_counts WHERE bucket >= $edge
    UNION ALL
    SELECT {_DAY.format(t='ts')}, coalesce(predicted_label, '(none)'), 1 FROM queries WHERE ts >= $since AND ts < $edge
) GROUP BY ALL ORDER BY day, label
"""
VOLUME_BY_LABEL_FROM_LOG = f"""
SELECT {_DAY.format(t='ts')} AS day, coalesce(predicted_label, '(none)') AS label, count(*) AS queries
FROM queries WHERE ts >= $since
GROUP BY ALL ORDER BY day, label
"""
LOW_CONFIDENCE_BY_DAY = f"""
SELECT day, sum(n)::BIGINT AS queries, sum(low)::BIGINT AS low_confidence FROM (
    SELECT {_DAY.format(t='bucket')} AS day, queries AS n, CASE WHEN bin < $bin THEN queries ELSE 0 END AS low
    FROM confidence_counts WHERE bucket >= $edge
    UNION ALL
    SELECT {_DAY.format(t='ts')}, 1, CASE WHEN confidence < $min_confidence THEN 1 ELSE 0 END
    FROM queries WHERE ts >= $since AND ts < $edge AND confidence IS NOT NULL
) GROUP BY day ORDER BY day
"""
LOW_CONFIDENCE_BY_DAY_FROM_LOG = f"""
SELECT {_DAY.format(t='ts')} AS day, count(*) AS queries,
       count(*) FILTER (WHERE confidence < $min_confidence) AS low_confidence
FROM queries WHERE ts >= $since AND confidence IS NOT NULL
GROUP BY day ORDER BY day
"""
# Bin k of ``bins`` holds k/bins <= confidence < (k+1)/bins, compared as doubles; out-of-range values
# join the first or last bin. From the rollup's 0.01 bins when ``bins`` divides 100 ($width = 100 / bins).
CONFIDENCE_BINS = f"""
SELECT least(greatest(CAST(floor(b / $width) AS BIGINT), 0), $bins - 1) AS bin, sum(n)::BIGINT AS queries FROM (
    SELECT bin AS b, queries AS n FROM confidence_counts WHERE bucket >= $edge
    UNION ALL
    SELECT {rollups.bin_sql('confidence')}, 1 FROM queries WHERE ts >= $since AND ts < $edge AND confidence IS NOT NULL
) GROUP BY 1 ORDER BY 1
"""
CONFIDENCE_BINS_FROM_LOG = f"""
SELECT least(greatest({rollups.bin_sql('confidence', per_unit='$bins')}, 0), $bins - 1) AS bin, count(*) AS queries
FROM queries WHERE ts >= $since AND confidence IS NOT NULL
GROUP BY bin ORDER BY bin
"""
TRAFFIC_MIX = """
SELECT label, sum(n)::BIGINT AS n FROM (
    SELECT predicted_label AS label, queries AS n FROM query_counts WHERE bucket >= $edge AND predicted_label IS NOT NULL
    UNION ALL
    SELECT predicted_label, 1 FROM queries WHERE ts >= $since AND ts < $edge AND predicted_label IS NOT NULL
) GROUP BY label
"""
TRAFFIC_MIX_FROM_LOG = """
SELECT predicted_label AS label, count(*) AS n FROM queries
WHERE ts >= $since AND predicted_label IS NOT NULL GROUP BY label
"""
# The proxy: every human label, plus every pseudo label at or above min_confidence ($bin: its 0.01 bin).
PROXY_TRAINING_MIX = """
SELECT label, sum(n)::BIGINT AS n FROM (
    SELECT lower(trim(label)) AS label, count(*) AS n FROM labels GROUP BY 1
    UNION ALL
    SELECT lower(trim(predicted_label)), queries FROM label_confidence_counts WHERE $use_pseudo AND bin >= $bin
) WHERE label <> '' GROUP BY label
"""
PROXY_TRAINING_MIX_FROM_LOG = """
SELECT label, count(*) AS n FROM (
    SELECT lower(trim(label)) AS label FROM labels
    UNION ALL
    SELECT lower(trim(predicted_label)) FROM queries
    WHERE $use_pseudo AND predicted_label IS NOT NULL AND confidence >= $min_confidence
) WHERE label <> '' GROUP BY label
"""
CANDIDATE_ROWS = """
SELECT (SELECT count(*) FROM labels)
     + (SELECT coalesce(sum(queries), 0) FROM label_confidence_counts WHERE $use_pseudo)::BIGINT
"""
CANDIDATE_ROWS_FROM_LOG = """
SELECT (SELECT count(*) FROM labels)
     + (SELECT count(*) FROM queries WHERE $use_pseudo AND predicted_label IS NOT NULL)
"""
RETRAINS_WITH_DATA = "SELECT count(*) FROM retrains WHERE rows_in IS NOT NULL"
LAST_FUNNEL = """
SELECT id, coalesce(finished_at, started_at) AS ts, status, trigger, rows_in, malformed, low_confidence, conflicts,
       duplicates, reserved_for_eval, train_rows, eval_rows, over_training_cap
FROM retrains WHERE rows_in IS NOT NULL ORDER BY id DESC LIMIT 1
"""
# The latest true label of each query; a text pattern is matched with ILIKE and '\' as escape.
_FEEDBACK = """
WITH feedback AS (
    SELECT query_id, arg_max(label, ts) AS true_label
    FROM labels WHERE query_id IS NOT NULL GROUP BY query_id
)
"""
# Every filter but the feedback one looks at the log alone.
_QUERY_FILTERS = r"""
WHERE ($pattern::VARCHAR IS NULL OR q.text ILIKE $pattern ESCAPE '\')
  AND (len($labels::VARCHAR[]) = 0 OR list_contains($labels::VARCHAR[], q.predicted_label))
  AND ($low::DOUBLE IS NULL OR q.confidence >= $low)
  AND ($high::DOUBLE IS NULL OR q.confidence <= $high)
  AND ($since::TIMESTAMP IS NULL OR q.ts >= $since)
  AND ($until::TIMESTAMP IS NULL OR q.ts < $until)
"""
_MATCHING = (
    "\nFROM queries q LEFT JOIN feedback f ON f.query_id = q.id" + _QUERY_FILTERS
    + "  AND ($has_feedback::BOOLEAN IS NULL OR (f.query_id IS NOT NULL) = $has_feedback)\n"
)
SEARCH_QUERIES = (
    _FEEDBACK
    + "SELECT q.id, q.ts, q.text, q.predicted_label, q.confidence, f.true_label, q.model_version, q.source"
    + _MATCHING
    + "ORDER BY q.ts DESC, q.id LIMIT $limit"
)
# Without a feedback filter the newest rows are picked from the log alone, and only those few are
# joined to their labels: 40-60 ms instead of 300-600 ms at 1M queries (benchmarks/dashboard.py).
SEARCH_NEWEST = (
    "WITH top AS (SELECT q.id, q.ts, q.text, q.predicted_label, q.confidence, q.model_version, q.source "
    "FROM queries q" + _QUERY_FILTERS + "ORDER BY q.ts DESC, q.id LIMIT $limit)\n"
    "SELECT top.id, top.ts, top.text, top.predicted_label, top.confidence, f.true_label, top.model_version, "
    "top.source FROM top LEFT JOIN (SELECT query_id, arg_max(label, ts) AS true_label FROM labels "
    "WHERE query_id IN (SELECT id FROM top) GROUP BY query_id) f ON f.query_id = top.id "
    "ORDER BY top.ts DESC, top.id"
)
COUNT_NEWEST = "SELECT count(*) FROM (SELECT 1 FROM queries q" + _QUERY_FILTERS + "LIMIT $cap + 1)"
# The start of the newest bucket from which on at least $n queries were logged before $until (None: fewer).
NEWEST_CUTOFF = """
SELECT max(bucket) FROM (
    SELECT bucket, sum(sum(queries)) OVER (ORDER BY bucket DESC ROWS UNBOUNDED PRECEDING) AS newer
    FROM query_counts WHERE $until::TIMESTAMP IS NULL OR bucket < $until GROUP BY bucket
) WHERE newer >= $n
"""
# Counting stops at $cap + 1 matches: an exact count of a million rows is not worth a second scan.
COUNT_MATCHES = _FEEDBACK + "SELECT count(*) FROM (SELECT 1" + _MATCHING + "LIMIT $cap + 1)"
COUNT_CAP = 10_000
RESULT_COLUMNS = ["id", "ts", "text", "predicted_label", "confidence", "true_label", "model_version", "source"]


def since_day(now: datetime, *, days: int, offset_minutes: int = 0) -> datetime:
    """The naive-UTC moment the first of the last ``days`` local days began (today counts as one).

    >>> since_day(datetime(2026, 3, 4, 12, 0), days=7, offset_minutes=60)
    datetime.datetime(2026, 2, 25, 23, 0)
    """
    offset = timedelta(minutes=offset_minutes)
    first = (now + offset).date() - timedelta(days=days - 1)
    return datetime.combine(first, time()) - offset


def local_day_start(day: date, *, offset_minutes: int = 0) -> datetime:
    """The naive-UTC moment a local calendar day began."""
    return datetime.combine(day, time()) - timedelta(minutes=offset_minutes)


def span(db: Database) -> dict[str, Any]:
    """How many queries are logged and the first and last time (naive UTC; None when empty)."""
    with db.read() as con:
        queries, first, last = con.execute(SPAN).fetchone()
    return {"queries": queries, "first": first, "last": last}


def predicted_labels(db: Database, *, from_log: bool = False) -> list[str]:
    """Every label a model has predicted, sorted (from the query_counts rollup; ``from_log``: from the log)."""
    with db.read() as con:
        return [r[0] for r in con.execute(PREDICTED_LABELS_FROM_LOG if from_log else PREDICTED_LABELS).fetchall()]


def _period(since: datetime, offset_minutes: int, from_log: bool) -> datetime | None:
    """The first whole 15-minute bucket of a period starting at ``since``; None: read the log alone."""
    if from_log or not rollups.whole_buckets(offset_minutes):
        return None
    return rollups.bucket_ceil(since)


def volume_by_label(db: Database, *, since: datetime, offset_minutes: int = 0, from_log: bool = False) -> pd.DataFrame:
    """Queries per local day and predicted label since ``since``: columns day, label, queries.

    From the rollups (store/rollups.py) when local days are whole buckets; ``from_log=True`` reads the log alone.
    """
    edge = _period(since, offset_minutes, from_log)
    params = {"since": since, "offset": offset_minutes}
    with db.read() as con:
        if edge is None:
            return con.execute(VOLUME_BY_LABEL_FROM_LOG, params).df()
        return con.execute(VOLUME_BY_LABEL, {**params, "edge": edge}).df()


def low_confidence_by_day(db: Database, *, since: datetime, min_confidence: float, offset_minutes: int = 0,
                          from_log: bool = False) -> pd.DataFrame:
    """Per local day: queries with a confidence, those below ``min_confidence``, and their share.

    From the rollups when local days are whole buckets and ``min_confidence`` is on the 0.01 grid.
    """
    edge = _period(since, offset_minutes, from_log)
    bin_ = rollups.grid_bin(min_confidence)
    params = {"since": since, "offset": offset_minutes, "min_confidence": min_confidence}
    with db.read() as con:
        if edge is None or bin_ is None:
            frame = con.execute(LOW_CONFIDENCE_BY_DAY_FROM_LOG, params).df()
        else:
            frame = con.execute(LOW_CONFIDENCE_BY_DAY, {**params, "edge": edge, "bin": bin_}).df()
    frame["share"] = frame["low_confidence"] / frame["queries"]
    return frame


def confidence_histogram(db: Database, *, since: datetime, bins: int = 20, from_log: bool = False) -> pd.DataFrame:
    """Queries per confidence bin since ``since`` (every bin, empty ones as 0): bin_start, bin_end, queries.

    Bins are [k/bins, (k+1)/bins) (compared as doubles); the last one includes 1.0 and anything
    above, the first anything below 0. From the rollup's 0.01 bins when ``bins`` divides 100.
    """
    edge = _period(since, 0, from_log or rollups.BINS_PER_UNIT % bins != 0)
    with db.read() as con:
        if edge is None:
            counts = con.execute(CONFIDENCE_BINS_FROM_LOG, {"since": since, "bins": bins}).df()
        else:
            counts = con.execute(CONFIDENCE_BINS, {"since": since, "edge": edge, "bins": bins,
                                                   "width": rollups.BINS_PER_UNIT // bins}).df()
    frame = pd.DataFrame({"bin": range(bins)}).merge(counts, on="bin", how="left")
    frame["queries"] = frame["queries"].fillna(0).astype(int)
    frame["bin_start"] = frame["bin"] / bins
    frame["bin_end"] = (frame["bin"] + 1) / bins
    return frame[["bin_start", "bin_end", "queries"]]


def mix_inputs(db: Database, *, since: datetime, min_confidence: float, use_pseudo_labels: bool,
               exact_limit: int, from_log: bool = False) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """What ``engine.label_mix.training_mix`` needs from the store, in one read.

    Returns (traffic, proxy). ``traffic``: columns label, n (queries predicted as the label since
    ``since``). ``proxy``: None when at most ``exact_limit`` candidate rows (human labels + pseudo
    labels) exist, so the caller can rebuild the training set exactly; otherwise columns label, n:
    every human label plus every pseudo label at or above ``min_confidence`` (one SQL aggregate,
    no de-duplication, conflicts or evaluation split). The query side comes from the rollups
    (store/rollups.py) unless ``from_log`` or ``min_confidence`` is off the 0.01 grid.
    """
    bin_ = rollups.grid_bin(min_confidence)
    edge = _period(since, 0, from_log or bin_ is None)
    params = {"use_pseudo": use_pseudo_labels, "min_confidence": min_confidence}
    with db.read() as con:
        if edge is None:
            candidates = con.execute(CANDIDATE_ROWS_FROM_LOG, {"use_pseudo": use_pseudo_labels}).fetchone()[0]
            traffic = con.execute(TRAFFIC_MIX_FROM_LOG, {"since": since}).df()
            proxy = con.execute(PROXY_TRAINING_MIX_FROM_LOG, params).df() if candidates > exact_limit else None
        else:
            candidates = con.execute(CANDIDATE_ROWS, {"use_pseudo": use_pseudo_labels}).fetchone()[0]
            traffic = con.execute(TRAFFIC_MIX, {"since": since, "edge": edge}).df()
            proxy = (con.execute(PROXY_TRAINING_MIX, {"use_pseudo": use_pseudo_labels, "bin": bin_}).df()
                     if candidates > exact_limit else None)
    return traffic, proxy


def quality(db: Database) -> dict[str, Any]:
    """The data-quality funnel of the latest retrain that built a training set.

    Returns {"retrains": how many retrains built one, "last": {id, ts, status, trigger} or None,
    "steps": :func:`store.views.funnel.steps` of the last one, or None}. Counts are per retrain:
    summing them over retrains would count the same rows again at every retrain.
    """
    with db.read() as con:
        count = con.execute(RETRAINS_WITH_DATA).fetchone()[0]
        last = con.execute(LAST_FUNNEL).fetchone()
    if last is None:
        return {"retrains": count, "last": None, "steps": None}
    return {
        "retrains": count,
        "last": {"id": last[0], "ts": last[1], "status": last[2], "trigger": last[3]},
        "steps": funnel.steps(dict(zip((*funnel.COLUMNS, funnel.CAPPED[0]), last[4:]))),
    }


def like_pattern(text: str) -> str:
    r"""An ILIKE pattern matching ``text`` literally anywhere ('\' escapes %, _ and itself).

    >>> like_pattern("100%_a\\b")
    '%100\\%\\_a\\\\b%'
    """
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_queries(
    db: Database,
    *,
    text: str | None = None,
    labels: tuple[str, ...] = (),
    low: float | None = None,
    high: float | None = None,
    has_feedback: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 200,
    count_cap: int = COUNT_CAP,
) -> tuple[pd.DataFrame, int]:
    """Logged queries matching every given filter, newest first, at most ``limit``; and how many match
    (exact up to ``count_cap``; ``count_cap + 1`` means "more than ``count_cap``").

    ``text`` is found case-insensitively anywhere in the query (% and _ are literal);
    ``labels`` are predicted labels (empty: any); ``low``/``high`` bound the confidence
    (inclusive; a bound excludes queries without a confidence); ``has_feedback`` keeps only
    queries with (True) or without (False) a true label; ``since`` <= ts < ``until``.
    Columns: RESULT_COLUMNS (``true_label`` is the latest person's label, or None).
    """
    text = text.strip() if text else ""
    params = {
        "pattern": like_pattern(text) if text else None,
        "labels": list(labels),
        "low": low,
        "high": high,
        "has_feedback": has_feedback,
        "since": since,
        "until": until,
    }
    search, count = SEARCH_QUERIES, COUNT_MATCHES
    if has_feedback is None:
        search, count = SEARCH_NEWEST, COUNT_NEWEST
        del params["has_feedback"]
    with db.read() as con:
        frame = None
        if has_feedback is None:
            # The newest rows lie in the newest buckets that hold ``limit`` queries (query_counts): look there
            # first (a few row groups). Rows before that moment all rank below those, so when the look finds
            # ``limit`` matches they are the answer; otherwise the whole range is searched.
            cutoff = con.execute(NEWEST_CUTOFF, {"until": until, "n": int(limit)}).fetchone()[0]
            if cutoff is not None and (since is None or cutoff > since):
                frame = con.execute(search, {**params, "since": cutoff, "limit": int(limit)}).df()
                frame = frame if len(frame) >= limit else None
        if frame is None:
            frame = con.execute(search, {**params, "limit": int(limit)}).df()
        matches = con.execute(count, {**params, "cap": int(count_cap)}).fetchone()[0]
    return frame[RESULT_COLUMNS], matches
