"""The feature browser's first-letter absorption panel: a run whose absorption results are the
eval's on a dictionary built to absorb (``autointerp.absorption.synthetic``: the "s" latent
stays off on 8 test words, each absorbed by a latent of its own). Needs Chromium (see
tests/test_report_html.py)."""

from __future__ import annotations

from synthetic_runs import synth_run
from test_browser import chromium, read_chunk
from test_report_html import check_no_errors

from autointerp import report
from autointerp.absorption.config import AbsorptionConfig
from autointerp.absorption.evaluate import evaluate_basis
from autointerp.absorption.synthetic import S, planted_world
from autointerp.columns import StageColumns, save_columns
from autointerp.report import load_run
from autointerp.stages.absorption import COLUMNS

FULL = 8
ABSORBERS = [26 + k for k in range(FULL)]  # the planted absorbing latents
# open the s latent's panel, then follow its first absorbing latent's link
DRIVER = """
(function(){
  function when(cond, then){var t=setInterval(function(){if(cond()){clearInterval(t);then();}},20);}
  var d=document.documentElement;
  when(function(){return d.getAttribute('data-open')==='sae:OPEN';}, function(){
    document.querySelector('#panel a[data-link="sae:LINK"]').click();
    when(function(){return d.getAttribute('data-open')==='sae:LINK';}, function(){
      d.setAttribute('data-driven', location.hash);});
  });
})();
""".replace("OPEN", str(S)).replace("LINK", str(ABSORBERS[0]))


def test_browser_shows_first_letter_absorption(tmp_path):
    gt, basis = planted_world(True, n_test=40, full=FULL, partial=8, beta=0.25)
    res = evaluate_basis(basis, gt, AbsorptionConfig(sparse_epochs=50, max_k=4), seed=0)
    run = synth_run(tmp_path / "s" / "r", seed=1, n_scored=4)
    save_columns(run, StageColumns("absorption", list(COLUMNS),
                                   extra={"details": {"sae": res.to_dict()}}))  # fmt: skip
    index = report.write_browser(run)
    data = index.parent / "data"
    rows = {(r[0], r[1]): r for p in data.glob("list-*.js") for r in read_chunk(p)["rows"]}
    recorded = set(load_run(run).records("sae"))
    assert not recorded & {S, *ABSORBERS}  # the latents named have no record: rows of their own
    assert rows[("sae", S)][-1] == "letter:s main-latent"
    assert rows[("sae", S)][3] == 'main latent of first letter "s", no record'
    assert all(rows[("sae", a)][-1] == "absorbs:s" for a in ABSORBERS)
    assert sum(1 for r in rows.values() if r[-1]) == len(res.latents) + FULL  # 26 main + 8
    feats = {k: v for p in data.glob("feat-sae-*.js") for k, v in read_chunk(p)["features"].items()}
    main = feats[str(S)]["absorption"]["main"]
    assert main["letter"] == "s" and main["n_missed"] == FULL
    assert [m["absorbers"] for m in main["missed"]] == [[a] for a in ABSORBERS]
    assert [x["main"] for x in feats[str(ABSORBERS[0])]["absorption"]["absorbs"]] == [[S]]
    dom, err = chromium(index, f"open=sae:{S}", tmp_path)
    check_no_errors(dom, err)
    assert 'class="absorption"' in dom and 'main latent of first letter "s"' in dom
    assert f"stays off on {FULL} of the letter" in dom and "absorbing latents" in dom
    assert all(f'data-link="sae:{a}">{a}</a>' in dom for a in ABSORBERS)
    dom, err = chromium(index, f"open=sae:{S}", tmp_path, driver=DRIVER)
    check_no_errors(dom, err)
    assert f'data-open="sae:{ABSORBERS[0]}"' in dom and "open=sae%3A26" in dom
    assert "absorbs the first letter of 1 word from their main latents" in dom
    assert f'data-link="sae:{S}"' in dom  # back to the main latent
