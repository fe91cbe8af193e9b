"""The leaderboard as one self-contained HTML page: sortable tables, PNG plots (matplotlib, Agg,
embedded as base64 data URIs) and a per-feature browser. No network, no external JS/CSS.

All text from runs (names, LLM explanations, tokens) is escaped: the tables are written with
``html.escape``; the feature browser's data is embedded as JSON (``<``, ``>``, ``&`` escaped as
``\\u003c`` ...) and put into the page with ``textContent`` only.

URL hash options (handy for links and headless tests): ``#sort=COLUMN&dir=asc|desc`` sorts the
first table at load; ``#feature=KEY`` opens a feature in the browser (KEY = ``run|basis|id``).
"""

from __future__ import annotations

import html

import polars as pl

from autointerp.report import stage_columns
from autointerp.report.columns import LEGEND, OTHER_METRICS, display_columns, fmt_ci, scorer_legend
from autointerp.report.html_browser import _json_for_script, browser_data
from autointerp.report.html_plots import (
    _score_values,
    plot_density,
    plot_distributions,
    plot_ioi_curves,
    plot_scatter,
)
from autointerp.report.runs import Run
from autointerp.report.table import Leaderboard

# ---------------------------------------------------------------------------------------------
# Page

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}
.tablewrap{overflow-x:auto;max-width:100%}
table.lb{border-collapse:collapse;font-size:12px}
table.lb th,table.lb td{border:1px solid #ccc;padding:3px 6px;white-space:nowrap}
table.lb th{background:#f0f0f0;cursor:pointer;user-select:none;position:sticky;top:0}
table.lb th[aria-sort=ascending]::after{content:" \\25B2"}
table.lb th[aria-sort=descending]::after{content:" \\25BC"}
table.lb td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.null-row td{color:#777;font-style:italic}
.plots img{max-width:48%;margin:4px;border:1px solid #eee}
.note{color:#555;font-size:13px}
#feat-view .tok{white-space:pre;padding:1px 0;margin-right:2px;border-radius:2px;
font-family:monospace;box-shadow:inset 0 -1px #ddd}
#feat-view .ex{margin:4px 0;line-height:1.9;font-size:13px}
#feat-view .lbl{display:inline-block;width:4em;color:#666;font-size:11px}
#feat-view .expl{font-size:15px;background:#fafafa;padding:6px;border-left:3px solid #888}
dl.legend dt{font-weight:bold}dl.legend dd{margin:0 0 4px 1.5em}
"""

JS = r"""
(function(){
function cellVal(row, i){var c=row.cells[i];return c?c.getAttribute('data-v'):'';}
function sortTable(table, i, asc){
  var tb=table.tBodies[0], rows=Array.prototype.slice.call(tb.rows);
  rows.sort(function(a,b){
    var x=cellVal(a,i), y=cellVal(b,i);
    if(x===''&&y==='')return 0; if(x==='')return 1; if(y==='')return -1;
    var nx=Number(x), ny=Number(y), c;
    c=(!isNaN(nx)&&!isNaN(ny))?(nx-ny):x.localeCompare(y);
    return asc?c:-c;
  });
  rows.forEach(function(r){tb.appendChild(r);});
  Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,j){
    if(j===i)th.setAttribute('aria-sort',asc?'ascending':'descending');
    else th.removeAttribute('aria-sort');
  });
}
document.querySelectorAll('table.lb').forEach(function(t){
  Array.prototype.forEach.call(t.tHead.rows[0].cells,function(th,i){
    th.addEventListener('click',function(){
      sortTable(t,i,th.getAttribute('aria-sort')!=='ascending');
    });
  });
});
var hash={};
location.hash.replace(/^#/,'').split('&').forEach(function(kv){
  var p=kv.split('=');if(p[0])hash[decodeURIComponent(p[0])]=decodeURIComponent(p[1]||'');
});
if(hash.sort){
  var t=document.querySelector('table.lb');
  if(t){Array.prototype.forEach.call(t.tHead.rows[0].cells,function(th,i){
    if(th.getAttribute('data-key')===hash.sort)sortTable(t,i,hash.dir==='asc');
  });}
}
var data=JSON.parse(document.getElementById('feature-data').textContent);
var sel=document.getElementById('feat-select'), view=document.getElementById('feat-view');
function el(tag, text, cls){var e=document.createElement(tag);
  if(text!==undefined&&text!==null)e.textContent=String(text); if(cls)e.className=cls; return e;}
function tokLine(label, tokens, acts, rgb, scale){
  var d=el('div',null,'ex'); d.appendChild(el('span',label,'lbl'));
  tokens.forEach(function(tok,i){
    var a=acts&&acts[i]!=null?acts[i]:0, s=el('span',tok.replace(/\n/g,'\u21b5'),'tok');
    var alpha=scale>0?Math.max(0,Math.min(1,a/scale)):0;
    s.style.backgroundColor='rgba('+rgb+','+alpha.toFixed(3)+')';
    s.title=(acts&&acts[i]!=null)?String(acts[i]):''; d.appendChild(s);
  });
  return d;
}
function maxOf(xs){var m=0;(xs||[]).forEach(function(v){if(v!=null&&v>m)m=v;});return m;}
function show(key){
  view.textContent='';
  var f=null; data.forEach(function(x){if(x.key===key)f=x;});
  if(!f){view.appendChild(el('p','No feature selected.','note'));return;}
  view.setAttribute('data-key',f.key);
  view.appendChild(el('h3',f.run+' \u2014 '+f.basis+' #'+f.feature));
  var ex=el('div',f.explanation||'(no explanation)','expl'); ex.id='feat-explanation';
  view.appendChild(ex);
  var meta='density '+(f.density==null?'?':f.density)+', max act '+(f.max_act==null?'?':f.max_act);
  if(f.explanation_status&&f.explanation_status!=='ok')meta+=', explanation '+f.explanation_status;
  view.appendChild(el('p',meta,'note'));
  var st=el('table',null,'lb'), tb=el('tbody');
  Object.keys(f.scores).forEach(function(k){var tr=el('tr');tr.appendChild(el('td',k));
    tr.appendChild(el('td',f.scores[k]));tb.appendChild(tr);});
  st.appendChild(tb); view.appendChild(st);
  view.appendChild(el('h4','Top examples (background = activation)'));
  if(!f.top.length)view.appendChild(el('p','no records for this feature','note'));
  f.top.forEach(function(e){view.appendChild(tokLine('act',e.tokens,e.acts,'255,140,0',maxOf(e.acts)));});
  view.appendChild(el('h4','Test examples: true vs simulated activation'));
  if(!f.sims.length)view.appendChild(el('p','no simulations for this feature','note'));
  f.sims.forEach(function(e){
    var sc=Math.max(maxOf(e.true),maxOf(e.pred),1e-9);
    view.appendChild(el('div','['+e.kind+']','note'));
    view.appendChild(tokLine('true',e.tokens,e.true,'255,140,0',sc));
    view.appendChild(tokLine('sim',e.tokens,e.pred,'30,120,255',sc));
  });
}
data.forEach(function(f){var o=el('option',f.basis+' #'+f.feature+' \u2014 '+f.run);
  o.value=f.key; sel.appendChild(o);});
sel.addEventListener('change',function(){show(sel.value);});
if(data.length){var k=hash.feature&&data.some(function(x){return x.key===hash.feature;})?
  hash.feature:data[0].key; sel.value=k; show(k);} else show(null);
document.body.setAttribute('data-ready','1');
})();
"""


def _html_table(
    df: pl.DataFrame, gid: str, scorer_columns: dict[str, tuple[str, str]] | None = None
) -> str:
    specs = list(display_columns(df, scorer_columns))
    extra = [c for c in OTHER_METRICS if c in df.columns and df[c].null_count() < len(df)]
    specs += [(c, c, None, None) for c in extra]
    for name in ("lift_vs_random_dirs_p", "lift_vs_shuffled_p"):
        if name in df.columns and df[name].null_count() < len(df):
            specs.append((name.replace("lift_vs_", "p ").replace("_p", ""), name, None, None))
    e = html.escape
    head = "".join(f'<th data-key="{e(c)}" title="{e(c)}">{e(h)}</th>' for h, c, _, _ in specs)
    body = []
    for row in df.iter_rows(named=True):
        cls = ' class="null-row"' if row.get("kind") == "random" else ""
        cells = []
        for _, c, lo, hi in specs:
            v = row.get(c)
            dv = "" if v is None else (repr(v) if isinstance(v, float) else str(v))
            num = ' class="num"' if isinstance(v, (int, float)) else ""
            cells.append(f'<td data-v="{e(dv)}"{num}>{e(fmt_ci(row, c, lo, hi))}</td>')
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return (
        f'<div class="tablewrap"><table class="lb" id="{e(gid)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def render_html(
    board: Leaderboard,
    runs: list[Run],
    *,
    max_features: int = 400,
    plots: bool = True,
    preface: str = "",
) -> str:
    """The whole page. ``max_features`` caps the feature browser; ``plots=False`` skips PNGs;
    ``preface``: HTML shown first, before the tables (a sweep's layer figure)."""
    e = html.escape
    by_label = {(r.suite, r.name): r for r in runs}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>autointerp leaderboard</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>autointerp leaderboard</h1>",
        f'<p class="note">{len(runs)} run(s). Reference protocol '
        f"<code>{e(str(board.reference))}</code>. CIs: {e(board.ci_method)}. "
        "Click a column header to sort. Rows of kind <i>random</i> are the random-directions "
        "null.</p>",
    ]
    if preface:
        parts.append(preface)
    for gi, (pid, df) in enumerate(board.groups.items()):
        title = "Reference protocol" if pid == board.reference else "Set apart: protocol"
        parts.append(f"<h2>{title} <code>{e(pid or '(none)')}</code></h2>")
        parts.append(f'<p class="note">Runs: {e(", ".join(board.runs_by_group[pid]))}</p>')
        parts.append(_html_table(df, f"table-{gi}", board.scorer_columns))
        parts.append(stage_columns.html_table(df, board.stage_columns, f"causal-{gi}"))
        if plots and len(df):
            imgs = [
                plot_scatter(
                    df, "l0", "sim_score", "L0 vs simulation score", "simulation score", ci=True
                ),
                plot_scatter(
                    df, "l0", "ce_loss_score", "L0 vs CE loss recovered", "ce_loss_score", ci=False
                ),
                plot_distributions(df, _score_values(df, by_label)),
                plot_density(board.density.get(pid, pl.DataFrame()), df),
                plot_ioi_curves([by_label[k] for k in by_label if k[1] in set(df["run"])]),
            ]
            alts = [
                "L0 vs simulation score",
                "L0 vs CE loss score",
                "score distributions",
                "score by density bin",
                "IOI patching: KL vs features patched and vs edit size",
            ]
            parts.append('<div class="plots">')
            parts += [f'<img alt="{a}" src="{u}">' for a, u in zip(alts, imgs) if u]
            parts.append("</div>")
    if board.set_apart:
        parts.append("<h2>Runs set apart</h2><ul>")
        for s in board.set_apart:
            diff = "; ".join(s.differences) if s.differences else "no field differs"
            parts.append(
                f'<li class="set-apart"><code>{e(s.run)}</code>: {e(s.reason)}. '
                f"Differing protocol fields: {e(diff)}</li>"
            )
        parts.append("</ul>")
    if board.notes:
        parts.append("<h2>Notes</h2><ul>")
        parts += [f"<li>{e(n)}</li>" for n in board.notes]
        parts.append("</ul>")
    parts.append('<h2>Legend</h2><dl class="legend">')
    legend = {
        **LEGEND,
        **scorer_legend(board.scorer_columns),
        **stage_columns.legend(board.stage_columns),
    }
    parts += [f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in legend.items()]
    parts.append("</dl>")
    data = browser_data(runs, max_features)
    parts += [
        "<h2>Feature browser</h2>",
        f'<p class="note">{len(data)} feature(s), spread over the score range of each basis.</p>',
        '<select id="feat-select" aria-label="feature"></select>',
        '<div id="feat-view"></div>',
        f'<script type="application/json" id="feature-data">{_json_for_script(data)}</script>',
        f"<script>{JS}</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
