"""Retrainer's dashboard: ``streamlit run app.py``. One page per file in pages/."""

import streamlit as st

from engine.errors import RetrainerError
from pages import _ui

st.set_page_config(page_title="Retrainer", page_icon="🔁", layout="wide")

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("pages/performance.py", title="Performance", icon=":material/monitoring:"),
    st.Page("pages/history.py", title="Retraining history", icon=":material/history:"),
    st.Page("pages/models.py", title="Models", icon=":material/deployed_code:"),
    st.Page("pages/scheduler.py", title="Scheduler", icon=":material/schedule:"),
    st.Page("pages/data.py", title="Data", icon=":material/database:"),
    st.Page("pages/playground.py", title="Playground", icon=":material/science:"),
    st.Page("pages/sql.py", title="SQL", icon=":material/terminal:"),
]

page = st.navigation(PAGES)
st.session_state["_through_app"] = True
# A deep link opened before app.py ever ran in this server (see pages/_ui.py): go where it pointed.
wanted = st.session_state.pop("_deep_link", None)
if wanted:
    st.switch_page(wanted)
try:
    page.run()
except RetrainerError as exc:  # the store or the settings cannot be used: say so, without a path or a stack
    _ui.show_failure(exc, what=f"The {page.title} page cannot be shown")
