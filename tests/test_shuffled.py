"""Shuffled-explanation nulls: never the feature's own explanation or an identical text."""

from __future__ import annotations

import pytest

from autointerp.scoring.shuffled import assign_donors


def test_no_self_null_for_a_single_usable_explanation():
    # defect: the derangement of 1 was the identity, so the feature was its own null
    assert assign_donors(["cats"], seed=0) == [None]
    assert assign_donors(["cats", None, None], seed=0) == [None, None, None]


def test_identical_texts_are_never_a_null():
    texts = ["dates", "dates", "dates", "cats", "dogs", "birds", "fish", "dates"]
    for seed in range(20):
        donors = assign_donors(texts, seed)
        for i, d in enumerate(donors):
            assert d is not None and d != i and texts[d] != texts[i]


def test_all_identical_gives_no_null_and_failed_explanations_are_skipped():
    assert assign_donors(["x", "x", "x"], seed=3) == [None, None, None]
    donors = assign_donors(["a", None, "b", "c"], seed=1)
    assert donors[1] is None and all(d in (0, 2, 3) for d in donors if d is not None)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_donors_are_a_permutation_of_the_usable_features(seed):
    texts = [f"t{i}" for i in range(9)]
    donors = assign_donors(texts, seed)
    assert sorted(donors) == list(range(9)) and donors == assign_donors(texts, seed)
