"""Reconstruction / sparsity / downstream metrics and their SAEBench core export, checked by
hand."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from autointerp.bases.base import Basis
from autointerp.errors import AutointerpError
from autointerp.metrics import (
    DOWNSTREAM_COLUMNS,
    RECONSTRUCTION_COLUMNS,
    downstream_metrics,
    iter_activations,
    mean_activation,
    reconstruction_metrics,
)
from autointerp.model import run_to_hookpoint, splice

# --------------------------------------------------------------------------- test bases


class IdentityBasis(Basis):
    """Codes [relu(x), relu(-x)]: perfect reconstruction, non-negative codes."""

    def __init__(self, d: int, name: str = "identity") -> None:
        super().__init__(name, "test")
        self._d = d

    @property
    def d_in(self) -> int:
        return self._d

    @property
    def n_features(self) -> int:
        return 2 * self._d

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.clamp_min(0), (-x).clamp_min(0)], dim=-1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes[..., : self._d] - codes[..., self._d :]


class ZeroBasis(IdentityBasis):
    """Encodes like the identity but decodes everything to 0."""

    def __init__(self, d: int, name: str = "zero") -> None:
        super().__init__(d, name)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*codes.shape[:-1], self._d, dtype=codes.dtype, device=codes.device)


class NoisyBasis(IdentityBasis):
    """Identity plus a fixed (seeded) perturbation proportional to the input's scale."""

    def __init__(self, d: int, name: str = "noisy", scale: float = 0.5) -> None:
        super().__init__(d, name)
        g = torch.Generator().manual_seed(1)
        self.register_buffer("mix", torch.eye(d) + scale * torch.randn(d, d, generator=g) / d**0.5)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return super().decode(codes) @ self.mix


class DiagBasis(Basis):
    """3 features on 2 dims: relu(x0), relu(x1), relu(-x0-x1); decode = [c0, 0.5*c1]."""

    def __init__(self) -> None:
        super().__init__("diag", "test")

    @property
    def d_in(self) -> int:
        return 2

    @property
    def n_features(self) -> int:
        return 3

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[:, 0], x[:, 1], -x[:, 0] - x[:, 1]], dim=-1).clamp_min(0)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.stack([codes[:, 0], 0.5 * codes[:, 1]], dim=-1)


class RandomReluBasis(Basis):
    """A small random ReLU SAE-like basis with some always-dead features."""

    def __init__(self, d: int, f: int, seed: int = 0) -> None:
        super().__init__("relu", "sae")
        g = torch.Generator().manual_seed(seed)
        self.W_enc = torch.nn.Parameter(torch.randn(d, f, generator=g), requires_grad=False)
        self.b_enc = torch.nn.Parameter(torch.randn(f, generator=g) - 1.0, requires_grad=False)
        self.b_enc.data[: f // 8] = -1e6  # dead
        self.W_dec = torch.nn.Parameter(torch.randn(f, d, generator=g) / f, requires_grad=False)

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def n_features(self) -> int:
        return self.W_enc.shape[1]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.W_enc + self.b_enc)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes @ self.W_dec


# --------------------------------------------------------------------------- reconstruction

X3 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [2.0, 2.0]])


def test_hand_computed_metrics_on_three_tokens():
    m = reconstruction_metrics([X3], DiagBasis(), batch_size=2)
    # codes [[1,0,0],[0,2,0],[2,2,0]]; x_hat [[1,0],[0,1],[2,1]]
    assert m["l0"] == pytest.approx(4 / 3)
    assert m["l1"] == pytest.approx(7 / 3)
    # squared errors 0, 1, 1 -> mean 2/3, divided by d=2
    assert m["mse"] == pytest.approx(1 / 3)
    # mu = (1, 4/3); E||x||^2 = 13/3; ||mu||^2 = 25/9 -> Var = 14/9; EV = 1 - (2/3)/(14/9) = 4/7
    assert m["explained_variance"] == pytest.approx(4 / 7)
    assert m["fvu"] == pytest.approx(3 / 7)
    # ||x - mu||^2 per token: 16/9, 13/9, 13/9 -> mean(1, 1 - 9/13, 1 - 9/13) = 7/13
    assert m["explained_variance_legacy"] == pytest.approx(7 / 13)
    assert m["explained_variance_legacy"] != pytest.approx(m["explained_variance"])
    assert m["cossim"] == pytest.approx((1 + 1 + 6 / math.sqrt(40)) / 3)
    assert m["l2_ratio"] == pytest.approx((1 + 0.5 + math.sqrt(5 / 8)) / 3)
    # sum ||x_hat||^2 = 7, sum x.x_hat = 9
    assert m["relative_reconstruction_bias"] == pytest.approx(7 / 9)
    assert m["density"].tolist() == pytest.approx([2 / 3, 2 / 3, 0.0])
    assert m["frac_alive"] == pytest.approx(2 / 3)
    assert m["dead_frac"] == pytest.approx(1 / 3)
    assert m["freq_over_1_percent"] == pytest.approx(2 / 3)
    assert m["freq_over_10_percent"] == pytest.approx(2 / 3)
    assert m["l2_norm_in"] == pytest.approx((1 + 2 + math.sqrt(8)) / 3)
    assert m["l2_norm_out"] == pytest.approx((1 + 1 + math.sqrt(5)) / 3)
    assert m["n_tokens"] == 3
    assert set(RECONSTRUCTION_COLUMNS) <= set(m)


def test_density_thresholds_are_strict_and_separate():
    # feature 0 fires on 1 of 20 tokens (5%), feature 1 on exactly 2 (10%, not "over 10%"),
    # feature 2 on the other 18 (90%)
    x = torch.full((20, 2), -1.0)
    x[0, 0] = 1.0
    x[:2, 1] = 1.0
    m = reconstruction_metrics([x], DiagBasis())
    assert m["density"].tolist() == pytest.approx([0.05, 0.1, 0.9])
    assert m["freq_over_1_percent"] == pytest.approx(1.0)
    assert m["freq_over_10_percent"] == pytest.approx(1 / 3)


def test_mask_excludes_tokens():
    x = torch.cat([X3, torch.tensor([[100.0, -50.0]])])
    ex = torch.tensor([False, False, False, True])
    masked = reconstruction_metrics([(x, ex)], DiagBasis())
    plain = reconstruction_metrics([X3], DiagBasis())
    for k in RECONSTRUCTION_COLUMNS:
        assert masked[k] == pytest.approx(plain[k]), k
    assert masked["n_tokens"] == 3
    # unmasked, the outlier changes the numbers
    assert reconstruction_metrics([x], DiagBasis())["mse"] != pytest.approx(plain["mse"])
    # 3-D activations with a [B, T] mask work the same
    m3 = reconstruction_metrics([(x.reshape(2, 2, 2), ex.reshape(2, 2))], DiagBasis())
    assert m3["explained_variance"] == pytest.approx(plain["explained_variance"])


def test_perfect_and_zero_reconstruction():
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(0))
    p = reconstruction_metrics([x], IdentityBasis(6))
    assert p["mse"] == pytest.approx(0.0, abs=1e-12)
    assert p["fvu"] == pytest.approx(0.0, abs=1e-12)
    assert p["explained_variance"] == pytest.approx(1.0)
    assert p["explained_variance_legacy"] == pytest.approx(1.0)
    assert p["cossim"] == pytest.approx(1.0)
    assert p["l2_ratio"] == pytest.approx(1.0)
    assert p["relative_reconstruction_bias"] == pytest.approx(1.0)
    z = reconstruction_metrics([x], ZeroBasis(6))
    assert z["cossim"] == 0.0
    assert z["l2_ratio"] == 0.0
    assert z["mse"] == pytest.approx(float((x.double() ** 2).sum(-1).mean() / 6))
    # E||x||^2 / (E||x||^2 - ||mu||^2) > 1, so EV < 0
    assert z["explained_variance"] < 0


def _reference(x: torch.Tensor, basis: Basis, batches: list[torch.Tensor]) -> dict[str, float]:
    """All-at-once computation holding every code in memory (the naive way)."""
    x = x.double()
    codes = basis.encode(x.float()).double()
    xh = basis.decode(codes.float()).double()
    err = ((x - xh) ** 2).sum(-1)
    var = ((x - x.mean(0)) ** 2).sum(-1).mean()
    legacy = torch.cat(
        [
            1 - ((b.double() - basis(b).double()) ** 2).sum(-1) / ((b - b.mean(0)) ** 2).sum(-1)
            for b in batches
        ]
    )
    dens = (codes > 0).double().mean(0)
    return {
        "l0": float((codes != 0).sum(-1).double().mean()),
        "l1": float(codes.sum(-1).mean()),
        "mse": float(err.mean() / x.shape[1]),
        "explained_variance": float(1 - err.mean() / var),
        "explained_variance_legacy": float(legacy.double().mean()),
        "cossim": float(F.cosine_similarity(x, xh, dim=-1).mean()),
        "l2_ratio": float((xh.norm(dim=-1) / x.norm(dim=-1)).mean()),
        "relative_reconstruction_bias": float((xh**2).sum() / (x * xh).sum()),
        "frac_alive": float((dens > 0).double().mean()),
        "freq_over_1_percent": float((dens > 0.01).double().mean()),
        "freq_over_10_percent": float((dens > 0.1).double().mean()),
    }


def test_streaming_equals_all_at_once_for_several_batch_sizes():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(300, 8, generator=g) * 3 + 1
    basis = RandomReluBasis(8, 64)
    batches = list(x.split(100))
    ref = _reference(x, basis, batches)
    assert 0 < ref["frac_alive"] < 1
    for bs in (1, 7, 64, 1000):
        m = reconstruction_metrics(iter(batches), basis, batch_size=bs)
        for k, v in ref.items():
            assert m[k] == pytest.approx(v, rel=1e-5, abs=1e-9), (bs, k)
    # the same tokens batched differently: everything but the legacy EV is unchanged
    other = reconstruction_metrics(list(x.split(37)), basis, batch_size=16)
    for k, v in ref.items():
        if k != "explained_variance_legacy":
            assert other[k] == pytest.approx(v, rel=1e-5, abs=1e-9), k
    assert other["explained_variance_legacy"] == pytest.approx(
        _reference(x, basis, list(x.split(37)))["explained_variance_legacy"], rel=1e-5
    )
    assert other["explained_variance_legacy"] != pytest.approx(
        ref["explained_variance_legacy"], rel=1e-6
    )


def test_reconstruction_bad_input():
    with pytest.raises(AutointerpError, match="d_in=2"):
        reconstruction_metrics([torch.zeros(3, 5)], DiagBasis())
    with pytest.raises(AutointerpError, match="exclude mask"):
        reconstruction_metrics([(X3, torch.tensor([True]))], DiagBasis())
    with pytest.raises(AutointerpError, match="no tokens"):
        reconstruction_metrics([(X3, torch.ones(3, dtype=torch.bool))], DiagBasis())


# --------------------------------------------------------------------------- downstream

TEXTS = [
    "The cat sat on the mat and looked at the door.",
    "Numbers like 12345 are split into digits here!",
    "A quick brown fox jumps over the lazy dog, twice.",
]


def _ids(sm, t: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    bos = sm.tokenizer.bos_token_id
    rows = [[bos] + sm.tokenizer(s)["input_ids"][: t - 1] for s in TEXTS]
    ids = torch.tensor(rows)
    return ids, ids == bos


def _ce_kl_by_hand(sm, hp, ids, ex, make):
    """Independent computation: splice ``make`` at non-excluded positions, CE/KL at counted."""
    with torch.no_grad():
        clean = sm.model(input_ids=ids).logits[:, :-1].double()

        def fn(a):
            out = a.clone()
            out[~ex] = make(a[~ex])
            return out

        with splice(hp, fn):
            run = sm.model(input_ids=ids).logits[:, :-1].double()
    counted = ~ex[:, :-1]
    tgt = ids[:, 1:][counted]
    ce_clean = F.cross_entropy(clean[counted], tgt).item()
    ce_run = F.cross_entropy(run[counted], tgt).item()
    kl = F.kl_div(
        F.log_softmax(run[counted], -1),
        F.log_softmax(clean[counted], -1),
        log_target=True,
        reduction="batchmean",
    ).item()
    return ce_clean, ce_run, kl, int(counted.sum())


def test_downstream_identity_zero_and_ablations(tiny_model):
    sm = tiny_model
    hp = sm.hookpoint("blocks.1.hook_resid_post")
    ids, ex = _ids(sm)
    mean_act = mean_activation(sm, hp, ids, exclude_mask=ex)
    bases = [IdentityBasis(32), ZeroBasis(32), NoisyBasis(32)]
    out = downstream_metrics(sm, hp, ids, bases, mean_act=mean_act, exclude_mask=ex, batch_size=2)
    assert set(out) == {"identity", "zero", "noisy"}
    for row in out.values():
        assert list(row) == list(DOWNSTREAM_COLUMNS)
    idn, zero, noisy = out["identity"], out["zero"], out["noisy"]

    # hand computations of the raw numbers
    ce_clean, ce_zero, kl_zero, m = _ce_kl_by_hand(sm, hp, ids, ex, torch.zeros_like)
    _, ce_mean, kl_mean, _ = _ce_kl_by_hand(
        sm, hp, ids, ex, lambda a: mean_act.to(a.dtype).expand_as(a)
    )
    assert idn["n_tokens_metrics"] == m == 3 * 22  # BOS row-start not counted
    assert idn["ce_clean"] == pytest.approx(ce_clean, rel=1e-5)
    assert idn["ce_zero_abl"] == pytest.approx(ce_zero, rel=1e-5)
    assert idn["ce_mean_abl"] == pytest.approx(ce_mean, rel=1e-5)
    assert idn["kl_zero_abl"] == pytest.approx(kl_zero, rel=1e-4)
    assert idn["kl_mean_abl"] == pytest.approx(kl_mean, rel=1e-4)
    assert abs(ce_zero - ce_mean) > 1e-3  # the two ablations really differ

    # perfect reconstruction: score 1, KL 0
    assert idn["ce_recon"] == pytest.approx(ce_clean, rel=1e-5)
    assert idn["kl_recon"] == pytest.approx(0.0, abs=1e-6)
    assert idn["ce_loss_score"] == pytest.approx(1.0, abs=1e-4)
    assert idn["kl_div_score"] == pytest.approx(1.0, abs=1e-4)
    assert idn["ce_loss_score_mean_abl"] == pytest.approx(1.0, abs=1e-3)
    # zero reconstruction == zero ablation: score 0
    assert zero["ce_recon"] == pytest.approx(zero["ce_zero_abl"], rel=1e-6)
    assert zero["ce_loss_score"] == pytest.approx(0.0, abs=1e-5)
    assert zero["kl_div_score"] == pytest.approx(0.0, abs=1e-5)
    # scores follow from the raw numbers
    for r in out.values():
        assert r["ce_loss_score"] == pytest.approx(
            (r["ce_zero_abl"] - r["ce_recon"]) / (r["ce_zero_abl"] - r["ce_clean"])
        )
        assert r["ce_loss_score_mean_abl"] == pytest.approx(
            (r["ce_mean_abl"] - r["ce_recon"]) / (r["ce_mean_abl"] - r["ce_clean"])
        )
        assert r["kl_div_score"] == pytest.approx(
            (r["kl_zero_abl"] - r["kl_recon"]) / r["kl_zero_abl"]
        )
        assert r["kl_div_score_mean_abl"] == pytest.approx(
            (r["kl_mean_abl"] - r["kl_recon"]) / r["kl_mean_abl"]
        )
    _, ce_noisy, kl_noisy, _ = _ce_kl_by_hand(sm, hp, ids, ex, bases[2])
    assert noisy["ce_recon"] == pytest.approx(ce_noisy, rel=1e-5)
    assert noisy["kl_recon"] == pytest.approx(kl_noisy, rel=1e-4)
    assert noisy["kl_recon"] > 1e-4


def test_downstream_excluded_positions_keep_activation_and_do_not_count(tiny_model):
    sm = tiny_model
    hp = sm.hookpoint("blocks.0.hook_resid_post")
    ids, ex = _ids(sm)
    ex2 = ex.clone()
    ex2[:, 5:9] = True  # pretend these are special tokens
    out = downstream_metrics(sm, hp, ids, [ZeroBasis(32)], ablations=("zero",), exclude_mask=ex2)
    r = out["zero"]
    ce_clean, ce_zero, kl_zero, m = _ce_kl_by_hand(sm, hp, ids, ex2, torch.zeros_like)
    assert r["n_tokens_metrics"] == m == 3 * (22 - 4)
    assert r["ce_clean"] == pytest.approx(ce_clean, rel=1e-5)
    assert r["ce_zero_abl"] == pytest.approx(ce_zero, rel=1e-5)
    assert r["kl_zero_abl"] == pytest.approx(kl_zero, rel=1e-4)
    # mean ablation not requested -> NaN columns
    assert math.isnan(r["ce_mean_abl"]) and math.isnan(r["ce_loss_score_mean_abl"])
    # excluding nothing zeroes BOS too, which changes the ablated loss
    r_all = downstream_metrics(
        sm, hp, ids, [ZeroBasis(32)], ablations=("zero",), exclude_mask=None
    )["zero"]
    assert r_all["n_tokens_metrics"] == 3 * 23
    assert r_all["ce_zero_abl"] != pytest.approx(r["ce_zero_abl"], rel=1e-4)


@pytest.mark.parametrize(
    "name,width", [("blocks.2.mlp.hook_post", 64), ("blocks.2.hook_mlp_out", 32)]
)
def test_downstream_mlp_hookpoints(tiny_model, name, width):
    sm = tiny_model
    hp = sm.hookpoint(name)
    assert hp.width == width
    ids, ex = _ids(sm)
    mean_act = mean_activation(sm, hp, ids, exclude_mask=ex, batch_size=2)
    assert mean_act.shape == (width,)
    out = downstream_metrics(
        sm, hp, ids, [IdentityBasis(width), NoisyBasis(width)], mean_act=mean_act, exclude_mask=ex
    )
    assert out["identity"]["ce_loss_score"] == pytest.approx(1.0, abs=1e-4)
    assert out["identity"]["kl_div_score"] == pytest.approx(1.0, abs=1e-4)
    assert out["noisy"]["kl_recon"] > 0
    assert math.isfinite(out["noisy"]["ce_loss_score_mean_abl"])
    _, ce_noisy, _, _ = _ce_kl_by_hand(sm, hp, ids, ex, NoisyBasis(width))
    assert out["noisy"]["ce_recon"] == pytest.approx(ce_noisy, rel=1e-5)
    # reconstruction metrics run on the same activations
    m = reconstruction_metrics(iter_activations(sm, hp, ids, exclude_mask=ex), IdentityBasis(width))
    assert m["fvu"] == pytest.approx(0.0, abs=1e-9)
    assert m["n_tokens"] == int((~ex).sum())


def test_mean_activation_matches_direct_mean(tiny_model):
    sm = tiny_model
    hp = sm.hookpoint("blocks.1.hook_resid_post")
    ids, ex = _ids(sm)
    x = run_to_hookpoint(sm, hp, ids)
    want = x[~ex].double().mean(0).float()
    got = mean_activation(sm, hp, ids, exclude_mask=ex, batch_size=2)
    assert torch.allclose(got, want, atol=1e-5)


def test_downstream_bad_input(tiny_model):
    sm = tiny_model
    hp = sm.hookpoint("blocks.1.hook_resid_post")
    ids, ex = _ids(sm)
    with pytest.raises(AutointerpError, match="mean_act"):
        downstream_metrics(sm, hp, ids, [IdentityBasis(32)], exclude_mask=ex)
    with pytest.raises(AutointerpError, match="d_in=64"):
        downstream_metrics(sm, hp, ids, [IdentityBasis(64)], ablations=("zero",))
    with pytest.raises(AutointerpError, match="unknown ablation"):
        downstream_metrics(sm, hp, ids, [IdentityBasis(32)], ablations=("resample",))
    with pytest.raises(AutointerpError, match="exclude_mask shape"):
        downstream_metrics(
            sm, hp, ids, [IdentityBasis(32)], ablations=("zero",), exclude_mask=ex[:, :3]
        )


# --------------------------------------------------------------------------- SAEBench export


def _saebench_core(tmp_path, row, density, info=None):
    """Write a one-basis run directory holding ``row`` and ``density``; its SAEBench core."""
    from synthetic_runs import write_run

    from autointerp.export.saebench import core_dict
    from autointerp.report import load_run

    rd = write_run(
        tmp_path / "run",
        bases=[("diag", "test", len(density))],
        scores=[],
        metrics=[{"basis": "diag", "kind": "test", "n_features": len(density), **row}],
        density=[
            {"basis": "diag", "feature": i, "density": float(d)} for i, d in enumerate(density)
        ],
        model="tiny-llama",
        hookpoint="blocks.1.hook_resid_post",
        infos={"diag": info or {}},
    )
    return core_dict(load_run(rd), "diag")


def test_saebench_json_layout_and_values(tmp_path):
    m = reconstruction_metrics([X3], DiagBasis())
    row = {k: float(m[k]) for k in (*RECONSTRUCTION_COLUMNS, "l2_norm_in", "l2_norm_out")}
    row.update(
        n_tokens=3, ce_clean=2.0, ce_zero_abl=6.0, ce_mean_abl=5.0, ce_recon=3.0,
        ce_loss_score=0.75, ce_loss_score_mean_abl=2 / 3, kl_zero_abl=4.0,
        kl_mean_abl=float("nan"), kl_recon=1.0, kl_div_score=0.75,
        kl_div_score_mean_abl=float("nan"), n_tokens_metrics=69,
    )  # fmt: skip
    d = _saebench_core(tmp_path, row, m["density"].tolist(), {"k": 2})
    d = json.loads(json.dumps(d, allow_nan=False))  # strict JSON: NaN were replaced
    assert d["eval_type_id"] == "core"
    assert isinstance(d["datetime_epoch_millis"], int) and len(d["eval_id"]) == 36
    r = d["eval_result_metrics"]
    assert set(r) == {
        "model_behavior_preservation",
        "model_performance_preservation",
        "reconstruction_quality",
        "shrinkage",
        "sparsity",
        "token_stats",
        "misc_metrics",
    }
    assert r["model_performance_preservation"] == {
        "ce_loss_score": 0.75,
        "ce_loss_with_ablation": 6.0,
        "ce_loss_with_sae": 3.0,
        "ce_loss_without_sae": 2.0,
    }
    assert r["model_behavior_preservation"] == {
        "kl_div_score": 0.75,
        "kl_div_with_ablation": 4.0,
        "kl_div_with_sae": 1.0,
    }
    assert r["reconstruction_quality"]["explained_variance"] == pytest.approx(4 / 7)
    assert r["reconstruction_quality"]["explained_variance_legacy"] == pytest.approx(7 / 13)
    assert set(r["shrinkage"]) == {
        "l2_norm_in",
        "l2_norm_out",
        "l2_ratio",
        "relative_reconstruction_bias",
    }
    assert r["sparsity"] == {"l0": pytest.approx(4 / 3), "l1": pytest.approx(7 / 3)}
    assert r["token_stats"] == {
        "total_tokens_eval_reconstruction": 69,
        "total_tokens_eval_sparsity_variance": 3,
    }
    misc = r["misc_metrics"]
    assert misc["frac_alive"] == pytest.approx(2 / 3)
    # densities (2/3, 2/3, 0): all mass is on features over 1% and over 10%
    assert misc["freq_over_10_percent"] == pytest.approx(2 / 3)
    assert misc["normalized_freq_over_1_percent"] == pytest.approx(1.0)
    assert misc["normalized_freq_over_10_percent"] == pytest.approx(1.0)
    assert [e["index"] for e in d["eval_result_details"]] == [0, 1, 2]
    assert d["eval_result_details"][2]["feature_density"] == 0.0
    assert d["eval_config"]["model_name"] == "tiny-llama"
    assert d["sae_cfg_dict"]["hook_name"] == "blocks.1.hook_resid_post"
    assert d["sae_cfg_dict"]["hook_layer"] == 1
    assert d["sae_cfg_dict"]["d_sae"] == 3 and d["sae_cfg_dict"]["k"] == 2
    un = d["eval_result_unstructured"]
    assert un["extra_metrics"]["kl_mean_abl"] == -1
    assert "eval_result_unstructured.extra_metrics.kl_mean_abl" in un["nan_fields"]
    assert un["extra_metrics"]["ce_mean_abl"] == 5.0


def test_saebench_nan_metric_written_as_minus_one(tmp_path):
    d = _saebench_core(tmp_path, {"kl_div_score": float("nan"), "l0": 1.0}, [0.5, 0.0])
    assert d["eval_result_metrics"]["model_behavior_preservation"]["kl_div_score"] == -1
    nan = d["eval_result_unstructured"]["nan_fields"]
    assert "eval_result_metrics.model_behavior_preservation.kl_div_score" in nan
    # a metric the run does not have is -1 and named, never 0
    assert d["eval_result_metrics"]["shrinkage"]["l2_ratio"] == -1
    assert any("l2_ratio" in m for m in d["eval_result_unstructured"]["missing_metrics"])


@pytest.mark.parametrize("name", ["blocks.1.hook_resid_post", "blocks.2.hook_resid_pre"])
def test_downstream_from_given_activations_equals_full_forwards(tiny_model, name, caplog):
    """Runs started at a residual hookpoint from its cached activations (layers before it
    skipped) give the numbers of full spliced forwards; activations that are not the model's
    are caught by the first batch's check and the full forwards are used."""
    sm = tiny_model
    hp = sm.hookpoint(name)
    ids, ex = _ids(sm)
    mean_act = mean_activation(sm, hp, ids, exclude_mask=ex)
    bases = [IdentityBasis(32), NoisyBasis(32)]
    kw = dict(mean_act=mean_act, exclude_mask=ex, batch_size=2)
    ref = downstream_metrics(sm, hp, ids, bases, **kw)
    acts = run_to_hookpoint(sm, hp, ids)
    calls = []
    layer0 = sm.layers[0]
    h = layer0.register_forward_hook(lambda *_: calls.append(1))
    try:
        got = downstream_metrics(sm, hp, ids, bases, acts=acts, **kw)
    finally:
        h.remove()
    assert len(calls) == 1  # only the first batch's check ran the skipped layers
    assert sm.layers[0] is layer0  # the layers are put back
    for b in ref:
        for col, v in ref[b].items():
            assert got[b][col] == pytest.approx(v, rel=1e-5, abs=1e-7), (b, col)
    with caplog.at_level("WARNING"):
        wrong = downstream_metrics(sm, hp, ids, bases, acts=acts + 1.0, **kw)
    assert "using full forwards" in caplog.text
    for b in ref:
        assert wrong[b]["ce_recon"] == pytest.approx(ref[b]["ce_recon"], rel=1e-5)
    with pytest.raises(AutointerpError, match="acts has shape"):
        downstream_metrics(sm, hp, ids, bases, acts=acts[:, :-1], **kw)
