"""Models: every version in the registry, where it served, and the actions on it (retrain, roll back)."""

from pathlib import PurePath

import pandas as pd
import streamlit as st

from engine.status import model_facts
from pages import _charts_models, _ui
from store.commands import FINAL, recent_commands
from store.models import get_model
from store.views import models as views

current = _ui.page_header("Models", "Every trained version, when it served, and the actions on the registry.")
active = current["active"]["version"] if current["active"] else None


@_ui.cached()
def versions() -> pd.DataFrame:
    return views.versions(_ui.context().db)


@_ui.cached()
def rollback_targets() -> list[dict]:
    return views.rollback_targets(_ui.context().db)


@_ui.cached()
def deployment_log() -> pd.DataFrame:
    return views.deployments(_ui.context().db)


@_ui.cached()
def facts(version: str) -> dict:
    return model_facts(get_model(_ui.context().db, version) or {})


@_ui.cached(ttl=1)
def commands_now(limit: int = 6) -> list[dict]:
    return recent_commands(_ui.context().db, limit=limit)


def queued(kind: str, *, args: dict | None = None, label: str, in_callback: bool = False) -> None:
    _ui.queue_command(kind, args=args, label=label, in_callback=in_callback)
    commands_now.clear()


def ask_rollback() -> None:
    st.session_state["pending_rollback"] = {"from": active, "to": st.session_state["rollback_to"]}


def confirm_rollback() -> None:
    pending = st.session_state.pop("pending_rollback", None)
    if pending:
        queued("rollback", args={"to": pending["to"]}, label=f"Roll back from {pending['from']} to {pending['to']}",
               in_callback=True)


def cancel_rollback() -> None:
    st.session_state.pop("pending_rollback", None)


def shown_result(message: str | None) -> str:
    """A command's stored result for a visitor: without paths, shown as written (gate reasons hold class names)."""
    return _ui.literal(_ui.redact(views.command_result(message)))


def history_words(history: list[dict]) -> str:
    return " · ".join(f"{_ui.when(h['ts'])} {views.describe(h['kind'], h['role'], h['other'])}" for h in history)


table = versions()
targets = {t["version"]: t for t in rollback_targets()}

_ui.actions_notice()
retrain, back = st.columns(2, gap="large")
with retrain:
    st.subheader("Retrain")
    st.caption("Train a candidate on all clean labelled data now. It is deployed only if the quality gate accepts it.")
    if st.button("Retrain now", key="retrain_now", type="primary", **_ui.guarded("Queue a manual retrain for the worker")):
        queued("retrain", label="Retrain")
with back:
    st.subheader("Roll back")
    if not targets:
        st.caption("No version to roll back to yet: a version appears here once it has served and been replaced.")
    else:
        st.selectbox(
            "Roll back to", list(targets), key="rollback_to",
            format_func=lambda v: f"{v} · accuracy {_ui.pct(targets[v]['accuracy'])} · last deployed {_ui.when(targets[v]['last_deployed_at'])}",
            help="Only versions that served before (retired) can be restored.",
        )
        pending = st.session_state.get("pending_rollback")
        if pending is not None and pending["to"] not in targets:  # it became active meanwhile: nothing to confirm
            st.session_state.pop("pending_rollback")
            pending = None
        if pending is None:
            guard = _ui.guarded("Asks for confirmation first" if active else
                                "Nothing is deployed, so there is nothing to roll back from")
            st.button("Roll back", key="rollback", disabled=guard["disabled"] or active is None, on_click=ask_rollback,
                      help=guard["help"])
        else:
            old, new = _ui.literal(pending["from"]), _ui.literal(pending["to"])
            st.warning(f"**Roll back from {old} to {new}?** The worker validates {new} "
                       f"and switches every predictor to it; {old} stays in the registry.", icon=":material/undo:")
            yes, no = st.columns(2)
            yes.button("Confirm", key="rollback_confirm", type="primary", on_click=confirm_rollback, width="stretch",
                       **_ui.guarded())
            no.button("Cancel", key="rollback_cancel", on_click=cancel_rollback, width="stretch")


@st.fragment(run_every=2)
def commands() -> None:
    """The latest commands: live progress while they run, their result when they end."""
    st.subheader("Commands")
    rows = commands_now()
    if not rows:
        st.caption("No commands yet. Buttons on this page queue commands; the worker runs them one at a time.")
        return
    worker_alive = _ui.status()["worker"]["alive"]
    # One block of lines, updated in place at every tick (a command never drops out while it changes state).
    lines = []
    for c in rows:
        title = f"#{c['id']} **{_ui.literal(c['kind'])}**" + (f" to {_ui.literal(c['args']['to'])}" if c["args"].get("to") else "")
        title += f" · from {_ui.literal(c['source'])} · queued {_ui.when(c['created_at'])}"
        icon = _ui.STATUS_ICONS.get(c["status"], "")
        if c["status"] == "running":
            lines.append(f"{icon} {title} · {_ui.literal(c['stage'] or 'running')} ({_ui.pct(c['progress'] or 0, digits=0)})")
        elif c["status"] == "queued":
            wait = "waiting for the worker" if worker_alive else "waiting: the worker is not running, it will run this when it starts"
            lines.append(f"{icon} {title} · {wait}")
        elif c["status"] == "failed":
            lines.append(f"{icon} {title} · :red[failed {_ui.when(c['finished_at'])}: {shown_result(c['message'])}]")
        else:
            lines.append(f"{icon} {title} · done {_ui.when(c['finished_at'])}: {shown_result(c['message'])}")
    st.markdown("  \n".join(lines))
    running = next((c for c in rows if c["status"] == "running"), None)
    if running:  # last in the fragment, so its coming and going moves nothing above it
        st.progress(float(running["progress"] or 0),
                    text=f"#{running['id']} {_ui.literal(running['kind'])}: {_ui.literal(running['stage'] or 'running')}")
    # When a command queued from this session ends, refresh the whole page so the tables show its effect.
    # (A command is never final when queued, so the first time one of ours is seen final, it just ended.)
    mine = set(st.session_state.get("commands", []))
    seen = st.session_state.setdefault("ended_commands", set())
    ended = {c["id"] for c in rows if c["id"] in mine and c["id"] not in seen and c["status"] in FINAL}
    if ended:
        seen |= ended
        for read in (versions, rollback_targets, deployment_log, _ui.status):
            read.clear()
        st.rerun()


commands()

if table.empty:
    _ui.empty("No model yet. **Retrain now** needs labelled data first: import some with "
              "`python -m engine import FILE --labeled` (a CSV with text and label columns), "
              "or build the demo with `python -m engine demo`.")

st.subheader("Versions")
shown = pd.DataFrame({
    "Version": table["version"],
    "Status": table["status"],
    "Created": [_ui.when(t) for t in table["created_at"]],
    "Trigger": table["trigger"].fillna("–"),
    "Train rows": table["train_rows"],
    "Accuracy": [_ui.pct(v) for v in table["accuracy"]],
    "Macro-F1": [_ui.pct(v) for v in table["macro_f1"]],
    "Eval rows": table["eval_rows"],
    "Checksum": [s[:10] for s in table["sha256"]],
    "scikit-learn": table["sklearn_version"],
    "Deployed": [f"{n}× · last {_ui.when(t)[:10]}" if n else "never" for n, t in zip(table["times_deployed"], table["last_deployed_at"])],
})
st.dataframe(
    # A missing count is "–", not a grey "None": an adopted version was not trained here.
    shown.style.map(lambda s: f"color: white; background-color: {_ui.COLORS.get(s, _ui.COLORS['candidate'])}", subset=["Status"])
    .format(na_rep="–", subset=["Train rows", "Eval rows"]),
    hide_index=True, key="versions", height=min(35 * (len(shown) + 1) + 3, 560), placeholder="–",
    column_config={
        "Train rows": st.column_config.NumberColumn(help="Rows the version was trained on; – for a version adopted "
                                                         "from the team's fitted file (not trained here)"),
        "Accuracy": st.column_config.TextColumn(help="On the held-out human-labelled texts when the version was trained"),
        "Macro-F1": st.column_config.TextColumn(help="Mean F1 over the intents, same evaluation set"),
        "Eval rows": st.column_config.NumberColumn(help="Held-out human-labelled texts the metrics were measured on"),
        "Checksum": st.column_config.TextColumn(help="First 10 hex digits of the model file's SHA-256"),
        "Deployed": st.column_config.TextColumn(help="How many times the version started serving, and when last"),
    },
)
st.caption(f"{len(table)} versions · {_ui.literal(active or 'no version')} serves now. Every version's file is kept in the "
           "data directory's `models/` folder.")

_ui.chart(_charts_models.version_metrics,
          table[["version", "status", "created_at", "accuracy", "macro_f1", "trigger", "train_rows"]], key="version_metrics")

st.subheader("What a version is")
if not table.empty:
    chosen = st.selectbox("Version", list(table["version"]), key="facts_version",
                          help="Its pipeline (setting `pipeline`, or an adopted file), parameters and scikit-learn")
    f = facts(chosen)
    kind = {"preset": "built-in preset", "factory": "the team's factory", "adopted": "adopted fitted model"}.get(
        f["pipeline_kind"], f["pipeline_kind"] or "unknown")
    st.markdown(f"**Pipeline** {_ui.literal(f['pipeline'] or 'unknown')} ({_ui.literal(kind)}) · "
                f"**scikit-learn** {_ui.literal(f['sklearn_version'] or '–')}")
    if f["calibration"]:
        st.info(f"Calibrated by Retrainer: {_ui.literal(_ui.redact(f['calibration']['why']))}.", icon=":material/tune:")
    if f.get("adopted"):
        # The file's name only: where it lay on the server is the operator's business (the CLI's `models` shows it).
        st.caption(f"Adopted from {_ui.literal(PurePath(f['adopted']['file']).name)} "
                   f"(SHA-256 {_ui.literal(f['adopted']['sha256'][:12])}…)"
                   + (f": {_ui.literal(_ui.redact(f['adopted']['note']))}" if f['adopted'].get("note") else ""))
    with st.expander("Parameters (get_params)"):
        st.json(f["pipeline_params"] or {}, expanded=True)

st.subheader("Deployment history")
st.markdown("  \n".join(f"**{_ui.literal(version)}** ({_ui.literal(status)}): {_ui.literal(history_words(history))}"
                         for version, status, history in zip(table["version"], table["status"], table["history"]) if history))
never = [v for v, n in zip(table["version"], table["times_deployed"]) if not n]
if never:
    st.caption(f"Never deployed: {_ui.literal(', '.join(never))}.")
with st.expander("Deployment log, with reasons"):
    log = deployment_log()
    st.dataframe(pd.DataFrame({
        "When": [_ui.when(t) for t in log["ts"]],
        "What": [views.KIND_WORDS.get(k, k) for k in log["kind"]],
        "Now serving": log["version"],
        "Before": log["previous_version"].fillna("–"),
        "Reason": log["reason"],
    }), hide_index=True, key="deployment_log")
