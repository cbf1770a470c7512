"""SQL: ad-hoc, read-only queries over the store, with the schema beside the editor."""

import streamlit as st

from engine.errors import RetrainerError
from pages import _ui
from store.views import sql as views

ROW_LIMIT = 1000
TIMEOUT_S = 5.0
TITLES = [title for title, _ in views.EXAMPLES]

_ui.page_header(
    "SQL",
    "Ask the store anything with one read-only SELECT, run on a snapshot of the store (at most "
    f"{views.SNAPSHOT_SECONDS:g} s old) in a process of its own. Files, the network, writes and settings are out of reach.",
)


@_ui.cached(ttl=30)
def tables():
    db = _ui.context().db
    return views.schema(db), views.row_counts(db)


def load_example() -> None:
    chosen = st.session_state.get("sql_example")
    st.session_state["sql_text"] = dict(views.EXAMPLES).get(chosen, st.session_state.get("sql_text", ""))
    st.session_state.pop("sql_outcome", None)


st.session_state.setdefault("sql_text", views.EXAMPLES[0][1])
views.prepare(_ui.context().db)  # a query process and a current snapshot, made while the page is read
columns, counts = tables()

editor, side = st.columns([5, 2])
with side:
    st.subheader("Tables")
    for table, fields in columns.items():
        rows = counts.get(table, 0)
        with st.expander(f"{table} · {rows:,} {'row' if rows == 1 else 'rows'}"):
            st.markdown("\n".join(f"- `{name}` {kind.lower()}" for name, kind in fields))

with editor:
    if not any(counts.get(table, 0) for table in ("queries", "labels", "models")):
        st.info(
            "The store is empty: no logged queries, labels or models yet, so queries return no rows. "
            "Build the demo with `python -m engine demo`, or import data with `python -m engine import FILE`.",
            icon="ℹ️",
        )
    st.selectbox("Example queries", TITLES, index=0, key="sql_example", on_change=load_example)
    st.text_area("SQL", key="sql_text", height=200, max_chars=views.MAX_SQL_CHARS)
    st.caption(
        f"One SELECT (or WITH … SELECT, VALUES, DESCRIBE, SHOW, SUMMARIZE) over the store's tables. At most "
        f"{ROW_LIMIT:,} rows and {views.BYTE_LIMIT // 2**20} MB are shown; a query is stopped after {TIMEOUT_S:g} s "
        f"or at {views.PROCESS_MEMORY_MB} MB of memory."
    )
    if st.button("Run", type="primary", key="sql_run"):
        try:
            st.session_state["sql_outcome"] = views.run_readonly(
                _ui.context().db, st.session_state["sql_text"], row_limit=ROW_LIMIT, timeout_s=TIMEOUT_S
            )
        except RetrainerError as exc:
            st.session_state["sql_outcome"] = RetrainerError(_ui.redact(str(exc)))

    outcome = st.session_state.get("sql_outcome")
    if isinstance(outcome, Exception):
        # Refused before it ran, or stopped at a limit while it ran: either way, no result.
        st.error(f"**No result:** {_ui.literal(outcome)}", icon=":material/block:")
    elif outcome is not None:
        if outcome.cut_by == "bytes" and len(outcome.rows) == 0:
            shown = f"no row shown: the first row alone is larger than {views.BYTE_LIMIT // 2**20} MB"
        elif outcome.truncated:
            shown = f"first {len(outcome.rows):,} rows (the query returned more)"
        else:
            shown = f"{len(outcome.rows):,} {'row' if len(outcome.rows) == 1 else 'rows'}"
        st.markdown(f"**Result:** {shown} in {outcome.elapsed_s:.2f} s, from data {outcome.snapshot_age_s:.0f} s old")
        if outcome.cut_by == "bytes":
            st.warning(f"Only the first {views.BYTE_LIMIT // 2**20} MB of the result ({len(outcome.rows):,} rows) are "
                       "shown and downloaded: select fewer or shorter columns, or aggregate.", icon=":material/content_cut:")
        elif outcome.truncated:
            st.warning(f"Only the first {ROW_LIMIT:,} rows are shown and downloaded: add a LIMIT or aggregate.", icon=":material/content_cut:")
        st.dataframe(outcome.rows, hide_index=True, key="sql_rows")
        st.download_button("Download CSV", views.to_csv(outcome.rows), file_name="query.csv", mime="text/csv",
                           on_click="ignore", key="sql_csv", icon=":material/download:")
