"""Agreement statistics against hand-worked cases and textbook / scipy values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from judge import agreement as ag
from judge.errors import InputError


def rec(scores: dict, human, texts=("a", "bb"), rid="r", prompt="p", **extra) -> dict:
    return {"id": rid, "prompt": prompt, "candidates": list(texts), "scores": scores, "human": human, **extra}


def groups(*records: dict) -> list[ag.Labelled]:
    out = ag.labelled_groups(((i, r) for i, r in enumerate(records, 1)), "mem.jsonl")
    return out


# --------------------------------------------------------------------------- kappa
def test_cohen_kappa_textbook_2x2() -> None:
    """Wikipedia's worked example: 50 proposals, 20 yes/yes, 15 no/no, 5 and 10 split: kappa 0.4."""
    assert ag.cohen_kappa(np.array([[20, 5], [10, 15]])) == pytest.approx(0.4)


def test_weighted_kappa_hand_worked_3x3() -> None:
    table = np.array([[2, 1, 0], [0, 2, 1], [0, 0, 2]])
    # margins rows (3, 3, 2), columns (2, 3, 3) of 8. Quadratic weights 0.25 / 1: observed
    # disagreement 0.5/8, expected 20.5/64. Linear weights 0.5 / 1: observed 1/8, expected 28/64.
    assert ag.cohen_kappa(table, "quadratic") == pytest.approx(1 - 4 / 20.5)
    assert ag.cohen_kappa(table, "linear") == pytest.approx(1 - 8 / 28)


def test_weighted_kappa_equals_unweighted_for_two_categories() -> None:
    t = np.array([[7, 3], [2, 8]])
    assert ag.cohen_kappa(t, "quadratic") == pytest.approx(ag.cohen_kappa(t))
    assert ag.cohen_kappa(t, "linear") == pytest.approx(ag.cohen_kappa(t))


def test_kappa_perfect_and_chance() -> None:
    assert ag.cohen_kappa(np.diag([5, 5, 5])) == pytest.approx(1.0)
    assert ag.cohen_kappa(np.full((2, 2), 5)) == pytest.approx(0.0)


# --------------------------------------------------------------------------- tie rules
MT = [  # (human choice, judge scores): agree, disagree, both tie, human tie only, judge tie only
    (0, [2, 1]),
    (1, [2, 1]),
    (None, [1, 1]),
    (None, [2, 1]),
    (0, [1, 1]),
]


def mt_groups() -> list[ag.Labelled]:
    return groups(*[rec({"j": s}, {"choice": c}, rid=str(i)) for i, (c, s) in enumerate(MT)])


def test_pair_credit_rules() -> None:
    assert ag.pair_credit(1, 1, "drop") == (1.0, 1.0)
    assert ag.pair_credit(1, 0, "drop") == (0.0, 0.0)
    assert ag.pair_credit(0, 0, "drop") == (0.0, 0.0)
    assert ag.pair_credit(0, 0, "count") == (1.0, 1.0)
    assert ag.pair_credit(1, 0, "count") == (0.0, 1.0)
    assert ag.pair_credit(0, -1, "half") == (0.5, 1.0)
    assert ag.pair_credit(1, -1, "half") == (0.0, 1.0)
    with pytest.raises(ValueError):
        ag.pair_credit(1, 1, "ignore")


def test_pairwise_accuracy_under_each_tie_rule() -> None:
    m = ag.pairwise_metrics(mt_groups(), "j", ag.AgreeConfig(bootstrap=0))
    assert m is not None
    acc = m["accuracy"]
    assert acc["drop"]["value"] == pytest.approx(1 / 2) and acc["drop"]["n"] == 2
    assert acc["count"]["value"] == pytest.approx(2 / 5) and acc["count"]["n"] == 5
    assert acc["half"]["value"] == pytest.approx(3 / 5)
    # kappa on the 3x3 table of (human, judge) verdicts, checked against the formula by hand
    table = np.zeros((3, 3))
    for h, v in [(1, 1), (-1, 1), (0, 0), (0, 1), (1, 0)]:
        table[h + 1, v + 1] += 1
    assert m["kappa"]["value"] == pytest.approx(ag.cohen_kappa(table))
    # best-of-N only where humans chose: g1 right, g2 wrong, g5 tie is not a win
    assert m["best_of_n"]["value"] == pytest.approx(1 / 3)


def test_missing_scores_are_left_out_not_zero() -> None:
    g = groups(rec({"j": [None, 1.0]}, {"choice": 0}), rec({"j": [2.0, 1.0]}, {"choice": 0}, rid="2"))
    m = ag.pairwise_metrics(g, "j", ag.AgreeConfig(bootstrap=0))
    assert m["missing"] == 1 and m["accuracy"]["count"]["value"] == 1.0


def test_best_of_n_needs_a_strict_win() -> None:
    g = groups(rec({"j": [1, 2, 3]}, {"choice": 2}, texts="abc"), rec({"j": [3, 2, 3]}, {"choice": 2}, texts="abc", rid="2"))
    m = ag.pairwise_metrics(g, "j", ag.AgreeConfig(bootstrap=0))
    assert m["best_of_n"]["value"] == pytest.approx(0.5)
    # and a choice among 3 gives 2 pairs per prompt
    assert m["pairs"] == 4


def test_consensus_is_a_strict_majority() -> None:
    assert ag.consensus([0, 0, 1]) == 0
    assert ag.consensus([0, 1, None]) is None
    assert ag.consensus([None, None, 1]) is None
    assert ag.consensus([1, 0]) is None


# --------------------------------------------------------------------------- bootstrap
def test_bootstrap_ci_contains_estimate_and_narrows_with_n() -> None:
    rng = np.random.default_rng(1)

    def rows(n: int) -> np.ndarray:
        hits = (rng.random(n) < 0.7).astype(float)
        return np.stack([hits, np.ones(n)], axis=1)

    small = ag.estimate(rows(60), n_resamples=1000)
    large = ag.estimate(rows(2000), n_resamples=1000)
    for e in (small, large):
        assert e.low <= e.value <= e.high
    assert (large.high - large.low) < (small.high - small.low) / 3


def test_bootstrap_degenerate_data_gives_a_point_interval() -> None:
    e = ag.estimate(np.ones((30, 2)), n_resamples=200)
    assert (e.value, e.low, e.high) == (1.0, 1.0, 1.0)


def test_bootstrap_matches_scipy_percentile_on_a_mean() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=200)
    counts = np.stack([x, np.ones_like(x)], axis=1)
    est, low, high = ag.bootstrap_ci(counts, ag._ratio, n_resamples=3000, seed=5)
    ref = stats.bootstrap((x,), np.mean, n_resamples=3000, rng=np.random.default_rng(5)).confidence_interval
    assert est == pytest.approx(x.mean())
    assert low == pytest.approx(ref.low, abs=0.02) and high == pytest.approx(ref.high, abs=0.02)


# --------------------------------------------------------------------------- ratings
def test_rating_correlations_match_scipy() -> None:
    data = [([5, 3, 1], [0.9, 0.5, 0.7]), ([1, 2, 4], [0.1, 0.2, 0.3]), ([2, 2, 3], [1.0, 0.0, 2.0])]
    g = groups(*[rec({"j": s}, {"ratings": h}, texts="xyz", rid=str(i)) for i, (h, s) in enumerate(data)])
    m = ag.rating_metrics(g, "j", ag.AgreeConfig(bootstrap=0))
    taus = [stats.kendalltau(h, s, variant="b").statistic for h, s in data]
    assert m["within_prompt"]["kendall_tau_b"]["value"] == pytest.approx(np.mean(taus))
    hx = [v for h, _ in data for v in h]
    jx = [v for _, s in data for v in s]
    assert m["pooled"]["spearman"] == pytest.approx(stats.spearmanr(hx, jx).statistic)
    assert m["pooled"]["pearson"] == pytest.approx(stats.pearsonr(hx, jx).statistic)
    assert m["pooled"]["kendall_tau_b"] == pytest.approx(stats.kendalltau(hx, jx).statistic)
    assert m["pooled"]["weighted_kappa"] is None  # judge scores are not on the 1-5 scale


def test_weighted_kappa_when_judge_scores_on_the_rating_scale() -> None:
    g = groups(rec({"j": [1, 2]}, {"ratings": [1, 2]}), rec({"j": [3, 3]}, {"ratings": [3, 2]}, rid="2"))
    m = ag.rating_metrics(g, "j", ag.AgreeConfig(bootstrap=0))
    table = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 1]])
    assert m["pooled"]["weighted_kappa"] == pytest.approx(ag.cohen_kappa(table, "quadratic"))


def test_ranking_becomes_ordered_pairs() -> None:
    g = groups(rec({"j": [3, 1, 2]}, {"ranking": [0, 2, 1]}, texts="abc"))[0]
    assert g.ratings == [3.0, 1.0, 2.0]
    assert sorted(g.pairs) == [(0, 1, 1), (0, 2, 1), (1, 2, -1)]


# --------------------------------------------------------------------------- steps
def test_auroc_hand_worked() -> None:
    assert ag.auroc([0.9, 0.8, 0.3], [0.4, 0.1]) == pytest.approx(5 / 6)
    assert ag.auroc([0.5], [0.5]) == pytest.approx(0.5)
    assert np.isnan(ag.auroc([0.5], []))


def test_step_auroc_first_error_and_solution_accuracy() -> None:
    r1 = rec({"prm": [0.2, 0.9]}, {"steps": [[1, -1, None], [1, 1]]}, texts=("s1\ns2\ns3", "t1\nt2"),
             judgements={"prm": [{"step_scores": [0.9, 0.2, 0.1]}, {"step_scores": [0.8, 0.6]}]})
    r2 = rec({"prm": [0.7]}, {"steps": [[1, 0, -1]]}, texts=("u1\nu2\nu3",), rid="2",
             judgements={"prm": [{"step_scores": [0.7, 0.3, 0.4]}]})
    m = ag.step_metrics(groups(r1, r2), "prm", ag.AgreeConfig(bootstrap=0))
    # good steps (neutral counts as good): 0.9, 0.8, 0.6, 0.7, 0.3; bad: 0.2, 0.4
    assert m["step_auroc"]["value"] == pytest.approx(ag.auroc([0.9, 0.8, 0.6, 0.7, 0.3], [0.2, 0.4]))
    # first error: cand 1 step 2 vs predicted 2 (right); cand 2 none vs none (right); r2: 3 vs 2 (wrong)
    assert m["first_error_accuracy"]["value"] == pytest.approx(2 / 3)
    # solution level: 0.2 -> wrong (truth wrong), 0.9 -> right (truth right), 0.7 -> right (truth wrong)
    assert m["solution_accuracy"]["value"] == pytest.approx(2 / 3)
    neg = ag.step_metrics(groups(r1, r2), "prm", ag.AgreeConfig(bootstrap=0, neutral="negative"))
    assert neg["step_auroc"]["value"] == pytest.approx(ag.auroc([0.9, 0.8, 0.6, 0.7], [0.2, 0.4, 0.3]))


def test_shared_step_prefixes_count_once() -> None:
    cands = [{"text": "a\nb", "meta": {"steps": ["a", "b"]}}, {"text": "a\nc", "meta": {"steps": ["a", "c"]}}]
    r = {"id": "x", "prompt": "p", "candidates": cands, "human": {"steps": [[1, 1], [1, -1]]},
         "scores": {"prm": [1.0, 0.0]}, "judgements": {"prm": [{"step_scores": [0.9, 0.8]}, {"step_scores": [0.9, 0.1]}]}}
    m = ag.step_metrics(groups(r), "prm", ag.AgreeConfig(bootstrap=0))
    assert m["step_auroc"]["n"] == 3  # "a" is one step, shown in two candidates


# --------------------------------------------------------------------------- humans and biases
def test_leave_one_annotator_out_ceiling_hand_worked() -> None:
    g = groups(rec({}, [{"choice": 0}, {"choice": 0}, {"choice": 1}]),
               rec({}, [{"choice": 1}] * 3, rid="2"))
    c = ag.human_ceiling(g, ag.AgreeConfig(bootstrap=0))
    assert c["accuracy"]["count"]["value"] == pytest.approx(3 / 6)
    assert c["accuracy"]["drop"]["value"] == pytest.approx(3 / 4)
    assert c["accuracy"]["half"]["value"] == pytest.approx(4 / 6)
    # annotators 1 and 2 always agree: kappa 1; 1 vs 3 agree on one of two prompts
    assert c["pairwise_kappa"]["1-2"] == pytest.approx(1.0)
    assert c["pairwise_kappa"]["1-3"] == pytest.approx(0.0)  # p_o = 1/2 = p_e


def test_length_bias_and_position() -> None:
    texts = [("short", "much longer answer"), ("a longer one here", "tiny")]
    g = groups(*[rec({"len": [len(t[0]), len(t[1])], "first": [1, 0]}, {"choice": 0}, texts=t, rid=str(i))
                 for i, t in enumerate(texts)])
    lb = ag.length_bias(g, "len")
    assert lb["prefers_longer"] == 1.0 and lb["spearman_length"] == pytest.approx(1.0)
    assert ag.position_bias(g, "first")["prefers_first"] == 1.0
    assert ag.length_bias(g, "first")["prefers_longer"] == 0.5


def test_flip_rate_finds_the_same_pair_in_both_orders() -> None:
    a, b = "answer A", "answer B"
    rs = [rec({"first": [1, 0], "fair": [2, 1]}, {"choice": 0}, texts=(a, b), rid="1"),
          rec({"first": [1, 0], "fair": [1, 2]}, {"choice": 1}, texts=(b, a), rid="2"),
          rec({"first": [1, 0], "fair": [1, 2]}, {"choice": 1}, texts=(b, a), rid="3", prompt="other prompt")]
    g = groups(*rs)
    assert ag.position_bias(g, "first") == {"prefers_first": 1.0, "flip_rate": 1.0, "swapped_pairs": 1}
    assert ag.position_bias(g, "fair")["flip_rate"] == 0.0


def test_judge_matrix_symmetry_and_human_row() -> None:
    m = ag.judge_matrix(mt_groups(), ["j"])
    assert m["j"]["j"]["agreement"] == 1.0
    assert m["j"]["human"] is m["human"]["j"]
    assert m["j"]["human"]["agreement"] == pytest.approx(2 / 5)


# --------------------------------------------------------------------------- fitted weights
def test_fit_weights_finds_the_informative_judge() -> None:
    rng = np.random.default_rng(0)
    recs = []
    for i in range(200):
        truth = rng.normal(size=4)
        choice = int(np.argmax(truth + 0.3 * rng.normal(size=4)))
        scores = {"good": (truth + 0.5 * rng.normal(size=4)).tolist(), "noise": rng.normal(size=4).tolist(),
                  "bad": (-truth + 0.5 * rng.normal(size=4)).tolist()}
        recs.append(rec(scores, {"choice": choice}, texts="abcd", rid=str(i)))
    fit = ag.fit_weights(groups(*recs), ["good", "noise", "bad"])
    w = fit["weights"]
    assert max(w, key=lambda k: abs(w[k])) in {"good", "bad"}
    assert w["good"] > 0.3 and w["bad"] < -0.3 and abs(w["noise"]) < 0.2
    assert "bad=0" in fit["spec"]  # judge rank takes weights >= 0
    assert fit["heldout_accuracy"] > 0.8 and len(fit["fold_accuracy"]) == 5


# --------------------------------------------------------------------------- input errors
def test_bad_labels_name_file_line_field() -> None:
    with pytest.raises(InputError, match=r"mem.jsonl:1: human.choice: expected 0..1 or null, got 2"):
        groups(rec({"j": [1, 2]}, {"choice": 2}))
    with pytest.raises(InputError, match=r"mem.jsonl:1: scores.j: expected a list of 2 scores"):
        groups(rec({"j": [1]}, {"choice": 0}))
    with pytest.raises(InputError, match=r"mem.jsonl:1: human: expected exactly one of"):
        groups(rec({"j": [1, 2]}, {"choice": 0, "ratings": [1, 2]}))
    with pytest.raises(InputError, match=r"mem.jsonl:1: scores.j\[0\]: must be a number or null"):
        groups(rec({"j": ["x", 2]}, {"choice": 0}))


def test_unlabelled_records_are_skipped() -> None:
    assert groups({"id": "1", "prompt": "p", "candidates": ["a"], "scores": {"j": [1.0]}}) == []


def test_agree_runs_every_part_and_slices() -> None:
    rs = [rec({"j": s, "k": s[::-1]}, {"choice": c}, rid=str(i), meta={"source": "x" if i % 2 else "y"})
          for i, (c, s) in enumerate(MT * 4)]
    g = ag.labelled_groups(((i, r) for i, r in enumerate(rs, 1)), "m", by="meta.source")
    report = ag.agree(g, ["j", "k"], ag.AgreeConfig(bootstrap=200), by=True, fit=True)
    assert set(report["slices"]) == {"x", "y"}
    assert report["results"]["j"]["pairwise"]["accuracy"]["drop"]["value"] == pytest.approx(0.5)
    assert report["labels"]["tie_rate"] == pytest.approx(2 / 5)
    import json

    json.dumps(report, allow_nan=False)  # every number is JSON
