"""What every page shares: the context, cached reads, the worker banner, formats, colours, commands.

Pages import from here; nothing here runs SQL (store/ does) or holds a connection
(``Context`` holds only paths, so caching it as a resource is safe).
"""

from __future__ import annotations

import contextlib

import hmac
import logging
import math
import re
from pathlib import Path
from datetime import date, datetime, time, timezone
from typing import Any, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import streamlit as st

from engine.access import action_token
from engine.commands import submit
from engine.config import PROJECT_ROOT, load_settings
from engine.context import Context
from engine.demo_build import read_progress
from engine.errors import RetrainerError
from engine.status import system_status

log = logging.getLogger(__name__)

# One colour per kind of decision, on every page.
COLORS = {
    "accepted": "#16a34a",
    "rejected": "#dc2626",
    "failed": "#6b7280",
    "rollback": "#f59e0b",
    "fallback": "#7c3aed",
    "active": "#2563eb",
    "champion": "#2563eb",
    "candidate": "#64748b",
    "retired": "#94a3b8",
    "running": "#0ea5e9",
    "inconclusive": "#d97706",
    "drift": "#db2777",
}
STATUS_ICONS = {"accepted": ":green[:material/check_circle:]", "rejected": ":red[:material/block:]", "failed": ":orange[:material/warning:]", "skipped": ":gray[:material/skip_next:]", "running": ":blue[:material/progress_activity:]", "queued": ":gray[:material/schedule:]", "done": ":green[:material/check_circle:]"}


@st.cache_resource
def context() -> Context:
    """The settings and store paths (no open connection: safe to share)."""
    return Context.open(load_settings())


def cached(ttl: float = 5.0) -> Callable:
    """``st.cache_data`` with a short time-to-live, for read functions taking hashable arguments."""
    return st.cache_data(ttl=ttl, show_spinner=False)


@cached(ttl=3)
def status() -> dict[str, Any]:
    return system_status(context())


@st.cache_resource(ttl=600, max_entries=256, show_spinner=False)
def _figure(module: str, name: str, args: tuple, kwargs: dict) -> Any:
    import importlib

    return getattr(importlib.import_module(module), name)(*args, **kwargs)


def chart(build: Callable[..., Any], *args: Any, key: str, **kwargs: Any) -> None:
    """Draw ``build(*args, **kwargs)``, a Vega-Lite spec (a dict, see pages/_vega.py), built once per distinct input.

    A chart's input changes only when the store does, so the built chart is kept as a shared resource
    (never copied or pickled; Streamlit only reads it), keyed by the builder and a hash of its input.
    """
    st.vega_lite_chart(spec=_figure(build.__module__, build.__name__, args, kwargs), key=key, width="stretch")


# Every ASCII punctuation character: CommonMark lets a backslash escape each one, and an escaped one is plain text
# (no emphasis, link, HTML, code, table, maths "$", or Streamlit directive such as ":red[" or ":material/").
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# Some rewrites work on the text after escapes are read, so a backslash cannot stop them: Streamlit's typography
# ("->", "<-", "<->", "--", ">=", "<=", "~=" become arrows and signs), its ":name:" emoji and logo, and GFM's
# literal links ("http://…", "www.…", "name@host.org"). An invisible word joiner (U+2060) inside each leaves the
# text as typed.
_TYPOGRAPHY = re.compile(r"(?<=[<>~=-])(?=[<>=-])")
_SHORTCODE = re.compile(r"(?<=:)(?=[\w+-]+:)|(?<=:)(?=//)|(?<=@)|(?<=[wW]{3})(?=\.)")
WORD_JOINER = "\u2060"


def literal(value: Any) -> str:
    r"""Markdown that Streamlit shows as exactly the text of ``value``: for anything that came from a user or the
    store (queries, labels, event messages, reasons, versions, file names) inside a Markdown string, a metric, a
    caption, an alert, a toast, a help tooltip, a widget label or an ``st.table`` cell.

    Every ASCII punctuation character is backslash-escaped; the character pairs Streamlit would turn into arrows,
    signs, emoji or links get an invisible word joiner (U+2060) between them; whitespace runs, line breaks included,
    become one space (the text is shown on one line, as a browser shows it anyway). Do not put the result inside
    backticks: a code span shows backslashes as they are.

    >>> print(literal("**bold** $x^2$ :red[alarm] [click](#top) <b>html</b>"))
    \*\*bold\*\* \$x\^2\$ \:red\[alarm\] \[click\]\(\#top\) \<b\>html\<\/b\>
    """
    text = " ".join(str(value).split())
    text = _SHORTCODE.sub(WORD_JOINER, _TYPOGRAPHY.sub(WORD_JOINER, text))
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


def pct(value: float | None, *, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.{digits}f}%"


def pts(value: float | None) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return f"{100 * value:+.1f} pts"


def user_zone() -> ZoneInfo | timezone:
    """The browser's time zone when Streamlit knows it, else the server's."""
    name = getattr(st.context, "timezone", None)
    if name:
        with contextlib.suppress(ZoneInfoNotFoundError, ValueError):  # unknown zone: the server's below
            return ZoneInfo(name)
    return datetime.now().astimezone().tzinfo or timezone.utc


def local(value: Any) -> datetime | None:
    """A stored naive-UTC time in the user's zone (naive, for display)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=timezone.utc).astimezone(user_zone()).replace(tzinfo=None)


def utc_midnight(day: date) -> datetime:
    """The start of ``day`` in the viewer's zone, as stored times are: naive UTC."""
    return datetime.combine(day, time()).replace(tzinfo=user_zone()).astimezone(timezone.utc).replace(tzinfo=None)


def local_day_start(now: datetime) -> datetime:
    """The start of the viewer's day holding ``now`` (naive UTC in, naive UTC out)."""
    return utc_midnight(now.replace(tzinfo=timezone.utc).astimezone(user_zone()).date())


def when(value: Any) -> str:
    moment = local(value)
    return "–" if moment is None else f"{moment:%Y-%m-%d %H:%M}"


def ago(seconds: float | None) -> str:
    """How long ago, in words; a moment a little in the future (another machine's clock) is "just now"."""
    if seconds is None:
        return "never"
    if seconds < 1:
        return "just now"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"


def until(moment: Any, *, now: datetime) -> str:
    """How far away a stored naive-UTC moment is from ``now``, in words ("in 14 min"; "now" once it has passed)."""
    seconds = (moment - now).total_seconds()
    if seconds < 60:
        return "now"
    if seconds < 5400:
        return f"in {seconds / 60:.0f} min"
    if seconds < 172800:
        return f"in {seconds / 3600:.1f} h"
    return f"in {seconds / 86400:.1f} days"


def day_time(value: Any) -> str:
    """A stored naive-UTC moment, short enough for a metric card: "Sun 03:00" within the week, else "Dec 06"."""
    moment = local(value)
    if moment is None:
        return "–"
    if abs((moment - local(datetime.now(timezone.utc).replace(tzinfo=None))).days) < 6:
        return f"{moment:%a %H:%M}"
    return f"{moment:%b %d}"


def shown_points(new: float | None, old: float | None) -> float | None:
    """The change between two shares in percentage points, from the stored values, rounded only where it is
    shown (``f"{points:+.1f}"``), as the gate's reasons write it (engine/gate.py: ``100 * (candidate - champion)``):
    0.6316 against 0.4895 is +14.2 pts in the History table and in its reason alike, although the rounded
    percentages 63.2% and 48.9% differ by 14.3. None when either is missing. Every page's changes use it."""
    if new is None or old is None or any(isinstance(v, float) and math.isnan(v) for v in (new, old)):
        return None
    return 100 * (new - old)


def change(new: float | None, old: float | None, *, against: str) -> dict[str, Any]:
    """``st.metric`` keyword arguments for the change between two shares (:func:`shown_points`).
    No change is grey, without an arrow."""
    points = shown_points(new, old)
    if points is None:
        return {"delta": None}
    if abs(points) < 0.05:
        return {"delta": f"±0.0 pts vs {against}", "delta_color": "off", "delta_arrow": "off"}
    return {"delta": f"{points:+.1f} pts vs {against}"}


def _through_navigation() -> None:
    """Make sure the page runs inside app.py's ``st.navigation``.

    Streamlit still knows the old "pages/ folder" mode: until ``st.navigation`` has run
    once in a server process, a deep link such as ``/models`` runs ``pages/models.py``
    on its own (no wide layout, a sidebar listing every file in pages/). When that
    happens, switch the server to navigation mode and rerun through app.py, which then
    opens the page that was asked for.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory and "_through_app" not in st.session_state:
        import sys

        caller = sys._getframe(2).f_globals.get("__file__")
        PagesManager.uses_pages_directory = False
        if caller:
            st.session_state["_deep_link"] = f"pages/{Path(caller).name}"
        st.rerun()


def page_header(title: str, caption: str) -> dict[str, Any]:
    """Title, caption and the worker banner; returns the system status for the page."""
    _through_navigation()
    if _action_token():
        st.sidebar.text_input("Action token", type="password", key="action_token_input",
                              help="Buttons that change something need the token set in .streamlit/secrets.toml")
    st.title(title)
    st.caption(caption)
    show_notices()
    current = status()
    worker = current["worker"]
    building = read_progress(context().settings.home)
    if building is not None:
        demo_build_banner()
    elif not worker["alive"]:
        st.warning(
            "**The worker is not running**: nothing is retrained, ingested or scheduled until it is. "
            "Start it with `python -m engine worker` (or `make run`). Buttons still queue their commands; "
            "the worker runs them when it starts.",
            icon=":material/warning:",
        )
    if current["fallback"]:
        st.error(f"**Fallback in use**: {literal(redact(str(current['fallback'].get('reason'))))}", icon=":material/support:")
    return current


def demo_building() -> bool:
    """Whether ``make run`` is building the demo now (engine.demo_build)."""
    return read_progress(context().settings.home) is not None


@st.fragment(run_every=3)
def demo_build_banner() -> None:
    """While ``make run`` builds the demo: its progress, refreshed every 3 s; the whole page reruns as days
    are added (every 10 simulated days) and once the build ends, so its figures fill in."""
    building = read_progress(context().settings.home)
    shown = st.session_state.get("_demo_day_shown")
    if building is None or (shown is not None and building.day - shown >= 10):
        st.session_state["_demo_day_shown"] = None if building is None else building.day
        status.clear()
        st.rerun(scope="app")
    if shown is None:
        st.session_state["_demo_day_shown"] = building.day
    left = building.remaining_s
    eta = f", about {left:.0f} s left" if left is not None else ""
    st.info(f"**Building the demo**: day {building.day} of {building.days}{eta}. The pages fill in as days are "
            "replayed; the worker and the HTTP API start when the build is done.", icon=":material/hourglass_top:")
    st.progress(building.day / max(1, building.days))


# An absolute path in a message: "~/" or "/" and a folder, not after a letter, digit or dot ("and/or", "MB/s" and
# "1/2" stay), "<" ("</b>" in a label is HTML), ":" or "/" (the "//" of a URL). A single "/word" (a chat command,
# a URL route) names no place on the server and stays.
_PATH = re.compile(r"(?<![\w.~<>:/])(?:~/|/(?=[^\s'\"()\[\]<>,;/]+/))[^\s'\"()\[\]<>,;]*")


def redact(message: str) -> str:
    """``message`` with every file path replaced by where it is, for a visitor's eyes.

    A dashboard visitor is not the operator: the data directory, the project folder and any
    other absolute path become ``<data directory>``, ``<project>`` or ``<path>`` (the server's log
    keeps the full text).

    >>> redact("cannot open the store /srv/x/retrainer.duckdb: and/or 5 MB/s")
    'cannot open the store <path>: and/or 5 MB/s'
    """
    try:
        home = str(context().settings.home.resolve())  # the cached context: no settings file read per message
    except RetrainerError:  # the store cannot be opened: the settings alone may still name the data directory
        try:
            home = str(load_settings().home.resolve())
        except RetrainerError:  # settings that cannot load: every path below becomes <path>
            home = None
    if home and home != "/":
        message = _at_path_boundary(home).sub("<data directory>", message)
    message = _at_path_boundary(str(PROJECT_ROOT)).sub("<project>", message)
    return _PATH.sub(_path_word, message)


def _at_path_boundary(folder: str) -> re.Pattern:
    """``folder`` where it is a whole path or a path's start: not "/tmp/b1" inside "/tmp/b1-work" or "/x/tmp/b1".

    >>> _at_path_boundary("/tmp/b1").sub("<project>", "/tmp/b1/a.csv, /tmp/b1-work/b.csv, /tmp/b1.")
    '<project>/a.csv, /tmp/b1-work/b.csv, <project>.'
    """
    return re.compile(r"(?<![\w.~/-])" + re.escape(folder.rstrip("/")) + r"(?=/|[.:]?(?:\s|$)|[\s'\"()\[\]<>,;]|$)")


def _path_word(match: re.Match) -> str:
    found = match.group()
    kept = found.rstrip(".:")  # the sentence's punctuation after a path stays
    return "<path>" + found[len(kept):]


def show_failure(exc: BaseException, *, what: str) -> None:
    """Log ``exc`` in full for the operator; show the visitor one line without paths or a stack."""
    log.error("%s: %s", what, exc, exc_info=not isinstance(exc, RetrainerError))
    text = str(exc) if isinstance(exc, RetrainerError) else f"an internal error ({type(exc).__name__})"
    st.error(f"**{literal(what)}**: {literal(redact(text))}. The server's log has the details.", icon=":material/error:")


def _action_token() -> str | None:
    """The ``action_token`` from Streamlit secrets (.streamlit/secrets.toml), if one is set (see engine.access)."""
    try:
        return action_token(secrets=st.secrets)
    except Exception:  # no secrets file at all
        return None


def actions_refused() -> str | None:
    """Why inputs that write to the store are refused now, or None when they are allowed.

    They are retrain, rollback, pause, resume, labels and the Playground's logged queries.
    With an ``action_token`` secret, a person must type it in the sidebar. Without one, they are
    allowed only when the operator has declared the dashboard private (setting
    ``dashboard_private``): the address the server listens on proves nothing, since behind a
    reverse proxy or a port forward every visitor arrives from 127.0.0.1.
    """
    if demo_building():
        return "The demo is being built: buttons work once it is done and the worker has started."
    token = _action_token()
    if token:
        given = st.session_state.get("action_token_input") or ""
        if hmac.compare_digest(given.encode(), token.encode()):
            return None
        return "Enter the action token in the sidebar to use this button."
    if context().settings.dashboard_private:
        return None
    return ("Actions are disabled: no action_token is set in .streamlit/secrets.toml and the dashboard is not "
            "declared private. Set a token (see the README, \"Exposing the dashboard\"), or set "
            "dashboard_private = true if only trusted people can reach this dashboard.")


def guarded(help: str | None = None) -> dict[str, Any]:
    """Keyword arguments for a button that writes: disabled, with the reason as its help, while
    :func:`actions_refused` refuses; else enabled with ``help``. The click handler still checks
    (:func:`action_allowed`), since a page can sit open while the token or the setting changes."""
    reason = actions_refused()
    return {"disabled": True, "help": reason} if reason else {"disabled": False, "help": help}


def actions_notice() -> None:
    """One line above a page's buttons saying why they are disabled, when they are."""
    reason = actions_refused()
    if reason:
        st.caption(f":material/lock: {reason}")


def action_allowed() -> bool:
    """Show why an action is refused (and return False), or return True."""
    reason = actions_refused()
    if reason:
        st.error(reason, icon=":material/lock:")
        return False
    return True


def send_feedback(clf: Any, query_id: str, label: str) -> bool:
    """Record a person's label for a logged query through the Classifier; show why if it was not."""
    if not action_allowed():
        return False
    try:
        clf.feedback(query_id, label)
    except RetrainerError as exc:
        st.error(f"Not recorded: {literal(redact(str(exc)))}.")
        return False
    try:
        clf.flush()
    except OSError as exc:
        log.error("spool write failed: %s", exc)
        st.warning(f"Recorded in memory, but the spool cannot be written now ({exc.strerror}); it is retried every "
                   "few seconds.")
        return False
    return True


def queue_command(kind: str, *, args: dict[str, Any] | None = None, label: str, in_callback: bool = False) -> int | None:
    """Queue a command for the worker and say so; a refused command shows why.

    From a widget's ``on_click`` callback pass ``in_callback=True``: what it says is then shown by the
    run the click starts (:func:`show_notices`, from :func:`page_header`), since a callback of a button in
    a fragment must not draw elements itself (Streamlit warns, and the element may land out of place).
    """
    def say(level: str, text: str) -> None:
        if in_callback:
            st.session_state.setdefault("_notices", []).append((level, text))
        else:
            _NOTICE[level](text)

    reason = actions_refused()
    if reason:
        say("error", reason)
        return None
    try:
        command_id = submit(context(), kind, args=args, source="dashboard")
    except RetrainerError as exc:
        say("error", f"{literal(label)} was not queued: {literal(redact(str(exc)))}")
        return None
    st.session_state.setdefault("commands", []).append(command_id)
    status.clear()
    say("toast", f"{literal(label)}: command #{command_id} queued")
    return command_id


_NOTICE: dict[str, Callable[[str], Any]] = {"error": lambda text: st.error(text, icon=":material/error:"),
                                            "toast": lambda text: st.toast(text)}


def show_notices() -> None:
    """Show, once, what callbacks had to say since the last run (see :func:`queue_command`)."""
    for level, text in st.session_state.pop("_notices", []):
        _NOTICE[level](text)


def empty(message: str) -> None:
    """The empty state: say what is missing and what to do, then stop the page."""
    st.info(message, icon="ℹ️")
    st.stop()
