"""Browser suite: every dashboard page in a real browser, from navigation until Streamlit's run ends.

The worker and ``streamlit run app.py`` serve a copy of the 90-day demo (``python -m engine demo``,
built once under ``--work``). Playwright drives Debian's chromium (``/usr/bin/chromium``: no browser
download) headless at 1440x900. Each round opens every page by its URL in a fresh tab, so the
figure includes loading the page, the WebSocket handshake, the script run and the browser drawing
the elements Streamlit sends; the clock stops when the app reports its script run finished
(``data-test-script-state="notRunning"`` on ``stApp``, the state behind the running indicator)
and the indicator (``stStatusWidget``) is gone. Rounds visit the pages in turn, so a page's
5-10 s read caches have usually expired when it is opened again. Median of three rounds.

Beside each time: the page's data functions in the same run (``benchmarks.dashboard.PAGES`` on the
demo store, one fresh process), what the server sent (WebSocket bytes) and how many elements the
page holds, so a slow page can be told apart: reads, payload, or drawing.

Run: ``python -m benchmarks --only browser`` or ``python -m benchmarks.browser [--shots DIR]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

from benchmarks.common import DEFAULT_WORK, ROOT, Row, SuiteResult, median, print_outcome, run_child, say

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1440, "height": 900}
TARGET_S = 1.5
ROUNDS = 3
# URL path of each page (st.navigation names them after their files), in the sidebar's order.
PAGES = {"overview": "", "performance": "performance", "history": "history", "models": "models",
         "scheduler": "scheduler", "data": "data", "playground": "playground", "sql": "sql"}
TITLES = {"overview": "Overview", "performance": "Performance", "history": "Retraining history", "models": "Models",
          "scheduler": "Scheduler", "data": "Data", "playground": "Playground", "sql": "SQL"}
DEMO_TAG = "browser-demo v1"
# A one-title Streamlit app on its own server: what any Streamlit page costs in this browser on this machine.
FLOOR_APP = 'import streamlit as st\n\nst.title("Floor")\nst.write("A page with one title and one line.")\n'
# Installed before any page script: notes (performance.now(), state) at every change of the app's script state.
OBSERVER_JS = """
window.__runs = [];
new MutationObserver((changes) => {
  for (const c of changes) {
    const state = c.target.getAttribute('data-test-script-state');
    if (c.target.dataset && c.target.dataset.testid === 'stApp' && state) window.__runs.push([performance.now(), state]);
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-test-script-state']});
"""
# True once a script run that began after ``since`` (ms, performance.now()) has ended and the indicator is gone.
ENDED_JS = """(since) => {
  const runs = window.__runs || [];
  let began = false;
  for (const [t, state] of runs) {
    if (t < since) { began = state === 'running'; continue; }  // a fragment's run going on at the click carries on
    if (state === 'running') began = true;
    else if (began && state === 'notRunning')
      return !document.querySelector('[data-testid^="stStatusWidgetRunning"]') ? t : false;
  }
  return false;
}"""


def demo_home(work: Path) -> Path:
    """The 90-day demo (seed as ``python -m engine demo``), built once and reused; a fresh copy per run."""
    home = work / "browser-demo"
    marker = home / "BENCH_READY"
    if not (marker.exists() and marker.read_text().strip() == DEMO_TAG):
        shutil.rmtree(home, ignore_errors=True)
        say(f"browser: building the 90-day demo in {home}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("RETRAINER_")}
        env.update(RETRAINER_HOME=str(home), PYTHONPATH=str(ROOT))
        subprocess.run([sys.executable, "-m", "engine", "demo"], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        marker.write_text(DEMO_TAG + "\n")
    copy = work / "browser-demo-run"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(home, copy)
    return copy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVERS: dict[str, int] = {}


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time a process has used so far (Linux /proc), in seconds; 0.0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_of(url: str) -> int | None:
    return next((pid for base, pid in SERVERS.items() if url.startswith(base)), None)


def _wait_healthy(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}: see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"streamlit did not answer within 60 s: see {log}") from None
            time.sleep(0.3)


def _streamlit(script: str, *, cwd: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false"],
                            cwd=cwd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    return proc, port


@contextlib.contextmanager
def serve(home: Path, *, logs: Path, floor: bool = False) -> Iterator[tuple[str, str | None]]:
    """The worker and the dashboard on ``home`` (127.0.0.1, free ports), and with ``floor`` the one-title app
    on its own server; yields (dashboard URL, floor URL or None). ``SERVERS`` maps each URL to its process id."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRAINER_")}
    env.update(RETRAINER_HOME=str(home), PYTHONPATH=str(ROOT))
    logs.mkdir(parents=True, exist_ok=True)
    procs = [subprocess.Popen([sys.executable, "-m", "engine", "worker"], cwd=ROOT, env=env,
                              stdout=open(logs / "worker.log", "w"), stderr=subprocess.STDOUT)]
    try:
        app, port = _streamlit("app.py", cwd=ROOT, env=env, log=logs / "app.log")
        procs.append(app)
        floor_url = None
        if floor:
            (logs / "floor").mkdir(exist_ok=True)
            (logs / "floor" / "floor.py").write_text(FLOOR_APP)
            other, floor_port = _streamlit("floor.py", cwd=logs / "floor", env=env, log=logs / "floor.log")
            procs.append(other)
            _wait_healthy(floor_port, other, logs / "floor.log")
            floor_url = f"http://127.0.0.1:{floor_port}"
            SERVERS[floor_url] = other.pid
        _wait_healthy(port, app, logs / "app.log")
        SERVERS[f"http://127.0.0.1:{port}"] = app.pid
        yield f"http://127.0.0.1:{port}", floor_url
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _counts(tab: Any) -> dict[str, int]:
    return tab.evaluate("""() => ({
        elements: document.querySelectorAll('[data-testid="stMain"] [data-testid="stElementContainer"]').length,
        charts: document.querySelectorAll('[data-testid="stPlotlyChart"], [data-testid="stVegaLiteChart"]').length,
        tables: document.querySelectorAll('[data-testid="stDataFrame"]').length,
    })""")


def _tab(browser: Any) -> tuple[Any, list[int]]:
    """A fresh tab that notes script-state changes and counts the bytes the server sends."""
    tab = browser.new_page(viewport=VIEWPORT)
    tab.add_init_script(OBSERVER_JS)
    received = [0]
    tab.on("websocket", lambda ws: ws.on("framereceived", lambda payload: received.__setitem__(0, received[0] + len(payload))))
    return tab, received


def open_by_url(browser: Any, url: str, *, shot: Path | None = None) -> dict[str, Any]:
    """Open ``url`` in a fresh tab: seconds from navigation start until the first script run ended."""
    tab, received = _tab(browser)
    cdp = tab.context.new_cdp_session(tab)
    cdp.send("Performance.enable")
    pid = server_of(url)
    cpu = cpu_seconds(pid)
    tab.goto(url, wait_until="commit")
    ended = tab.wait_for_function(ENDED_JS, arg=0, timeout=120_000, polling=10).json_value()
    server_cpu = cpu_seconds(pid) - cpu
    drawn = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    tab.wait_for_timeout(1500)  # not timed: charts mount after the run ends; count them once they are there
    found = {"seconds": ended / 1000, "bytes": received[0], "server_cpu": server_cpu,
             "browser_cpu": drawn.get("TaskDuration", 0.0), "script_cpu": drawn.get("ScriptDuration", 0.0),
             **_counts(tab)}
    if shot is not None:
        screenshots(tab, shot)
    tab.close()
    return found


def screenshots(tab: Any, shot: Path) -> None:
    """``shot``: the page as a 1440x900 window shows it; ``<name>-full.png``: the whole page (the window made as
    tall as the page's content, since Streamlit scrolls inside its main area)."""
    shot.parent.mkdir(parents=True, exist_ok=True)
    tab.wait_for_timeout(2000)  # let the charts finish drawing (not timed)
    idle = """() => document.querySelector('[data-testid="stApp"]').dataset.testScriptState === 'notRunning'"""
    tab.wait_for_function(idle, timeout=60_000)  # not in the middle of a fragment's rerun (it greys the page)
    tab.screenshot(path=str(shot))
    height = tab.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    tab.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], int(height) + 40)})
    tab.wait_for_timeout(1500)
    tab.wait_for_function(idle, timeout=60_000)
    tab.screenshot(path=str(shot.with_name(f"{shot.stem}-full.png")))
    tab.set_viewport_size(VIEWPORT)


def open_by_click(tab: Any, received: list[int], title: str) -> dict[str, Any]:
    """Click the sidebar link ``title`` in ``tab``: seconds from the click until the page's script run ended."""
    link = tab.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).first
    link.wait_for(state="attached")
    before = received[0]
    since = tab.evaluate("(a) => { const t = performance.now(); a.click(); return t; }", link.element_handle())
    ended = tab.wait_for_function(ENDED_JS, arg=since, timeout=30_000, polling=10).json_value()
    return {"seconds": (ended - since) / 1000, "bytes": received[0] - before, **_counts(tab)}


def measure(url: str, *, floor_url: str | None = None, rounds: int = ROUNDS,
            shots: Path | None = None) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every page ``rounds`` times by URL (fresh tab) and by sidebar click; the floor app by URL in each round.

    Returns {"url": {page: [run, ...]}, "click": {...}}; screenshots of the last round go to ``shots``.
    """
    from playwright.sync_api import sync_playwright

    found: dict[str, dict[str, list[dict[str, Any]]]] = {"url": {n: [] for n in PAGES}, "click": {n: [] for n in PAGES}}
    if floor_url:
        found["url"]["floor"] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        open_by_url(browser, url)  # the server's first run (imports, the first st.navigation): not a page figure
        if floor_url:
            open_by_url(browser, floor_url)
        for k in range(rounds):
            if floor_url:
                found["url"]["floor"].append(open_by_url(browser, floor_url))
            for name, path in PAGES.items():
                shot = shots / f"{name}.png" if shots is not None and k == rounds - 1 else None
                found["url"][name].append(open_by_url(browser, f"{url}/{path}", shot=shot))
        tab, received = _tab(browser)
        tab.goto(f"{url}/sql")
        tab.wait_for_function(ENDED_JS, arg=0, timeout=120_000, polling=10)
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        for _ in range(rounds):
            for name in PAGES:
                try:
                    found["click"][name].append(open_by_click(tab, received, TITLES[name]))
                except PlaywrightTimeout:  # the run never ended as seen from the page: say so, start afresh
                    found["click"][name].append({"seconds": float("nan"), "bytes": 0, "elements": 0, "charts": 0,
                                                 "tables": 0})
                    tab.goto(f"{url}/sql")
                    tab.wait_for_function(ENDED_JS, arg=0, timeout=120_000, polling=10)
        browser.close()
    return found


def data_functions(home: Path) -> dict[str, float]:
    """Each page's data functions on ``home`` (benchmarks.dashboard.PAGES, one fresh process per page), ms."""
    return {name: run_child("benchmarks.dashboard", "--child", "functions", "--home", str(home), "--page", name)["total_ms"]
            for name in PAGES}


def run(work: Path, *, quick: bool, shots: Path | None = None) -> SuiteResult:
    if not Path(CHROMIUM).exists():
        say(f"browser: {CHROMIUM} is missing (apt-get install chromium): suite skipped")
        return SuiteResult(details=[f"Browser suite skipped: {CHROMIUM} is not installed."])
    home = demo_home(work)
    say(f"browser: the page data functions on {home}")
    reads = data_functions(home)
    with serve(home, logs=work / "browser-logs", floor=True) as (url, floor_url):
        say(f"browser: {ROUNDS} rounds of {len(PAGES)} pages at {url} (by URL, then by sidebar click)")
        found = measure(url, floor_url=floor_url, shots=shots)
    return summarise(found, reads)


def summarise(found: dict[str, dict[str, list[dict[str, Any]]]], reads: dict[str, float]) -> SuiteResult:
    """The table rows (by URL and by click, each beside the page's data functions) and the Markdown details."""
    result = SuiteResult()
    floor = median([r["seconds"] for r in found["url"]["floor"]]) if found["url"].get("floor") else None
    lines = [f"### Browser: every page in headless chromium at {VIEWPORT['width']}x{VIEWPORT['height']}, 90-day demo, "
             f"median of {ROUNDS}", "",
             "By URL: a fresh tab on the page's address, from navigation start until the first script run ended and "
             "the running indicator cleared (includes loading Streamlit's JavaScript and the WebSocket handshake). "
             "By click: from a click on the page's sidebar link until that run ended. Data functions: the page's "
             "reads on the same store in a fresh process. Floor: a one-title Streamlit app on its own server, "
             "opened by URL in the same rounds"
             + (f": {floor:.2f} s, what any Streamlit page costs here." if floor is not None else "."), "",
             "| page | by URL (s) | each (s) | by click (s) | each (s) | verdict (< 1.5 s) | data functions (ms) | "
             "received (kB) | elements | charts | tables |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in PAGES:
        by_url, by_click = found["url"][name], found["click"][name]
        ready = median([r["seconds"] for r in by_url])
        timed = [r["seconds"] for r in by_click if r["seconds"] == r["seconds"]]  # NaN: a run never seen to end
        click = median(timed) if timed else float("nan")
        last = by_url[-1]
        kb = median([r["bytes"] for r in by_url]) / 1000
        for how, value in (("by URL", ready), ("by click", click)):
            result.rows.append(Row("browser", f"{name}: ready {how}", value * 1000, "ms", baseline=reads[name],
                                   target=f"< {TARGET_S * 1000:.0f} ms", passed=value < TARGET_S,
                                   note=(f"baseline: its data functions; floor app {floor * 1000:.0f} ms; {kb:.0f} kB, "
                                         f"{last['elements']} elements" if how == "by URL" and floor is not None else "")))
        each_url = ", ".join(f"{r['seconds']:.2f}" for r in by_url)
        each_click = ", ".join(f"{r['seconds']:.2f}" for r in by_click)
        verdict = "PASS" if max(ready, click) < TARGET_S else "MISS"
        lines.append(f"| {name} | {ready:.2f} | {each_url} | {click:.2f} | {each_click} | {verdict} | {reads[name]:.0f} | "
                     f"{kb:.0f} | {last['elements']} | {last['charts']} | {last['tables']} |")
    result.details.append("\n".join(lines))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.browser", description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--shots", type=Path, help="save a full-page screenshot of every page here (last round)")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    outcome = run(args.work, quick=False, shots=args.shots)
    print_outcome("browser", outcome, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
