"""Selection primitives against hand-worked examples."""

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from biasprune.selection import (
    intersect,
    majority,
    next_band,
    random_like,
    score_matched,
    top_fraction,
    top_k,
    top_like,
    wanda_set_difference,
)


def test_top_fraction_by_hand():
    scores = torch.tensor([[0.1, 0.9, 0.5], [0.7, 0.2, 0.3]])
    assert top_fraction(scores, 0.5).tolist() == [[False, True, True], [True, False, False]]
    assert top_fraction(scores, 0.1).sum() == 0  # int(0.6) = 0 entries
    with pytest.raises(ValueError, match="fraction must lie in"):
        top_fraction(scores, 1.0)


def test_wanda_set_difference_by_hand():
    weight = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    black_norm, white_norm = torch.tensor([1.0, 1.0]), torch.tensor([1.0, 10.0])
    # Black scores |W| * norm: [[1, 2], [3, 0.5]] -> top half {(1,0), (0,1)}
    # White scores: [[1, 20], [3, 5]] -> top half {(0,1), (1,1)}; difference: {(1,0)}
    pruned = wanda_set_difference(weight, black_norm, white_norm, 0.5, 0.5)
    assert pruned.tolist() == [[False, False], [True, False]]


def test_top_k_across_layers_and_intersection():
    scores = {"0": torch.tensor([0.1, 0.8, 0.3]), "1": torch.tensor([0.9, 0.2, 0.7])}
    chosen = top_k(scores, 3)
    assert chosen["0"].tolist() == [False, True, False] and chosen["1"].tolist() == [True, False, True]
    other = {"0": torch.tensor([True, True, False]), "1": torch.tensor([False, False, True])}
    both = intersect([chosen, other])
    assert both["0"].tolist() == [False, True, False] and both["1"].tolist() == [False, False, True]
    with pytest.raises(ValueError, match=r"k must lie in 1\.\.6"):
        top_k(scores, 7)


def test_random_control_keeps_the_count_per_key_and_is_seeded():
    mask = {"0.q_proj": torch.rand(8, 8) < 0.3, "1.down_proj": torch.rand(4, 16) < 0.1}
    control = random_like(mask, seed=1)
    assert {key: int(v.sum()) for key, v in control.items()} == {key: int(v.sum()) for key, v in mask.items()}
    assert all(
        torch.equal(a, b) for a, b in zip(control.values(), random_like(mask, 1).values(), strict=True)
    )
    assert not all(
        torch.equal(a, b) for a, b in zip(control.values(), random_like(mask, 2).values(), strict=True)
    )


def test_undefined_scores_are_never_chosen():
    scores = {"0": torch.tensor([1.0, float("nan"), 3.0, 2.0])}
    assert top_k(scores, 2)["0"].tolist() == [False, False, True, True]
    assert top_fraction(torch.tensor([float("nan"), 0.1, 0.2, 0.3]), 0.5).tolist() == [
        False,
        False,
        True,
        True,
    ]


def test_matched_and_generic_controls_by_hand():
    mask = {"0": torch.tensor([[True, False, False, True], [False, False, True, False]])}
    pool = {"0": torch.tensor([[True, True, False, True], [False, True, True, True]])}
    for seed in range(20):
        control = random_like(mask, seed, pool)
        drawn = control["0"]
        assert int(drawn.sum()) == 3 and not (drawn & ~pool["0"]).any()
        assert torch.equal(control["0"], drawn)  # drawn when read, the same every time
    # Uniform over the pool: each of its 6 entries is drawn with probability 1/2.
    hits = sum(random_like(mask, seed, pool)["0"].float() for seed in range(2000)) / 2000
    assert torch.allclose(hits[pool["0"]], torch.full((6,), 0.5), atol=0.05)
    with pytest.raises(ValueError, match="pool of 1"):  # raised when the key is drawn
        random_like(mask, 0, {"0": torch.tensor([[True, False, False, False], [False] * 4])})["0"]
    scores = {"0": torch.tensor([[0.1, 0.9, 0.2, 0.8], [0.7, 0.0, 0.3, 0.6]])}
    assert top_like(mask, scores)["0"].nonzero().tolist() == [[0, 1], [0, 3], [1, 0]]


def test_next_band_and_majority_by_hand():
    scores = {"0": torch.tensor([9.0, 1.0, 8.0, 2.0]), "1": torch.tensor([7.0, 6.0, 0.5, 5.0])}
    mask = {"0": torch.tensor([True, False, True, False]), "1": torch.tensor([False] * 4)}
    band = next_band(mask, scores)  # the 4 best below the mask: 7, 6, 5 (layer 1) and 2 (layer 0)
    assert band["0"].tolist() == [False, False, False, True]
    assert band["1"].tolist() == [True, True, False, True]
    votes = [
        {"0": torch.tensor(bits, dtype=torch.bool)} for bits in ([1, 1, 0], [1, 0, 0], [0, 1, 1], [1, 0, 0])
    ]
    assert majority(votes)["0"].tolist() == [True, True, False]


def test_the_weights_matched_control_has_the_masks_score_profile_and_the_top_tau_pool_does_not():
    """The paper's mask (top 15% of the Black-input Wanda score minus top 15% of the White) sits near the
    threshold, since the largest entries are in both top sets. A matched control drawn from the score-matched
    pool removes entries of the same |W| * ||X_Black|| distribution as the mask (two-sample KS test, scipy),
    outside the mask; one drawn from the whole top-15% pool (the old control) removes larger ones."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(192, 384, generator=generator)
    black = torch.randn(384, generator=generator).exp()
    white = (black.log() + 0.5 * torch.randn(384, generator=generator)).exp()  # correlated inputs
    mask = wanda_set_difference(weight, black, white, 0.15, 0.15)
    score = (weight.abs() * black[None, :]).numpy()
    assert 1000 < int(mask.sum()) < 0.15 * mask.numel()
    pool = score_matched(mask, torch.from_numpy(score), "0.q_proj")
    assert not (pool & mask).any() and int(pool.sum()) >= int(mask.sum())
    old_pool = top_fraction(torch.from_numpy(score), 0.15)
    drawn = {}
    for name, candidates in (("matched", pool), ("top-tau", old_pool)):
        control = np.concatenate(
            [score[random_like({"k": mask}, seed, {"k": candidates})["k"].numpy()] for seed in range(3)]
        )
        drawn[name] = control
    masked = score[mask.numpy()]
    # effect sizes (KS distance, median ratio): with ~8,000 draws any p-value is tiny
    assert ks_2samp(masked, drawn["matched"]).statistic < 0.12
    assert abs(np.median(drawn["matched"]) / np.median(masked) - 1) < 0.03
    assert ks_2samp(masked, drawn["top-tau"]).statistic > 0.25  # the old pool: a different profile
    assert np.median(drawn["top-tau"]) > 1.2 * np.median(masked)
    # A mask holding most of its matrix has no disjoint pool of its size: the whole matrix, so a draw exists.
    most = torch.from_numpy(score > np.quantile(score, 0.25))
    assert score_matched(most, torch.from_numpy(score), "0.q_proj").all()
    assert not score_matched(torch.zeros_like(mask), torch.from_numpy(score), "0.q_proj").any()
