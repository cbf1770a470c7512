"""Text from users and the store is shown as written: pages/_ui.literal, on hostile strings.

Three levels: a property of ``literal`` against a CommonMark parser (markdown-it-py) and against the rules
Streamlit 1.67's Markdown renderer adds (maths, directives such as ``:red[``, emoji and typography, transcribed
from its frontend bundle, ``static/js/StreamlitMarkdown.*.js``); the Overview and Playground pages in
Streamlit's AppTest with hostile labels; and the real frontend in Chromium, which shows each string's text.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys

import pytest
from hypothesis import example, given, settings as hsettings, strategies as st
from markdown_it import MarkdownIt

from pages import _ui
from tests.conftest import ROOT, open_app, run_cli

# The tester's labels, and every other construct Streamlit's Markdown knows.
HOSTILE = [
    "**bold**", "$x^2$", ":red[alarm]", "[click](http://evil.example)", "<b>html</b>", "_it_", "*it*", "`code`",
    "~~strike~~", "~s~", "![img](http://evil.example/x.png)", "<http://evil.example>", "www.evil.example",
    "http://evil.example", "mail@evil.example", ":material/home:", ":streamlit:", ":smile:", ":+1:", "10:30:45",
    "$$x$$", "\\$", "\\", "&amp;", "&lt;b&gt;", "&#42;", "a -> b", "<-", "<->", "--", ">=", "<=", "~=", "# h1",
    "1. item", "- item", "> quote", "| a | b |", "---", "===", "[x]: http://evil.example", "[^1]", ":help[x]",
    ":color[x]{foreground=\"red\"}", ":blue-background[x]", ":small[x]", "<!-- c -->", "<script>alert(1)</script>",
    "\n", "\n\n", "    ", "\t", "  \n", "a\\\nb", "{", "}", "@", "%", "'", '"',
]
hostile_text = st.lists(
    st.one_of(st.sampled_from(HOSTILE),
              st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\u2060"), max_size=6)),
    max_size=10).map("".join)

COMMONMARK = MarkdownIt("commonmark").enable(["strikethrough", "table"])
# Streamlit 1.67's frontend (StreamlitMarkdown bundle): the emoji plugin loads when the source matches EMOJI_NEEDED;
# KaTeX when a "$...$" or "$$...$$" remains after code spans and escaped "\\$" are set aside; these rewrites then run
# on the text after escapes are read.
EMOJI_NEEDED = re.compile(r":(?!material/|streamlit:)[\w+-][\w_+-]*:", re.ASCII)
MATH_SET_ASIDE = re.compile(r"(?:^|(?<=\n)) {0,3}(`{3,}|~{3,})[\s\S]*?(?:\n[ \t]*\1|$)|(?<!`)(`+)[^`\n]+\2(?!`)|\\[\\$`]")
MATH_BLOCK = re.compile(r"(?<!\$)\$\$+(?!\$)[\s\S]*?\$\$")
MATH_INLINE = re.compile(r"(?<!\$)\$(?![\s$])[^$\n]*?[^\s$]\$(?!\d)")
TEXT_REWRITES = [re.compile(p) for p in (r"(^|\s)<->(\s|$)", r"(^|\s)->(\s|$)", r"(^|\s)<-(\s|$)", r"(^|\s)--(\s|$)",
                                         r"(^|\s)>=(\s|$)", r"(^|\s)<=(\s|$)", r"(^|\s)~=(\s|$)",
                                         r":\+1:|:-1:|:[\w-]+:", r":streamlit:",
                                         # GFM's literal links (mdast-util-gfm-autolink-literal), found in the text
                                         r"(?i)(https?://|www(?=\.))[-.\w]+", r"[-.\w+]+@[-\w]+(?:\.[-\w]+)+")]
ASCII_PUNCTUATION = re.compile(r"[!-/:-@\[-`{-~]")


def shown_text(markdown: str) -> str:
    """The text CommonMark (with GFM's strikethrough and tables) makes of ``markdown``; fails on any markup."""
    tokens = COMMONMARK.parse(markdown)
    if not tokens:
        return ""
    assert [t.type for t in tokens] == ["paragraph_open", "inline", "paragraph_close"]
    children = tokens[1].children
    assert {c.type for c in children} <= {"text"}, [c.type for c in children]
    return "".join(c.content for c in children)


def unescaped_punctuation(markdown: str) -> list[str]:
    """ASCII punctuation in ``markdown`` that is not escaped by a backslash (which could start any construct)."""
    bare, i = [], 0
    while i < len(markdown):
        if markdown[i] == "\\" and i + 1 < len(markdown) and ASCII_PUNCTUATION.match(markdown[i + 1]):
            i += 2
            continue
        if ASCII_PUNCTUATION.match(markdown[i]):
            bare.append(markdown[i])
        i += 1
    return bare


@hsettings(max_examples=400, deadline=None)
@given(hostile_text)
@example("**bold** $x^2$ :red[alarm] [click](http://evil.example) <b>html</b>")
@example("a -> b :smile: :streamlit: 10:30:45 www.evil.example")
@example("    # indented\n> quote\n1. list")
def test_literal_is_shown_as_the_text_itself(text):
    markdown = _ui.literal(text)
    assert unescaped_punctuation(markdown) == []
    assert "\n" not in markdown and markdown == markdown.strip()
    shown = shown_text(markdown)
    # The only additions are invisible word joiners; whitespace runs read as one space, as a browser shows them.
    assert shown.replace(_ui.WORD_JOINER, "") == " ".join(text.split())
    assert not EMOJI_NEEDED.search(markdown)
    aside = MATH_SET_ASIDE.sub("_", markdown)
    assert not MATH_BLOCK.search(aside) and not MATH_INLINE.search(aside)
    assert [p.pattern for p in TEXT_REWRITES if p.search(shown)] == []


def test_literal_examples_exactly():
    assert _ui.literal("**bold**") == r"\*\*bold\*\*"
    assert _ui.literal("<b>html</b>") == r"\<b\>html\<\/b\>"
    assert _ui.literal("a -> b") == "a \\-\u2060\\> b"
    assert _ui.literal(":smile:") == "\\:\u2060smile\\:"
    assert _ui.literal("see http://x.org") == "see http\\:\u2060\\/\\/x\\.org"
    assert _ui.literal("  two\n\nlines ") == "two lines"
    assert _ui.literal("v0003") == "v0003"


@pytest.mark.parametrize("label", ["<b>html</b>", "[click](http://evil.example)", "/start", "~5 rows"])
def test_redact_leaves_labels_that_are_no_server_path_alone(label):
    assert _ui.redact(f"6 new labels: {label}, other.") == f"6 new labels: {label}, other."


# -- the pages, in Streamlit's AppTest -----------------------------------------------------------------------------

MARKUP_LABELS = ["**bold**", "$x^2$", ":red[alarm]", "[click](http://evil.example)", "<b>html</b>"]


def test_overview_shows_an_import_of_hostile_labels_as_written(monkeypatch, demo_copy, tmp_path):
    from store.events import recent_events
    from engine.config import load_settings
    from engine.context import Context

    rows = [f"sample text number {i} about {label}" for i in range(3) for label in MARKUP_LABELS]
    labels = [label for _ in range(3) for label in MARKUP_LABELS]
    path = tmp_path / "markup.csv"
    import csv

    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *zip(rows, labels)])
    done = run_cli("import", str(path), "--labeled", home=demo_copy)
    assert done.returncode == 0, done.stderr
    ctx = Context.open(load_settings(env={}, home=demo_copy))
    message = recent_events(ctx.db, limit=1)[0]["message"]
    assert message.startswith("Imported markup.csv") and all(label in message for label in MARKUP_LABELS)

    at = open_app(monkeypatch, demo_copy)
    bodies = [m.value for m in at.markdown if _ui.literal("Imported markup.csv") in m.value]
    assert len(bodies) == 1
    line = next(x for x in bodies[0].split("  \n") if _ui.literal("Imported markup.csv") in x)
    assert line.endswith(" **import** · " + _ui.literal(message))
    for label in MARKUP_LABELS:
        assert label not in line
    assert r"\*\*bold\*\*" in line and r"\$x\^2\$" in line and r"\:red\[alarm\]" in line
    assert "\\[click\\]\\(http\\:\u2060\\/\\/evil\\.example\\)" in line and r"\<b\>html\<\/b\>" in line


def test_playground_echoes_a_hostile_query_as_written(monkeypatch, demo_copy):
    query = "where is my parcel [click](http://evil.example) <b>x</b> :red[alarm] $x$"
    at = open_app(monkeypatch, demo_copy, "pages/playground.py")
    at.text_area(key="playground_text").input(query)
    at.button(key="playground_ask").click()
    at.run()
    assert not at.exception
    answer = [m.value for m in at.markdown if m.value.startswith("**Answer for:**")]
    assert answer == ["**Answer for:** where is my parcel \\[click\\]\\(http\\:\u2060\\/\\/evil\\.example\\) \\<b\\>x\\<\\/b\\> "
                      "\\:red\\[alarm\\] \\$x\\$"]


# -- the real frontend, in Chromium ---------------------------------------------------------------------------------

SCRIPT = '''
import json, sys
import streamlit as st
from pages._ui import literal
texts = json.load(open(sys.argv[1]))
for i, text in enumerate(texts):
    with st.container(key=f"md{i}"):
        st.markdown(literal(text))
    with st.container(key=f"mt{i}"):
        st.metric(literal(text), literal(text))
with st.container(key="table"):
    st.table({"text": [literal(t) for t in texts]})
'''


@pytest.mark.browser
def test_chromium_shows_each_hostile_string_as_its_text(tmp_path):
    from tests.test_browser import BROWSER_ARGS, CHROMIUM, _free_port, _wait_for_http

    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    draw = random.Random(7)
    texts = [t for t in HOSTILE if t.strip()] + ["".join(draw.choices(HOSTILE, k=5)) for _ in range(20)]
    texts = [t for t in texts if " ".join(t.split())]
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    (tmp_path / "page.py").write_text(SCRIPT)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRAINER_")} | {"PYTHONPATH": str(ROOT)}
    app = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(tmp_path / "page.py"), "--server.port",
                            str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false", "--",
                            str(tmp_path / "texts.json")], cwd=ROOT, env=env, stdout=open(tmp_path / "app.log", "w"),
                           stderr=subprocess.STDOUT)
    try:
        _wait_for_http(port, app)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator(".st-key-table table").wait_for(timeout=60_000)
            found = page.evaluate("""(n) => {
                const out = [];
                const text = (el) => el ? el.innerText.replaceAll('\\u2060', '') : null;
                const markup = (el) => el ? [...el.querySelectorAll('a, img, strong, em, code, del, span, svg, h1, h2, '
                    + 'h3, ul, ol, li, blockquote, hr, table, .katex')].map(e => e.tagName) : null;
                for (let i = 0; i < n; i++) {
                    const md = document.querySelector(`.st-key-md${i} [data-testid=stMarkdownContainer]`);
                    const label = document.querySelector(`.st-key-mt${i} [data-testid=stMetricLabel]`);
                    const value = document.querySelector(`.st-key-mt${i} [data-testid=stMetricValue]`);
                    out.push({md: text(md), mdMarkup: markup(md), label: text(label), value: text(value),
                              labelMarkup: markup(label)});
                }
                const cells = [...document.querySelectorAll('.st-key-table tbody td')];
                return {rows: out, cells: cells.map(text), cellMarkup: cells.map(markup)};
            }""", len(texts))
            page.screenshot(path=str(tmp_path / "literal.png"), full_page=True)
            browser.close()
    finally:
        app.send_signal(signal.SIGTERM)
        try:
            app.wait(timeout=15)
        except subprocess.TimeoutExpired:
            app.kill()
    wanted = [" ".join(t.split()) for t in texts]
    assert [r["md"] for r in found["rows"]] == wanted
    assert [r["label"] for r in found["rows"]] == wanted
    assert [r["value"] for r in found["rows"]] == wanted
    assert found["cells"] == wanted
    assert [(t, r["mdMarkup"], r["labelMarkup"]) for t, r in zip(texts, found["rows"])
            if r["mdMarkup"] or r["labelMarkup"]] == []
    assert {tag for cell in found["cellMarkup"] for tag in cell} == set()
