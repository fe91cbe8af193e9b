"""The gate's every-layer search, fast parts: the candidate list, the one forward pass whose
upper layers run on the search rows only, and the rule that names the deepest plausible
reading (by hand, on the FVUs measured for a layer-6 SAE on SmolLM2, docs/plugging-in.md)."""

from __future__ import annotations

import numpy as np
import torch

from autointerp.gate import capture
from autointerp.gate.alternatives import (
    _clearly_better,
    _off_by_one,
    _ranked,
    candidate_hookpoints,
    depth,
)
from autointerp.gate.report import Alternative


def test_every_layer_and_kind_of_the_width_is_a_candidate(tiny_model):
    names = candidate_hookpoints(tiny_model, "blocks.2.hook_resid_post", 32)
    assert names[0] == "blocks.2.hook_resid_post" and len(names) == len(set(names))
    resid = {f"blocks.{i}.hook_resid_post" for i in range(4)} | {"blocks.0.hook_resid_pre"}
    outs = {"blocks.2.hook_mlp_out", "blocks.2.hook_attn_out"}
    assert set(names) == resid | outs  # MLP neurons are 64 wide: not this basis's width
    mlp = candidate_hookpoints(tiny_model, "blocks.1.hook_mlp_out", 32)
    assert set(mlp) == {f"blocks.{i}.hook_mlp_out" for i in range(4)} | {
        "blocks.1.hook_attn_out",
        "blocks.0.hook_resid_post",
        "blocks.1.hook_resid_post",
    }
    assert depth("blocks.3.hook_resid_pre") == depth("blocks.2.hook_resid_post") == 3


def test_one_forward_cut_to_the_search_rows_gives_the_whole_batch_activations(tiny_model):
    """Layers above the current hookpoint run on the first rows only; those rows' activations
    equal the whole batch's (rows are independent)."""
    sm = tiny_model
    ids = torch.from_numpy(np.random.default_rng(0).integers(3, 90, size=(6, 20)))
    names = candidate_hookpoints(sm, "blocks.1.hook_resid_post", 32)
    hps = [sm.hookpoint(n) for n in names]
    full = capture(sm, hps, ids)
    calls: list[int] = []
    h = sm.layers[3].register_forward_pre_hook(
        lambda _m, a, kw: calls.append((a[0] if a else kw["hidden_states"]).shape[0]),
        with_kwargs=True,
    )
    try:
        cut = capture(sm, hps, ids, rows={n: 2 for n in names[1:]})
    finally:
        h.remove()
    assert calls == [2]  # layer 3 ran on the 2 search rows
    assert cut[names[0]].shape[0] == 6
    for n in names:
        want = full[n] if n == names[0] else full[n][:2]
        assert cut[n].shape == want.shape, n
        torch.testing.assert_close(cut[n], want, rtol=1e-4, atol=1e-5)


def _alt(layer: int, fvu: float, variant: str = "as loaded") -> Alternative:
    return Alternative(f"blocks.{layer}.hook_resid_post", variant, fvu, 16.0, 0.9)


def test_the_deepest_plausible_reading_is_named_not_the_lowest_fvu():
    """FVUs of a TopK SAE trained at layer 6 read at layers 1-9 and 20 (512 tokens): layer 2
    is a hair lower than layer 6; layers 2-6 are plausible (none beaten by < 0.9x and
    >= 0.01), 7 is not (0.169 vs 0.127). Named: 6, then 5 (next deepest plausible)."""
    fvu = {1: 0.634, 2: 0.127, 3: 0.135, 4: 0.140, 5: 0.134, 6: 0.128, 7: 0.169, 8: 0.264,
           9: 0.513, 20: 1.15}  # fmt: skip
    for label in (9, 20, 8):
        current = _alt(label, fvu[label])
        others = [_alt(i, f) for i, f in fvu.items() if i != label]
        ranked = _ranked(others, current)
        assert [a.hookpoint for a in ranked[:5]] == [
            f"blocks.{i}.hook_resid_post" for i in (6, 5, 4, 3, 2)
        ]
        assert ranked[5].hookpoint == "blocks.7.hook_resid_post"  # the rest: best FVU first
    # a scaling fix at the current hookpoint is simpler than a deeper hookpoint
    current = _alt(6, 3.0)
    others = [_alt(6, 0.128, "scaled by sqrt(d)/E||x|| (x 2)"), _alt(5, 0.13), _alt(2, 0.127)]
    assert _ranked(others, current)[0].variant.startswith("scaled")


def test_a_label_below_the_trained_layer_is_stopped_and_named_in_one_step():
    """FVUs of the default run's TopK SAE (trained at blocks.6.hook_resid_post) read at every
    layer on 256 tokens (benchmarks/results/gate_relabelled_default_sae.txt): relabelled
    below its layer (5, 4, 3, 2) as above it (7, 9, 20), another reading fits clearly better
    (the ``alternatives`` check fails) and the reading named is blocks.6 in one step."""
    fvu = {2: 0.108, 3: 0.113, 4: 0.113, 5: 0.102, 6: 0.0847, 7: 0.133, 9: 0.426, 20: 0.974}
    for label in (5, 4, 3, 2, 7, 9, 20):
        current = _alt(label, fvu[label])
        others = [_alt(i, f) for i, f in fvu.items() if i != label]
        best = min(others, key=lambda a: a.fvu)
        assert _clearly_better(best, current), label
        assert _ranked(others, current)[0].hookpoint == "blocks.6.hook_resid_post", label


def test_the_one_layer_hint_follows_the_direction_of_the_mislabel():
    six = "blocks.6.hook_resid_post"  # = blocks.7.hook_resid_pre = hidden_states[7]
    deep = _off_by_one(six, "blocks.7.hook_resid_post")  # label one layer too deep
    assert "hidden_states[7] recorded as layer 7" in deep and "blocks.7.hook_resid_pre" in deep
    shallow = _off_by_one(six, "blocks.5.hook_resid_post")  # label one layer too shallow
    assert "recorded as layer" not in shallow
    assert "hidden_states[7]" in shallow and "label reads hidden_states[6]" in shallow
    assert _off_by_one(six, "blocks.4.hook_resid_post") == ""  # two layers: no index story
    assert _off_by_one(six, "blocks.9.hook_resid_post") == ""
