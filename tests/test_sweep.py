"""Sweeps (``model.hookpoints``): config parsing, member suites, the one-pass activations
(equal to the single-hookpoint ones, forward stopped after the deepest hookpoint), and a tiny
end-to-end sweep on a random-weight model with a tiny in-process simulator."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch

from autointerp.config import load_suite, suite_from_dict
from autointerp.errors import ConfigError
from autointerp.results import stable_hash

COMMITTED = (
    Path(__file__).resolve().parents[1] / "results" / "default" / "run-2c069127b7c1"
)  # the bundled default suite's run (config hash)

# --------------------------------------------------------------------------- config


def test_hookpoints_list_range_and_errors():
    s = suite_from_dict({"model": {"hookpoints": ["blocks.1.hook_mlp_out", "model.layers.2"]}})
    assert s.model.sweep_hookpoints == ["blocks.1.hook_mlp_out", "model.layers.2"]
    r = suite_from_dict({"model": {"hookpoints": {"layers": "0:30:3"}}})
    assert r.model.sweep_hookpoints == [f"blocks.{i}.hook_resid_post" for i in range(0, 30, 3)]
    a = suite_from_dict({"model": {"hookpoints": {"layers": "2:4", "kind": "attn_out"}}})
    assert a.model.sweep_hookpoints == ["blocks.2.hook_attn_out", "blocks.3.hook_attn_out"]
    # a sweep's dump names its hookpoints only, so it validates again (--set goes through it)
    d = r.model_dump()
    assert "hookpoint" not in d["model"] and suite_from_dict(d) == r
    with pytest.raises(ConfigError, match=r"model.hookpoint .* or model.hookpoints .*not both"):
        suite_from_dict({"model": {"hookpoint": "blocks.1.hook_resid_post", "hookpoints": ["x"]}})
    with pytest.raises(ConfigError, match="model.hookpoints is empty"):
        suite_from_dict({"model": {"hookpoints": []}})
    with pytest.raises(ConfigError, match=r"names \['a'\] more than once"):
        suite_from_dict({"model": {"hookpoints": ["a", "b", "a"]}})
    for bad in ("0:a", "5:2", "3", "0:30:0"):
        with pytest.raises(ConfigError, match=r'start:stop" or "start:stop:step'):
            suite_from_dict({"model": {"hookpoints": {"layers": bad}}})
    with pytest.raises(ConfigError, match="kind"):
        suite_from_dict({"model": {"hookpoints": {"layers": "0:2", "kind": "mlp_in"}}})


def test_single_hookpoint_suite_hashes_as_before():
    """No ``hookpoints`` key in a single-hookpoint suite's dump: the committed default run's
    gate stage key (which hashes model.model_dump() and the tokens key) is reproduced."""
    from autointerp.stages.gate import GATE, gate_key
    from autointerp.stages.tokens import TOKENS, tokens_key

    suite = load_suite("evals/default.toml")
    keys = {"name", "hookpoint", "device", "dtype", "batch_size"}
    assert set(suite.model_dump()["model"]) == keys
    ctx = SimpleNamespace(env=SimpleNamespace(suite=suite), upstream={})
    ctx.upstream["tokens"] = TOKENS.hash(tokens_key(ctx, {}))
    assert (COMMITTED / "stages" / f"gate-{GATE.hash(gate_key(ctx, {}))}.json").is_file()


def test_member_suite_is_the_hand_written_single_suite():
    from autointerp.sweep import hookpoint_folder, layer_of, member_suites

    sweep = suite_from_dict(
        {
            "model": {"hookpoints": {"layers": "3:7:3"}},
            "bases": [
                {"kind": "sae", "name": "ext", "path": "/ckpts/L{layer}/{hookpoint}"},
                {"kind": "pca", "l0": 8},
            ],
        }
    )
    members = member_suites(sweep)
    assert list(members) == ["blocks.3.hook_resid_post", "blocks.6.hook_resid_post"]
    by_hand = suite_from_dict(
        {
            "model": {"hookpoint": "blocks.6.hook_resid_post"},
            "bases": [
                {"kind": "sae", "name": "ext", "path": "/ckpts/L6/blocks.6.hook_resid_post"},
                {"kind": "pca", "l0": 8},
            ],
        }
    )
    got = members["blocks.6.hook_resid_post"]
    assert got == by_hand and stable_hash(got.model_dump()) == stable_hash(by_hand.model_dump())
    assert layer_of("blocks.12.hook_mlp_out") == 12 and layer_of("model.layers.4.mlp") == 4
    assert layer_of("lm_head") is None
    assert hookpoint_folder("model.layers.3.mlp.down_proj:input") == (
        "model.layers.3.mlp.down_proj_input"
    )


def test_bundled_layers_suite():
    from autointerp.sweep import member_suites

    suite = load_suite("evals/layers.toml")
    members = member_suites(suite)
    assert list(members) == [f"blocks.{i}.hook_resid_post" for i in range(0, 30, 3)]
    assert [b.kind for b in suite.bases] == ["sae", "pca", "ica", "neurons", "random"]
    assert suite.records.n_features == 16
    m = members["blocks.27.hook_resid_post"]
    assert m.model.hookpoint == "blocks.27.hook_resid_post" and m.model.hookpoints is None


def test_suite_run_refuses_a_sweep(tmp_path):
    from autointerp.pipeline import SuiteRun

    with pytest.raises(ConfigError, match="several hookpoints"):
        SuiteRun(suite_from_dict({"model": {"hookpoints": ["a"]}}), results_root=tmp_path)


# --------------------------------------------------------------------------- one forward pass


def test_one_pass_equals_single_hookpoint_activations_and_stops_early(tiny_model, tmp_path):
    from autointerp.activations import cache_activations
    from autointerp.sweep.activations import sweep_activations

    sm = tiny_model
    names = [
        "blocks.2.hook_mlp_out",  # the deepest: the pass stops right after it
        "blocks.0.hook_resid_post",
        "blocks.1.hook_resid_pre",
        "blocks.1.hook_attn_out",
        "blocks.1.mlp.hook_post",
    ]
    hps = [sm.hookpoint(n) for n in names]
    tokens = np.random.default_rng(0).integers(3, len(sm.tokenizer), size=(10, 12))
    calls = {"layer2": 0, "layer3": 0, "norm": 0}

    def counter(name):
        def hook(*_):
            calls[name] += 1

        return hook

    hooks = [
        sm.layers[2].register_forward_hook(counter("layer2")),
        sm.layers[3].register_forward_hook(counter("layer3")),
        sm.model.model.norm.register_forward_hook(counter("norm")),
    ]
    paths = [tmp_path / "sweep" / f"{i}.npy" for i in range(len(hps))]
    try:
        done = sweep_activations(sm, hps, tokens, paths, batch_size=4, progress=False)
    finally:
        for h in hooks:
            h.remove()
    assert done == [True] * len(hps)
    # 3 batches: layer 2 entered (its MLP output is wanted) but never finished; nothing later
    assert calls == {"layer2": 0, "layer3": 0, "norm": 0}
    for hp, p in zip(hps, paths, strict=True):
        single = cache_activations(sm, hp, tokens, tmp_path / f"single-{hp.name}.npy",
                                   batch_size=4, progress=False)  # fmt: skip
        swept = np.load(p)
        assert swept.shape == (10, 12, hp.width) and np.array_equal(swept, np.asarray(single))
    assert not list((tmp_path / "sweep").glob(".*partial*"))  # temp files renamed or gone
    # resumable: files already there are kept, only the missing one is computed
    paths[1].unlink()
    before = paths[0].stat().st_mtime_ns
    again = sweep_activations(sm, hps, tokens, paths, batch_size=4, progress=False)
    assert again == [False, True, False, False, False] and paths[0].stat().st_mtime_ns == before


def test_one_pass_counts_forward_calls(tiny_model):
    """The deepest hookpoint is resid_post of layer 1: layers 2, 3 never run."""
    from autointerp.sweep.activations import run_to_hookpoints

    sm = tiny_model
    seen = []
    hs = [layer.register_forward_pre_hook(lambda m, a, i=i: seen.append(i))
          for i, layer in enumerate(sm.layers)]  # fmt: skip
    try:
        out = run_to_hookpoints(
            sm,
            [sm.hookpoint("blocks.1.hook_resid_post"), sm.hookpoint("blocks.0.hook_resid_post")],
            torch.tensor([[1, 5, 6, 7]]),
        )
    finally:
        for h in hs:
            h.remove()
    assert seen == [0, 1] and [tuple(o.shape) for o in out] == [(1, 4, 32), (1, 4, 32)]


# --------------------------------------------------------------------------- end to end

HOOKS = ["blocks.0.hook_resid_post", "blocks.2.hook_resid_post"]


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(v)


def to_toml(d: dict) -> str:
    """A suite dict as TOML (scalars and arrays first, then one table per section)."""
    flat = [f"{k} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            flat.append(f"[{k}]")
            flat += [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(flat) + "\n"


def _tiny_dict(tmp_path: Path) -> dict:
    from conftest import make_tiny_model

    md = tmp_path / "tiny"
    if not md.exists():
        sm = make_tiny_model()
        sm.model.config.max_position_embeddings = 4096  # char-level simulator prompts
        sm.model.save_pretrained(md)
        sm.tokenizer.save_pretrained(md)
    text = tmp_path / "corpus.txt"
    text.write_text("The cat sat on the mat. A dog ran to 12 red doors. " * 200)
    llm = {"backend": "transformers", "model": str(md), "dtype": "float32", "device": "cpu"}
    return {
        "name": "tinysweep",
        "model": {"name": str(md), "hookpoints": list(HOOKS)},
        "corpus": {"source": str(text), "context": 16, "n_tokens": 1024},
        "bases": [
            {
                "kind": "sae",
                "name": "sae",
                "train": {"expansion": 2, "k": 4, "epochs": 1, "batch_size": 256},
            },  # fmt: skip
            {"kind": "pca"},
            {"kind": "neurons"},
            {"kind": "random"},
        ],
        "records": {
            "n_features": 3,
            "n_explain_top": 3,
            "n_explain_quantile": 2,
            "n_test_top": 2,
            "n_test_quantile": 2,
            "n_test_random": 2,
            "n_quantiles": 2,
            "window": 8,
        },  # fmt: skip
        "metrics": {"n_tokens": 64, "ablations": ["zero"]},
        "explain": {"style": "top_tokens"},
        "scoring": {"n_bootstrap": 100},
        "llm": {"explainer": llm, "simulator": llm, "scorer": llm},
    }


def test_tiny_sweep_end_to_end(tmp_path, monkeypatch, capsys):
    from autointerp.cli import main
    from autointerp.pipeline import SuiteRun, run_suite

    d = _tiny_dict(tmp_path)
    monkeypatch.setenv("AUTOINTERP_CACHE_DIR", str(tmp_path / "cache"))
    toml = tmp_path / "sweep.toml"
    toml.write_text(to_toml(d))
    argv = ["run", str(toml), "--results", str(tmp_path / "res"), "--run", "r",
            "--work-dir", str(tmp_path / "w"), "-q", "--set", "records.n_features=3"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    root = tmp_path / "res" / "tinysweep" / "r"
    assert f"results in {root}" in out and "layer figure:" in out and "sweep-activations" in out
    # one run per hookpoint, each found its activations computed by the one pass
    sweep = json.loads((root / "sweep.json").read_text())
    status = {r["stage"]: r["status"] for r in sweep["stages"]}
    assert status["sweep-activations"] == "computed (2)" and status["tokens"] == "computed"
    for h in HOOKS:
        st = {r["stage"]: r["status"] for r in sweep["member_stages"][h]}
        assert st["activations"] == "cached" and st["bases"].startswith("computed"), st
        assert status[f"member:{h}"] == "computed"
        man = json.loads((root / h / "manifest.json").read_text())
        assert man["hookpoint"] == h and "model_load" not in man.get("timings", {})
    # the report: grouped by hookpoint, the figure first in the HTML
    for f in ("layers.png", "layers.svg", "leaderboard.csv", "leaderboard.json"):
        assert (root / f).stat().st_size > 1000, f
    assert (root / "layers.png").read_bytes()[:4] == b"\x89PNG"
    md = (root / "leaderboard.md").read_text()
    assert (
        md.index("![layer figure](layers.png)")
        < md.index(f"## {HOOKS[0]}")
        < md.index(f"## {HOOKS[1]}")
    )
    both = pl.read_csv(root / "leaderboard.csv")  # the headline rows first, then the full ones
    for table in ("headline", "full"):
        hp = both.filter(pl.col("table") == table)["hookpoint"].to_list()
        assert hp == sorted(hp, key=HOOKS.index) and set(hp) == set(HOOKS)
    csv = both.filter(pl.col("table") == "full")
    # pca-full: the IOI stage's full PCA rotation, a causal-only row
    assert set(csv["basis"]) == {"sae", "pca", "neurons", "random", "pca-full"}
    js = json.loads((root / "leaderboard.json").read_text())
    assert js["hookpoints"] == HOOKS and js["x"] == [0.0, 2.0] and js["x_label"] == "layer"
    series = {s["basis"]: s for s in js["layer_series"]}
    assert list(series) == ["sae", "pca", "neurons", "random"]  # the suite's order
    for h_i, h in enumerate(HOOKS):  # the figure's numbers are the leaderboard's rows
        row = csv.filter((pl.col("hookpoint") == h) & (pl.col("basis") == "sae")).row(0, named=True)
        assert series["sae"]["values"]["sim_score"][h_i] == pytest.approx(row["sim_score"])
        assert series["sae"]["values"]["fvu"][h_i] == pytest.approx(row["fvu"])
    assert all(v is None for v in series["random"]["values"]["lift_vs_random_dirs"])
    page = (root / "leaderboard.html").read_text()
    assert page.index('alt="layer figure') < page.index("<table")

    # a member is the single-hookpoint run of the same suite: a standalone run of it in
    # another results root reuses every keyed stage and writes the same stage files
    single = suite_from_dict({**d, "model": {"name": d["model"]["name"], "hookpoint": HOOKS[1]}})
    alone = SuiteRun(
        single,
        results_root=tmp_path / "alone",
        run_name="r",
        work_dir=tmp_path / "w",
        llm_cache=tmp_path / "cache" / "llm-cache.sqlite",
        progress=False,
    )
    rd = alone.run()  # fmt: skip
    names = lambda p: sorted(f.name for f in (p / "stages").iterdir() if f.suffix != ".jsonl")  # noqa: E731
    assert names(rd) == names(root / HOOKS[1])
    st = {r["stage"]: r["status"] for r in alone.summary()}
    assert st["activations"] == "cached" and st["metrics"].startswith("reused from another run")

    # a rerun computes nothing
    run_suite(toml, results_root=tmp_path / "res", run_name="r", work_dir=tmp_path / "w",
              progress=False)  # fmt: skip
    again = json.loads((root / "sweep.json").read_text())
    status = {r["stage"]: r["status"] for r in again["stages"]}
    assert status["sweep-activations"] == "cached (2)"
    assert all(status[f"member:{h}"] == "cached" for h in HOOKS), status

    # PCA refitted in other float detail (another CPU): the finished sweep is left as it is;
    # the members go on in new directories and the report in a new root beside the old one
    from safetensors.torch import load_file, save_file

    tree = lambda p: {f.relative_to(p).as_posix(): f.read_bytes() for f in p.rglob("*")  # noqa: E731
                      if f.is_file() and f.name not in (".lock", "progress.json")}  # fmt: skip
    before = tree(root)
    for folder in (tmp_path / "w" / "bases").glob("pca-*"):
        t = load_file(str(folder / "weights.safetensors"))
        t["D"] = t["D"] * (1 + 1e-6)
        save_file(t, str(folder / "weights.safetensors"))
    new_root = run_suite(toml, results_root=tmp_path / "res", run_name="r",
                         work_dir=tmp_path / "w", progress=False)  # fmt: skip
    after = tree(root)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing rewritten
    assert new_root != root and new_root.name.startswith("r-w") and new_root.parent == root.parent
    moved = json.loads((new_root / "sweep.json").read_text())["members"]
    for h in HOOKS:
        assert moved[h].startswith(f"../r/{h}-w"), moved
        assert (new_root / moved[h] / "manifest.json").is_file()
    md = (new_root / "leaderboard.md").read_text()
    assert f"({moved[HOOKS[0]]}/leaderboard.md)" in md


def test_committed_default_run_is_named_by_the_default_suite():
    """The committed run is the bundled default suite's own run (``run-<config hash>``)."""
    from autointerp.results import stable_hash

    suite = load_suite(Path(__file__).resolve().parents[1] / "evals" / "default.toml")
    assert COMMITTED.name == f"run-{stable_hash(suite.model_dump())}"
    assert (COMMITTED / "manifest.json").is_file()
