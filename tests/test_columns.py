"""Stage-contributed columns: cells keep their CI and n, undefined cells need a reason, and a
non-finite value becomes undefined instead of a number."""

from __future__ import annotations

import math

import pytest

from autointerp.columns import Cell, ColumnDoc, StageColumns, load_columns, save_columns


def test_roundtrip_and_undefined(tmp_path):
    cols = StageColumns("ioi", [ColumnDoc("ioi_kl_k1", "KL at k=1", better="lower")])
    cols.set("sae", "ioi_kl_k1", Cell(0.5, 0.25, 0.75, n=64))
    cols.set("pca", "ioi_kl_k1", Cell.undefined("no prompts", n=0))
    save_columns(tmp_path, cols)
    (back,) = load_columns(tmp_path)
    assert back.rows["sae"]["ioi_kl_k1"] == Cell(0.5, 0.25, 0.75, n=64)
    assert back.rows["pca"]["ioi_kl_k1"].value is None
    assert back.rows["pca"]["ioi_kl_k1"].reason == "no prompts"
    assert back.columns[0].better == "lower"


def test_undefined_needs_reason_and_nan_is_undefined():
    with pytest.raises(ValueError, match="reason"):
        Cell(None)
    c = Cell(math.nan)
    assert c.value is None and "non-finite" in (c.reason or "")


def test_undeclared_column_is_an_error():
    cols = StageColumns("x", [ColumnDoc("a", "a")])
    with pytest.raises(KeyError, match="not declared"):
        cols.set("sae", "b", Cell(1.0))


def test_no_columns_dir(tmp_path):
    assert load_columns(tmp_path) == []
