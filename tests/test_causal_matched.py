"""Hand computations for the IOI comparisons at matched quantities (docs/causal.md): features
for half the unpatched KL interpolated in log k, the edit at half KL along the curve, the KL at
a common edit, the area under the KL-vs-edit curve, the k grid, and the columns they fill
(undefined with "> k" where the curve never gets there, never the next grid point)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autointerp.causal import matched
from autointerp.causal.patching import Curve, IOIData, k_values
from autointerp.causal.summary import ioi_columns


def test_k_grid_is_powers_of_two_then_all():
    assert k_values("pow2", 4608)[-3:] == [2048, 4096, 4608]
    assert k_values("pow2", 4608)[:4] == [1, 2, 4, 8] and len(k_values("pow2", 4608)) == 14
    assert k_values("pow2", 64) == [1, 2, 4, 8, 16, 32, 64]
    g = k_values("pow2", 1152)
    assert all(b / a <= 2 for a, b in zip(g, g[1:]))
    assert k_values([1, 4, 9999], 64) == [1, 4, 64]


def test_half_k_interpolates_in_log_k():
    ks = [1, 2, 4, 8]
    # half of 4 is 2: crossed between k = 2 (KL 3) and k = 4 (KL 1), halfway in KL
    assert matched.half_k(ks, np.array([4.0, 3.0, 1.0, 0.5]), 4.0) == pytest.approx(2**1.5)
    # a quarter of the way: log k = log 2 + 0.25 log 2
    assert matched.half_k(ks, np.array([4.0, 2.5, 0.5, 0.1]), 4.0) == pytest.approx(2**1.25)
    assert matched.half_k(ks, np.array([1.9, 1.0, 0.5, 0.1]), 4.0) == 1.0  # already at k = 1
    assert matched.half_k(ks, np.array([2.0, 1.0, 0.5, 0.1]), 4.0) == 1.0  # <= counts
    assert matched.half_k(ks, np.array([4.0, 3.0, 2.5, 2.1]), 4.0) is None  # never


def test_edit_at_half_and_kl_at_edit_by_hand():
    edit = np.array([0.1, 0.2, 0.4, 0.8])
    kl = np.array([4.0, 3.0, 1.0, 0.5])
    # points (0, 4) (0.1, 4) (0.2, 3) (0.4, 1) (0.8, 0.5); KL 2 halfway from 0.2 to 0.4
    assert matched.edit_at_half(edit, kl, 4.0) == pytest.approx(0.3)
    assert matched.edit_at_half(edit, np.array([4.0, 3.0, 2.5, 2.1]), 4.0) is None
    # the unpatched point is (edit 0, kl0): a first point at KL 1 crosses 2 at 2/3 of its edit
    assert matched.edit_at_half(np.array([0.3]), np.array([1.0]), 4.0) == pytest.approx(0.2)
    assert matched.kl_at_edit(edit, kl, 4.0, 0.3) == pytest.approx(2.0)
    assert matched.kl_at_edit(edit, kl, 4.0, 0.05) == pytest.approx(4.0)
    assert matched.kl_at_edit(edit, kl, 4.0, 0.9) is None  # the curve never edits that much
    # a non-monotone edit: the running maximum (0, .1, .1, .4) is the x axis
    e2, k2 = np.array([0.1, 0.05, 0.4]), np.array([3.0, 2.0, 1.0])
    assert matched.kl_at_edit(e2, k2, 4.0, 0.1) == pytest.approx(3.0)
    assert matched.kl_at_edit(e2, k2, 4.0, 0.25) == pytest.approx(1.5)


def test_auc_by_hand():
    # (0, 1) (0.5, 0.5) (1, 0) in units of kl0: two trapezoids 0.375 + 0.125
    assert matched.auc_edit(np.array([0.5, 1.0]), np.array([2.0, 0.0]), 4.0) == pytest.approx(0.5)
    # the last KL holds to edit 1: 0.375 + 0.5 * 0.5
    assert matched.auc_edit(np.array([0.5]), np.array([2.0]), 4.0) == pytest.approx(0.625)
    # edits past 1 are clipped: one trapezoid from (0, 1) to (1, 0)
    assert matched.auc_edit(np.array([2.0]), np.array([0.0]), 4.0) == pytest.approx(0.5)


def _curve(name: str, ks: list[int], kl_mean: list[float], n: int, edit=None) -> Curve:
    kl = np.tile(np.array(kl_mean)[:, None], (1, n))
    e = np.tile(np.array(edit or np.linspace(0.1, 1, len(ks)))[:, None], (1, n))
    return Curve(name, ks[-1], ks, kl, e, np.zeros(ks[-1]), np.arange(ks[-1]), {}, e * 2)


def test_columns_interpolate_and_never_report_a_grid_point_not_reached():
    n = 6
    data = IOIData([None] * n, [], 0, np.ones(n), np.full(n, 4.0))  # type: ignore[list-item]
    ks = [1, 2, 4, 8]
    good = _curve("b", ks, [4.0, 3.0, 1.0, 0.5], n)
    never = _curve("r", ks, [4.0, 3.9, 3.5, 2.5], n)
    curves = {
        "b": {"in_sample": good, "held_out": good, "per_pair": good},
        "r": {"in_sample": never, "held_out": never, "per_pair": never},
    }
    cols = ioi_columns(data, curves, {"b": "sae", "r": "random"}, seed=0)
    hk = cols.rows["b"]["ioi_half_kl_features"]
    assert hk.value == pytest.approx(2**1.5)
    assert hk.ci_low == pytest.approx(2**1.5) and hk.ci_high == pytest.approx(2**1.5)
    assert cols.rows["b"]["ioi_half_kl_features_heldout"].value == pytest.approx(2**1.5)
    r = cols.rows["r"]["ioi_half_kl_features"]
    assert r.value is None and r.reason.startswith("> 8: never reaches half")
    lift = cols.rows["b"]["ioi_half_kl_features_lift"]
    assert lift.value is None and "random directions never reach" in lift.reason
    # edit at half: the relative edits 0.1, 0.4, 0.7, 1.0; KL 2 halfway from 0.4 to 0.7
    assert cols.rows["b"]["ioi_edit_half_kl_rel"].value == pytest.approx(0.55)
    assert cols.rows["b"]["ioi_edit_half_kl"].value == pytest.approx(1.1)  # edit_abs = 2x
    auc_b = cols.rows["b"]["ioi_auc_edit"].value
    auc_r = cols.rows["r"]["ioi_auc_edit"].value
    assert cols.rows["b"]["ioi_auc_edit_lift"].value == pytest.approx(auc_r - auc_b)
    x = [0, 0.1, 0.4, 0.7, 1.0]
    y = [1, 1, 0.75, 0.25, 0.125]
    want = sum((x[i + 1] - x[i]) * (y[i + 1] + y[i]) / 2 for i in range(4))
    assert auc_b == pytest.approx(want)
    # the common edit 0.25: halfway from (0.1, KL 4) to (0.4, KL 3)
    assert cols.rows["b"]["ioi_kl_at_edit"].value == pytest.approx(3.5)
    assert math.isclose(cols.extra["kl_clean"], 4.0)
