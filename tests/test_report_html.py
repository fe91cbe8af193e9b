"""The HTML leaderboard in a real headless Chromium: loads without JS errors, shows the rows,
sorts, opens features, and renders LLM text as text.

Needs Chromium: Debian ``apt-get install -y chromium`` (binary ``/usr/bin/chromium``), or set
``AUTOINTERP_CHROMIUM`` to a Chrome/Chromium binary.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.parse
from html.parser import HTMLParser

import pytest
from synthetic_runs import score, synth_run, write_run

from autointerp import report

ERROR_HOOK = """<script>
(function(){
  function note(msg){var d=document.documentElement;
    d.setAttribute('data-js-errors',(d.getAttribute('data-js-errors')||'')+msg+'\\n');}
  window.addEventListener('error',function(e){note('error: '+e.message);});
  window.addEventListener('unhandledrejection',function(e){note('rejection: '+e.reason);});
  var ce=console.error;
  console.error=function(){note('console: '+Array.prototype.join.call(arguments,' '));
    return ce.apply(console,arguments);};
})();
</script>"""


def chromium_binary() -> str:
    env = os.environ.get("AUTOINTERP_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        "Chromium is needed to test the HTML leaderboard and was not found. Install it with "
        "`apt-get update && apt-get install -y chromium` (Debian; binary /usr/bin/chromium) or "
        "set AUTOINTERP_CHROMIUM to a Chrome/Chromium binary."
    )


def headless_chromium(tmp_path) -> list[str]:
    """The headless Chromium command line every page test starts from (logs on stderr)."""
    return [
        chromium_binary(),
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]


def dump_dom(tmp_path, html: str, fragment: str = "") -> tuple[str, str]:
    """Load the page (with an error hook injected first in <head>) and return (DOM, stderr)."""
    page = tmp_path / "page.html"
    page.write_text(html.replace("<head>", "<head>" + ERROR_HOOK, 1))
    url = page.as_uri() + (("#" + fragment) if fragment else "")
    cmd = [*headless_chromium(tmp_path), "--dump-dom", url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout, p.stderr


class Tables(HTMLParser):
    """Rows of every table.lb: list of (table id, [[cell data-v, ...], ...]); ``headers``: the
    data-keys of each table's header cells; ``by_id``: table id -> (headers, rows)."""

    def __init__(self):
        super().__init__()
        self.tables: list[tuple[str, list[list[str]]]] = []
        self.headers: list[list[str]] = []
        self._in = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and "lb" in (a.get("class") or "").split() and a.get("id"):
            self.tables.append((a["id"], []))
            self.headers.append([])
            self._in = True
        elif self._in and tag == "tr":
            self.tables[-1][1].append([])
        elif self._in and tag == "td":
            self.tables[-1][1][-1].append(a.get("data-v", ""))
        elif self._in and tag == "th" and "data-key" in a:  # not the column-group cells
            self.headers[-1].append(a["data-key"])

    def handle_endtag(self, tag):
        if tag == "table":
            self._in = False


def parse_tables(dom: str) -> Tables:
    t = Tables()
    t.feed(dom)
    for _, rows in t.tables:
        while rows and rows[0] == []:
            rows.pop(0)  # the header rows (the headline has a row of column groups over them)
    t.by_id = {i: (h, rows) for (i, rows), h in zip(t.tables, t.headers, strict=True)}
    return t


def check_no_errors(dom: str, stderr: str) -> None:
    assert 'data-ready="1"' in dom, "the page script did not finish"
    m = re.search(r'data-js-errors="([^"]*)"', dom)
    assert m is None, f"JS errors: {m.group(1) if m else ''}"
    bad = [ln for ln in stderr.splitlines() if "Uncaught" in ln or ":CONSOLE" in ln]
    assert not bad, bad


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    a = synth_run(root / "s" / "a", seed=1, n_scored=12)
    b = synth_run(root / "s" / "b", seed=2, n_scored=12)
    c = synth_run(
        root / "s" / "c",
        seed=3,
        n_scored=12,
        protocol_id="p2",
        protocol={"records": {"window": 64}},
    )
    runs = [report.load_run(p) for p in (a, b, c)]
    board = report.leaderboard_table(runs, n_boot=50)
    return board, runs, report.render_html(board, runs)


def test_page_is_self_contained(site):
    _, _, html = site
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html and "@import" not in html
    assert html.count('src="data:image/png;base64,') == 8  # 4 plots per protocol group


def test_page_loads_and_shows_rows(site, tmp_path):
    board, runs, html = site
    dom, err = dump_dom(tmp_path, html)
    check_no_errors(dom, err)
    t = parse_tables(dom)
    ids = [i for i, _ in t.tables]
    # per protocol group: the headline first, then the full tables by column group
    assert ids[:4] == ["headline-0", "table-0", "structure-0", "cost-0"]
    assert ids[4:6] == ["headline-1", "table-1"]
    (heads, ref_rows), (_, apart_rows) = t.by_id["table-0"], t.by_id["table-1"]
    assert len(ref_rows) == board.table.height == 8
    assert len(apart_rows) == 4
    basis_col = heads.index("basis")
    assert sorted(r[basis_col] for r in ref_rows) == sorted(["sae", "pca", "neurons", "random"] * 2)
    # the headline: one row per (run, basis), the null last; groups fold without JS
    hheads, hrows = t.by_id["headline-0"]
    assert len(hrows) == 8 and hheads[:2] == ["basis", "interp_lift"] and len(hheads) <= 10
    # per run (in the full table's order) the null comes last, without a lift (a reason)
    for part in (hrows[:4], hrows[4:]):
        assert {r[0] for r in part} == {"sae", "pca", "neurons", "random"}
        assert part[3][0] == "random" and part[3][1] == ""
        lifts = [float(r[1]) for r in part[:3]]
        assert lifts == sorted(lifts, reverse=True)
    assert dom.count('<details class="grp"') == 6 and "Undefined cells and why" in dom
    assert "protocol_id p2 differs from the reference p1" in dom
    # the feature browser rendered its first feature
    assert 'id="feat-explanation"' in dom and "Top examples" in dom


def test_sort_and_feature_from_hash(site, tmp_path):
    board, runs, html = site
    key = "suite/a|sae|" + str(
        board.table.height
        and runs[0].scores.filter(
            (runs[0].scores["basis"] == "sae") & (runs[0].scores["status"] == "ok")
        )["feature"][0]
    )
    frag = "sort=sim_score&dir=asc&feature=" + urllib.parse.quote(key)
    dom, err = dump_dom(tmp_path, html, frag)
    check_no_errors(dom, err)
    t = parse_tables(dom)
    heads, rows = t.by_id["table-0"]
    col = heads.index("sim_score")
    vals = [float(r[col]) for r in rows if r[col]]
    assert len(vals) == 8 and vals == sorted(vals)
    assert vals != sorted(vals, reverse=True)
    assert 'data-key="sim_score" title="sim_score" aria-sort="ascending"' in dom
    assert f'data-key="{key}"' in dom
    # its explanation holds "<i>x</i>": shown as text, never as markup
    expl = re.search(r'<div class="expl" id="feat-explanation">(.*?)</div>', dom).group(1)
    assert "&lt;i&gt;x&lt;/i&gt;" in expl and "<i>" not in expl
    # true and simulated activation lines for its test examples
    assert dom.count('class="lbl">sim<') == 4 and dom.count('class="lbl">true<') == 4


def test_hostile_text_is_escaped(tmp_path):
    evil = "<img src=x onerror=\"document.title='pwned'\"></script><script>alert(1)</script>"
    scores = [score(evil, 0, 0.5), score("random", 0, 0.1)]
    feats = [
        {
            "basis": evil,
            "feature": 0,
            "density": 0.01,
            "max_act": 2.0,
            "explanation": evil,
            "explanation_status": "ok",
            "explanation_error": "",
        }
    ]
    sims = [
        {
            "basis": evil,
            "feature": 0,
            "example": 0,
            "kind": "top",
            "tokens": [evil, "b"],
            "true": [1.0, 0.0],
            "pred": [0.5, 0.1],
        }
    ]
    p = write_run(
        tmp_path / "r",
        bases=[(evil, "sae", 4), ("random", "random", 4)],
        scores=scores,
        features=feats,
        simulations=sims,
    )
    run = report.load_run(p)
    html = report.render_html(report.leaderboard_table([run]), [run])
    assert "<img src=x" not in html and "<script>alert" not in html
    dom, err = dump_dom(tmp_path, html)
    check_no_errors(dom, err)
    assert "<title>autointerp leaderboard</title>" in dom  # the onerror never ran
    assert '<img src="x"' not in dom
    assert dom.count("&lt;img src=x") >= 3  # table cell, explanation, token
