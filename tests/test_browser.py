"""The static feature browser (``autointerp browse``): chunking of a 16k-latent run, and the
page in a real headless Chromium on file:// (no server): loads without JS errors, lists the
features, searches, sorts and opens a latent, driven by the URL hash.

Needs Chromium (see tests/test_report_html.py).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from synthetic_runs import score, synth_run, write_run
from test_report_html import ERROR_HOOK, check_no_errors, headless_chromium

from autointerp import report
from autointerp.cli import main
from autointerp.report import browser

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = (
    ROOT / "results" / "default" / "run-2c069127b7c1"
)  # the bundled default suite's run (config hash)
WORDS = ["river", "number", "quote", "bracket", "verb", "plural", "city", "the"]  # tokens
TOPICS = ["ocean", "digits", "speech", "parens", "actions", "many", "places", "articles"]
BASES = [("sae", "sae", 14336), ("random", "random", 2048)]


def _window(rng, kind, peak, n=8):
    toks = [WORDS[i] for i in rng.integers(0, len(WORDS), n)]
    acts = [0.0] * n
    acts[int(rng.integers(0, n))] = round(float(peak), 3)
    return {
        "tokens": toks,
        "token_ids": list(range(n)),
        "acts": acts,
        "kind": kind,
        "seq": 0,
        "start": 0,
        "quantile": 2 if kind == "quantile" else -1,
    }


def big_run(run_dir: Path) -> Path:
    """A run with 16,384 latents that all have records, scores, nulls and explanations."""
    rng = np.random.default_rng(0)
    scores, feats, recs = [], [], {}
    for b, _, n in BASES:
        lines = []
        for f in range(n):
            peak = float(rng.uniform(1, 10))
            w = TOPICS[f % len(TOPICS)]
            v = None if f % 97 == 0 else round(float(rng.uniform(-0.2, 0.9)), 4)
            scores.append(score(b, f, v))
            scores.append(score(b, f, round(float(rng.normal(0, 0.05)), 4), null="shuffled"))
            feats.append(
                {
                    "basis": b,
                    "feature": f,
                    "density": float(10 ** rng.uniform(-5, -1)),
                    "max_act": peak,
                    "explanation": f"the {w} feature <b>{b}{f}</b>",
                    "explanation_status": "ok",
                    "explanation_error": "",
                }
            )
            rec = {
                "basis": b,
                "feature": f,
                "density": feats[-1]["density"],
                "max_act": peak,
                "explain": [_window(rng, "top", peak), _window(rng, "quantile", peak / 2)],
                "test_top": [_window(rng, "top", peak)],
                "test_quantile": [],
                "test_random": [_window(rng, "random", 0.0)],
            }
            lines.append(rec)
        recs[b] = lines
    return write_run(
        run_dir,
        bases=BASES,
        scores=scores,
        features=feats,
        records=recs,
        diagnostics=[{"basis": "sae", "distinct": 60, "mode_share": 0.05}],
    )


def read_chunk(path: Path) -> dict:
    text = path.read_text()
    assert text.startswith("window.AI.add(") and text.endswith(");\n")
    return json.loads(text[len("window.AI.add(") : -3])


class Page(HTMLParser):
    """List rows (data-key, cell texts), the count, the open panel's explanation and tokens."""

    def __init__(self):
        super().__init__()
        self.rows: list[tuple[str, list[str]]] = []
        self.count = ""
        self.expl = ""
        self.tokens: list[str] = []
        self._cell = self._where = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and a.get("data-key"):
            self.rows.append((a["data-key"], []))
        elif tag == "td" and self.rows and self._where is None:
            self.rows[-1][1].append("")
            self._where = "td"
        elif a.get("id") == "count":
            self.count = a.get("data-n", "")
        elif a.get("class") == "expl-text":
            self._where = "expl"
        elif tag == "span" and a.get("class") == "t":
            self.tokens.append("")
            self._where = "tok"

    def handle_endtag(self, tag):
        if tag in ("td", "div", "span"):
            self._where = None

    def handle_data(self, data):
        if self._where == "td":
            self.rows[-1][1][-1] += data
        elif self._where == "expl":
            self.expl += data
        elif self._where == "tok":
            self.tokens[-1] += data


def chromium(
    index: Path, fragment: str, tmp_path: Path, screenshot: Path | None = None, driver: str = ""
):
    """Load ``index`` (a copy with the error hook in <head> and ``driver``, a script, at the end
    of <body>, next to its data/) with ``#fragment``; return (DOM, stderr), or write a PNG when
    ``screenshot`` is given."""
    page = index.with_name("index-test.html")
    text = index.read_text().replace("<head>", "<head>" + ERROR_HOOK, 1)
    page.write_text(text.replace("</body>", f"<script>{driver}</script></body>", 1))
    cmd = [*headless_chromium(tmp_path), "--virtual-time-budget=20000", "--hide-scrollbars"]
    if screenshot is not None:
        cmd += ["--window-size=1400,1000", f"--screenshot={screenshot}"]
    else:
        cmd += ["--dump-dom"]
    p = subprocess.run(
        cmd + [page.as_uri() + "#" + fragment], capture_output=True, text=True, timeout=180
    )
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout, p.stderr


def parse(dom: str) -> Page:
    pg = Page()
    pg.feed(dom)
    return pg


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    root = tmp_path_factory.mktemp("big")
    run = big_run(root / "s" / "big")
    t0 = time.perf_counter()
    index = report.write_browser(run, root / "out")
    took = time.perf_counter() - t0
    print(f"\nbrowser of 16,384 latents built in {took:.1f} s")
    return run, index, took


def test_chunks_hold_every_feature_once(big):
    run, index, _ = big
    data = index.parent / "data"
    lists = sorted(data.glob("list-*.js"))
    n = sum(n for _, _, n in BASES)
    assert len(lists) == math.ceil(n / browser.LIST_CHUNK) == 9
    seen = []
    for i, p in enumerate(sorted(lists, key=lambda p: int(p.stem.split("-")[1]))):
        c = read_chunk(p)
        assert c["type"] == "list" and c["n"] == i and len(c["rows"]) <= browser.LIST_CHUNK
        assert p.stat().st_size < 400_000
        seen += [(r[0], r[1]) for r in c["rows"]]
    assert len(seen) == len(set(seen)) == n
    assert set(seen) == {(b, f) for b, _, k in BASES for f in range(k)}
    feats = list(data.glob("feat-*.js"))
    assert len(feats) == sum(math.ceil(k / browser.FEAT_CHUNK) for _, _, k in BASES)
    assert max(p.stat().st_size for p in feats) < 200_000
    c = read_chunk(data / "feat-sae-1.js")
    assert sorted(map(int, c["features"])) == list(range(64, 128))
    assert "<" not in (data / "feat-sae-1.js").read_text()  # escaped inside <script>


def test_page_lists_searches_sorts_and_opens(big, tmp_path):
    run, index, _ = big
    dom, err = chromium(index, "sort=feature&dir=asc", tmp_path)
    check_no_errors(dom, err)
    pg = parse(dom)
    assert pg.count == "16384"
    assert [k for k, _ in pg.rows] == [f"{b}:{i}" for i in range(50) for b in ("random", "sae")]
    # search + sort by score (descending) + an open latent
    dom, err = chromium(index, "q=ocean%20sae&sort=score&dir=desc&open=sae:123", tmp_path)
    check_no_errors(dom, err)
    pg = parse(dom)
    n_ocean = sum(1 for f in range(14336) if TOPICS[f % len(TOPICS)] == "ocean")
    assert pg.count == str(n_ocean)
    assert len(pg.rows) == 100 and all(k.startswith("sae:") for k, _ in pg.rows)
    assert all("ocean" in cells[5] for _, cells in pg.rows)
    vals = [float(cells[2]) for _, cells in pg.rows if cells[2]]
    assert vals == sorted(vals, reverse=True) and len(vals) > 90
    assert 'data-open="sae:123"' in dom
    assert pg.expl == f"the {TOPICS[123 % len(TOPICS)]} feature <b>sae123</b>"
    rec = report.load_run(run).records("sae", {123})[123]
    shown = [e.tokens for e in rec.explain + rec.test_top + rec.test_random]
    assert pg.tokens == [t for toks in shown for t in toks]
    assert "<b>sae123</b>" not in dom.replace("&lt;b&gt;sae123&lt;/b&gt;", "")  # text, not HTML
    shot = tmp_path / "big.png"
    chromium(index, "q=ocean&sort=lift&open=sae:123", tmp_path, screenshot=shot)
    assert shot.stat().st_size > 30_000


def test_committed_run(tmp_path):
    out = tmp_path / "browser"
    assert main(["browse", str(COMMITTED), "--out", str(out)]) == 0
    feats = pl.read_parquet(COMMITTED / "features.parquet")
    n_rec = sum(1 for p in (COMMITTED / "records").glob("*.jsonl") for ln in p.open() if ln.strip())
    rows = [r for p in (out / "data").glob("list-*.js") for r in read_chunk(p)["rows"]]
    assert len(rows) == n_rec == 320
    want = feats.filter((pl.col("basis") == "sae-topk") & (pl.col("feature") == 12))
    dom, err = chromium(out / "index.html", "open=sae-topk:12", tmp_path)
    check_no_errors(dom, err)
    pg = parse(dom)
    assert pg.count == "320"
    assert pg.expl == want["explanation"][0]
    assert re.search(r"Diagnostics of basis sae-topk", dom)
    assert "shuffled null" in dom and "token_match" in dom and "pmi" in dom
    assert len(pg.tokens) > 100


# Clicks and typing, as a user would: type a search, click a column header twice, click a row.
DRIVER = """
(function(){
  function when(cond, then){var t=setInterval(function(){if(cond()){clearInterval(t);then();}},20);}
  var d=document.documentElement;
  when(function(){return d.getAttribute('data-ready')==='1';}, function(){
    var q=document.getElementById('q');q.value='digits';
    q.dispatchEvent(new Event('input'));
    setTimeout(function(){
      var th=document.querySelector('#list th[data-key=density]');th.click();th.click();
      document.querySelector('#rows tr').click();
      when(function(){return d.getAttribute('data-open');}, function(){
        d.setAttribute('data-driven', location.hash);});
    }, 400);
  });
})();
"""


def test_page_reacts_to_typing_and_clicks(big, tmp_path):
    run, index, _ = big
    dom, err = chromium(index, "", tmp_path, driver=DRIVER)
    check_no_errors(dom, err)
    pg = parse(dom)
    n = sum(1 for b, _, k in BASES for f in range(k) if TOPICS[f % len(TOPICS)] == "digits")
    assert pg.count == str(n)
    assert all("digits" in cells[5] for _, cells in pg.rows)
    dens = [float(cells[4]) for _, cells in pg.rows]
    assert dens == sorted(dens)  # two clicks on density: ascending
    first = pg.rows[0][0]
    assert f'data-open="{first}"' in dom
    m = re.search(r'data-driven="([^"]*)"', dom)
    assert m and "q=digits" in m.group(1) and "sort=density" in m.group(1)
    assert "dir=asc" in m.group(1) and f"open={first.replace(':', '%3A')}" in m.group(1)
    b, f = first.split(":")
    assert pg.expl == f"the digits feature <b>{b}{f}</b>"


def test_small_and_empty_runs(tmp_path):
    run = synth_run(tmp_path / "s" / "r", seed=1, n_scored=12)
    index = report.write_browser(run)
    assert index == run / "browser" / "index.html"
    (index.parent / "data" / "list-7.js").write_text("stale")
    (index.parent / "data" / "keep.txt").write_text("not ours")
    report.write_browser(run)
    assert not (index.parent / "data" / "list-7.js").exists()
    assert (index.parent / "data" / "keep.txt").exists()
    rows = read_chunk(index.parent / "data" / "list-0.js")["rows"]
    assert len(rows) == 4 * 12
    key = f"{rows[5][0]}:{rows[5][1]}"
    dom, err = chromium(index, f"open={key}&sort=lift", tmp_path)
    check_no_errors(dom, err)
    assert f'data-open="{key}"' in dom and "detection" in dom
    empty = write_run(tmp_path / "s" / "e", bases=[("sae", "sae", 8)], scores=[])
    index = report.write_browser(empty, tmp_path / "e-out")
    dom, err = chromium(index, "q=x", tmp_path)
    check_no_errors(dom, err)
    assert parse(dom).count == "0" and "no matching feature" in dom


def test_committed_run_shows_simulated_vs_true(tmp_path):
    """The open latent's panel shows its scored examples' true and simulated activation per
    token, from simulations.parquet."""
    out = tmp_path / "browser"
    report.write_browser(COMMITTED, out)
    sim = pl.read_parquet(COMMITTED / "simulations.parquet").filter(
        (pl.col("basis") == "sae-topk") & (pl.col("feature") == 12)
    )
    assert len(sim) > 0
    (chunk,) = [
        c for p in (out / "data").glob("feat-*.js") for c in [read_chunk(p)]
        if c["basis"] == "sae-topk" and "12" in c["features"]
    ]  # fmt: skip
    got = chunk["features"]["12"]["sims"]
    assert [s["tokens"] for s in got] == sim.sort("example")["tokens"].to_list()
    want_pred = sim.sort("example")["pred"].to_list()
    for s, p in zip(got, want_pred, strict=True):  # kept to 3 significant digits
        assert s["pred"] == pytest.approx(p, rel=5e-3, abs=1e-6)
    dom, err = chromium(out / "index.html", "open=sae-topk:12", tmp_path)
    check_no_errors(dom, err)
    assert f"Simulated vs true · {len(sim)} scored examples" in dom
    assert dom.count('class="ex sim"') == len(sim)
    assert dom.count("simulated ") >= sum(len(t) for t in sim["tokens"].to_list())


def test_panel_shows_logit_lens_and_ablation_effect_when_the_run_has_them(tmp_path):
    from autointerp.columns import StageColumns, save_columns

    run = synth_run(tmp_path / "s" / "r", seed=1, n_scored=4)
    rows = read_chunk(report.write_browser(run).parent / "data" / "list-0.js")["rows"]
    b, f = rows[0][0], rows[0][1]
    out = StageColumns("output", [])
    out.extra["features"] = {
        b: [{"feature": f, "top": [[" apostrophe", 1.5]], "bottom": [[" zzz", -2.0]],
             "explanation": 'tokens: " apostrophe"', "score": 0.7, "null": 0.1, "lift": 0.6}]
    }  # fmt: skip
    abl = StageColumns("ablation", [])
    abl.extra["features"] = {
        b: [{"feature": f, "kl": 0.25, "ce_delta": 0.125, "n_contexts": 8, "n_pairs": 30,
             "falls": [["s", -1.5]], "rises": [["t", 0.5]]}]
    }  # fmt: skip
    save_columns(run, out)
    save_columns(run, abl)
    index = report.write_browser(run)
    dom, err = chromium(index, f"open={b}:{f}", tmp_path)
    check_no_errors(dom, err)
    assert 'class="causal-output"' in dom and 'class="causal-ablation"' in dom
    assert '" apostrophe" 1.5' in dom and "lift 0.6" in dom
    assert "Ablation effect" in dom and "KL 0.25" in dom and 'falls when ablated: "s" -1.5' in dom
    other = f"{rows[1][0]}:{rows[1][1]}"  # a feature without them: no such sections
    dom, err = chromium(index, f"open={other}", tmp_path)
    check_no_errors(dom, err)
    assert f'data-open="{other}"' in dom and 'class="causal-output"' not in dom
