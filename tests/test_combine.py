"""combine.py: hand-worked tables per method (ties, missing scores), invariance properties,
Bradley-Terry recovering known strengths."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, special

from judge.combine import (
    METHODS,
    CombineConfig,
    Gate,
    Moments,
    bradley_terry,
    combine,
    combine_one,
    parse_weights,
)
from judge.errors import SpecError

# Three judges that disagree (hand-worked below): rm likes 0, verify likes 1 and 2, length likes 1.
TABLE = {"rm": [4, 2, 0, 2], "verify": [0, 1, 1, 0], "length": [10, 40, 20, 30]}
R2, R5 = math.sqrt(2), math.sqrt(5)


def approx(values):
    return pytest.approx(values, abs=1e-9)


def test_zscore_table():
    # rm: mean 2, std sqrt(2); verify: mean .5, std .5; length: mean 25, std sqrt(125) = 5 sqrt(5).
    combined, ranking = combine_one(TABLE, CombineConfig(method="zscore"))
    assert combined == approx([(R2 - 1 - 3 / R5) / 3, (1 + 3 / R5) / 3, (-R2 + 1 - 1 / R5) / 3, (-1 + 1 / R5) / 3])
    assert ranking == [1, 3, 2, 0]


def test_zscore_weights_are_a_weighted_mean():
    combined, _ = combine_one(TABLE, CombineConfig(method="zscore", weights={"rm": 2, "length": 0}))
    assert combined == approx([(2 * R2 - 1) / 3, 1 / 3, (-2 * R2 + 1) / 3, -1 / 3])


def test_minmax_table():
    combined, ranking = combine_one(TABLE, CombineConfig(method="minmax"))
    assert combined == approx([1 / 3, 2.5 / 3, (1 + 1 / 3) / 3, (0.5 + 2 / 3) / 3])
    assert ranking == [1, 2, 3, 0]


def test_borda_table_with_a_tie_broken_by_index():
    # Points (rank - 1) / (n - 1): rm [1, .5, 0, .5], verify [1/6, 5/6, 5/6, 1/6], length [0, 1, 1/3, 2/3].
    combined, ranking = combine_one(TABLE, CombineConfig(method="borda"))
    assert combined == approx([7 / 18, 14 / 18, 7 / 18, 8 / 18])
    assert combined[0] == combined[2]  # equal on paper, equal in floats
    assert ranking == [1, 3, 0, 2]


def test_rrf_table():
    # Descending average ranks: rm [1, 2.5, 4, 2.5], verify [3.5, 1.5, 1.5, 3.5], length [4, 1, 3, 2].
    combined, ranking = combine_one(TABLE, CombineConfig(method="rrf"))
    expect = [
        (1 / 61 + 1 / 63.5 + 1 / 64) / 3,
        (1 / 62.5 + 1 / 61.5 + 1 / 61) / 3,
        (1 / 64 + 1 / 61.5 + 1 / 63) / 3,
        (1 / 62.5 + 1 / 63.5 + 1 / 62) / 3,
    ]
    assert combined == approx(expect)
    assert ranking == [1, 3, 0, 2]
    combined_k0, _ = combine_one(TABLE, CombineConfig(method="rrf", rrf_k=0))
    assert combined_k0[1] == pytest.approx((1 / 2.5 + 1 / 1.5 + 1) / 3)


def test_copeland_table():
    # 1 beats 0, 2, 3; 2 beats 0; 3 beats 2; 0 and 3 draw (rm for 0, length for 3, verify tied).
    combined, ranking = combine_one(TABLE, CombineConfig(method="copeland"))
    assert combined == approx([0.5 / 3, 1.0, 1 / 3, 1.5 / 3])
    assert ranking == [1, 3, 2, 0]


def test_lexicographic_follows_the_judge_order():
    combined, ranking = combine_one(TABLE, CombineConfig(method="lexicographic"))
    assert ranking == [0, 1, 3, 2]  # rm first; 1 and 3 tie on rm, verify puts 1 first
    assert combined == approx([1, 2 / 3, 0, 1 / 3])
    _, ranking = combine_one(TABLE, CombineConfig(method="lexicographic", judges=["verify", "rm", "length"]))
    assert ranking == [1, 2, 0, 3]


def test_bradley_terry_two_candidates_matches_the_stationary_equation():
    # a beats b under all 3 judges: theta_a = -theta_b = t with 3 sigmoid(-2t) = prior * t.
    combined, ranking = combine_one({"a": [1, 0], "b": [5, 2], "c": [0.3, 0.1]}, CombineConfig(method="bradley-terry"))
    t = optimize.brentq(lambda t: 3 * special.expit(-2 * t) - 0.1 * t, 0, 50)
    assert combined == pytest.approx([t, -t], abs=2e-6)
    assert ranking == [0, 1]


def test_bradley_terry_is_finite_on_perfect_separation():
    combined, ranking = combine_one({"a": [3, 2, 1, 0]}, CombineConfig(method="bradley-terry"))
    assert all(math.isfinite(c) for c in combined) and ranking == [0, 1, 2, 3]


# Missing scores: rm failed on candidate 3.
MISSING = {"rm": [1.7, -0.4, 0.3, None], "verify": [1, 0, 1, 1], "length": [100, 50, 300, 20]}


def test_borda_skip_averages_over_the_judges_a_candidate_has():
    combined, ranking = combine_one(MISSING, CombineConfig(method="borda"))
    # rm ranks 3 candidates: [1, 0, .5]; verify [2/3, 0, 2/3, 2/3]; length [2/3, 1/3, 1, 0].
    assert combined == approx([7 / 9, 1 / 9, 13 / 18, 1 / 3])
    assert ranking == [0, 2, 3, 1]


def test_borda_last_ranks_the_failed_candidate_last_for_that_judge():
    combined, ranking = combine_one(MISSING, CombineConfig(method="borda", missing="last"))
    assert combined == approx([7 / 9, 2 / 9, 7 / 9, 2 / 9])
    assert ranking == [0, 2, 1, 3]  # 1 and 3 tie; 1 was scored by more judges


def test_copeland_skip_abstains_and_breaks_ties_by_judge_count():
    combined, ranking = combine_one(MISSING, CombineConfig(method="copeland"))
    assert combined == approx([5 / 6, 1 / 6, 5 / 6, 1 / 6])
    assert ranking == [0, 2, 1, 3]


def test_zscore_last_gives_the_judges_worst_value():
    skip, _ = combine_one(MISSING, CombineConfig(method="zscore"))
    last, _ = combine_one(MISSING, CombineConfig(method="zscore", missing="last"))
    assert last[:3] == approx(skip[:3])
    rm_z = (np.array([1.7, -0.4, 0.3]) - np.mean([1.7, -0.4, 0.3])) / np.std([1.7, -0.4, 0.3])
    assert last[3] == pytest.approx((2 * skip[3] + rm_z.min()) / 3)  # skip averaged verify and length


@pytest.mark.parametrize("method", METHODS)
def test_a_candidate_no_judge_scored_has_no_value_and_ranks_last(method):
    scores = {"rm": [None, 0.5, 0.1], "verify": [None, 0.0, 1.0]}
    combined, ranking = combine_one(scores, CombineConfig(method=method))
    assert combined[0] is None and ranking[-1] == 0 and sorted(ranking) == [0, 1, 2]


def test_a_judge_that_failed_everywhere_is_flagged():
    scores = np.array([[[1.0, np.nan], [2.0, np.nan]], [[1.0, 0.0], [2.0, np.nan]]])
    result = combine(scores, np.ones((2, 2), bool), ["rm", "verify"], CombineConfig())
    assert result.failed_everywhere.tolist() == [[False, True], [False, False]]


def test_gate_ranks_failing_candidates_below_and_leaves_the_gate_out():
    combined, ranking = combine_one(TABLE, CombineConfig(method="zscore", gates=[Gate("verify")]))
    assert ranking[:2] == [1, 2] and set(ranking[2:]) == {0, 3}
    alone, _ = combine_one({"rm": TABLE["rm"], "length": TABLE["length"]}, CombineConfig(method="zscore"))
    assert combined == approx(alone)


def test_gate_parse_and_missing_gate_score_fails():
    assert Gate.parse("rm>=0.25") == Gate("rm", 0.25) and Gate.parse("verify") == Gate("verify", 0.5)
    _, ranking = combine_one({"verify": [None, 1.0], "rm": [5.0, 1.0]}, CombineConfig(gates=[Gate("verify")]))
    assert ranking == [1, 0]


def test_padding_is_never_ranked():
    scores = np.full((2, 3, 1), np.nan)
    scores[0, :3, 0] = [1, 3, 2]
    scores[1, :1, 0] = [7]
    valid = np.array([[True, True, True], [True, False, False]])
    for method in METHODS:
        result = combine(scores, valid, ["rm"], CombineConfig(method=method))
        assert result.order[0].tolist() == [1, 2, 0] and result.order[1, 0] == 0
        assert np.isnan(result.combined[1, 1:]).all()


def test_config_errors_name_the_problem():
    with pytest.raises(SpecError, match="did you mean 'rrf'"):
        CombineConfig(method="rfr").plan(["rm"])
    with pytest.raises(SpecError, match="did you mean 'verify'"):
        CombineConfig(weights={"verfy": 2}).plan(["verify", "rm"])
    with pytest.raises(SpecError, match=">= 0"):
        CombineConfig(weights={"rm": -1}).plan(["rm"])
    assert parse_weights("rm=2, verify=0.5") == {"rm": 2.0, "verify": 0.5}
    with pytest.raises(SpecError, match="NAME=NUMBER"):
        parse_weights("rm")


def test_moments_merge_chunks_like_one_pass():
    rng = np.random.default_rng(1)
    data = rng.normal(3, 2, size=(10, 4, 2))
    data[rng.random(data.shape) < 0.2] = np.nan
    m = Moments.empty(2)
    m.update(data[:3])
    m.update(data[3:])
    flat = data.reshape(-1, 2)
    for j in range(2):
        col = flat[~np.isnan(flat[:, j]), j]
        assert m.mean[j] == pytest.approx(col.mean()) and m.std[j] == pytest.approx(col.std())


def test_bradley_terry_recovers_strengths_from_expected_wins():
    theta = np.array([-1.5, -0.5, 0.0, 0.8, 1.2])
    wins = 2000 * special.expit(theta[:, None] - theta[None, :])
    np.fill_diagonal(wins, 0)
    fit = bradley_terry(wins[None], prior=0.1)[0]
    assert fit - fit.mean() == pytest.approx(theta - theta.mean(), abs=0.01)


def test_bradley_terry_recovers_strengths_from_simulated_judges():
    # A judge scoring theta + Gumbel noise prefers a to b with probability sigmoid(theta_a - theta_b).
    rng = np.random.default_rng(7)
    theta = np.array([-1.0, -0.3, 0.2, 0.6, 1.5])
    scores = theta[:, None] + rng.gumbel(size=(5, 400))
    names = [f"j{i}" for i in range(400)]
    result = combine(scores[None], np.ones((1, 5), bool), names, CombineConfig(method="bradley-terry"))
    fit = result.combined[0]
    assert fit - fit.mean() == pytest.approx(theta - theta.mean(), abs=0.2)
    assert result.order[0].tolist() == [4, 3, 2, 1, 0]


# --------------------------------------------------------------------------- properties
AFFINE_INVARIANT = ("zscore", "minmax", "borda", "rrf", "copeland", "lexicographic", "bradley-terry")


@st.composite
def score_blocks(draw):
    p = draw(st.integers(1, 3))
    n = draw(st.integers(1, 6))
    j = draw(st.integers(1, 3))
    cells = st.one_of(st.none(), st.integers(-20, 20)) if draw(st.booleans()) else st.integers(-20, 20)
    values = draw(st.lists(st.lists(st.lists(cells, min_size=j, max_size=j), min_size=n, max_size=n),
                           min_size=p, max_size=p))
    arr = np.array([[[np.nan if v is None else float(v) for v in row] for row in prompt] for prompt in values])
    counts = draw(st.lists(st.integers(1, n), min_size=p, max_size=p))
    valid = np.arange(n)[None, :] < np.array(counts)[:, None]
    arr[~valid] = np.nan
    return arr, valid, [f"j{i}" for i in range(j)]


def _consistent(order_new, combined_ref, count):
    """The new ranking never puts a candidate above one with a clearly higher reference value."""
    ref = np.where(np.isnan(combined_ref), -1e300, combined_ref)[order_new[:count]]
    return bool(np.all(np.diff(ref) <= 1e-9))


@settings(max_examples=60, deadline=None)
@given(score_blocks(), st.sampled_from(AFFINE_INVARIANT), st.sampled_from([0.5, 3.0, 17.25]),
       st.integers(-100, 100), st.data())
def test_positive_affine_change_of_one_judge_changes_nothing(block, method, a, b, data):
    scores, valid, names = block
    j = data.draw(st.integers(0, len(names) - 1))
    moved = scores.copy()
    moved[:, :, j] = a * moved[:, :, j] + b
    cfg = CombineConfig(method=method)
    before, after = combine(scores, valid, names, cfg), combine(moved, valid, names, cfg)
    np.testing.assert_allclose(after.combined, before.combined, atol=1e-6, equal_nan=True)
    if method == "zscore":  # z-scores move in the last bits: compare up to near-ties
        assert all(_consistent(after.order[p], before.combined[p], valid[p].sum()) for p in range(len(valid)))
    else:
        assert (after.order == before.order).all()


@settings(max_examples=60, deadline=None)
@given(score_blocks(), st.sampled_from(METHODS), st.randoms(use_true_random=False))
def test_candidate_order_does_not_matter(block, method, rnd):
    scores, valid, names = block
    perm = [list(range(n)) for n in valid.sum(1)]
    for row in perm:
        rnd.shuffle(row)
    shuffled = scores.copy()
    for p, row in enumerate(perm):
        shuffled[p, : len(row)] = scores[p, row]
    cfg = CombineConfig(method=method)
    before, after = combine(scores, valid, names, cfg), combine(shuffled, valid, names, cfg)
    for p, row in enumerate(perm):
        n = len(row)
        np.testing.assert_allclose(after.combined[p, :n], before.combined[p, row], atol=1e-5, equal_nan=True)
        back = np.array(row)[after.order[p, :n]]  # the new ranking, in original indices
        assert _consistent(back, before.combined[p], n)


@settings(max_examples=80, deadline=None)
@given(score_blocks(), st.sampled_from(METHODS), st.sampled_from(["skip", "last"]), st.booleans())
def test_ranking_is_a_permutation(block, method, missing, gated):
    scores, valid, names = block
    gates = [Gate(names[0], 0.0)] if gated else []
    result = combine(scores, valid, names, CombineConfig(method=method, missing=missing, gates=gates))
    for p in range(len(valid)):
        n = int(valid[p].sum())
        assert sorted(result.order[p, :n].tolist()) == list(range(n))
        ranked = result.combined[p, result.order[p, :n]]
        if not gated:  # candidates with a value come first, best first
            has = ~np.isnan(ranked)
            assert not (has[1:] & ~has[:-1]).any()
            assert np.all(np.diff(ranked[has]) <= 0)
