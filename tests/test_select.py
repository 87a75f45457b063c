"""select.py: best-of-N rules, rejections, preference pairs and the summary, on crafted ranked records."""

from __future__ import annotations

import math

import pytest

from judge.combine import Gate
from judge.errors import InputError, SpecError
from judge.select import MinScore, SelectConfig, SelectSummary, kl_bound, select_group


def ranked(**over):
    """Four candidates; 0 and 3 share a text. rm likes 0, verify passes 1 and 2."""
    rec = {
        "id": "p1",
        "prompt": "What is 6 * 7?",
        "candidates": ["A", {"text": "B", "id": "b"}, "C", "A"],
        "scores": {"rm": [0.9, 0.5, None, 0.9], "verify": [0.0, 1.0, 1.0, 0.0]},
        "combined": [0.9, 0.5, 0.2, 0.9],
        "ranking": [0, 3, 1, 2],
        "meta": {"source": "test"},
    }
    rec.update(over)
    return rec


def test_top1_without_rules_and_margin_skips_an_identical_text():
    sel = select_group(ranked(), SelectConfig())
    assert sel.reason is None and sel.chosen == [0]
    assert sel.margin == pytest.approx(0.4)  # runner-up is B: candidate 3 is the same text "A"
    row = sel.accepted[0]
    assert row == {"id": "p1", "prompt": "What is 6 * 7?", "completion": "A", "score": 0.9,
                   "meta": {"source": "test", "candidate": 0, "rank": 0, "scores": {"rm": 0.9, "verify": 0.0}}}


def test_require_verify_keeps_the_best_verified_candidate():
    sel = select_group(ranked(), SelectConfig(require=[Gate("verify")]))
    assert sel.chosen == [1] and sel.eligible == [False, True, True, False]
    assert sel.accepted[0]["meta"]["candidate_id"] == "b" and sel.accepted[0]["completion"] == "B"
    assert sel.margin == pytest.approx(0.3)


def test_min_margin_rejects_a_close_call():
    sel = select_group(ranked(), SelectConfig(require=[Gate("verify")], min_margin=0.5))
    assert sel.accepted == [] and sel.reason.startswith("margin:")


def test_every_candidate_bad_rejects_the_prompt():
    rec = ranked(scores={"rm": [0.9, 0.5, 0.1, 0.9], "verify": [0.0, 0.0, 0.0, 0.0]})
    sel = select_group(rec, SelectConfig(require=[Gate("verify")]))
    assert sel.chosen == [] and sel.reason.startswith("all-bad:") and "verify" in sel.reason
    assert sel.pairs == []


def test_min_score_on_a_judge_and_on_combined_missing_never_passes():
    sel = select_group(ranked(), SelectConfig(min_score=[MinScore(0.1, "rm")], require=[Gate("verify")]))
    assert sel.chosen == [1]  # candidate 2 is verified but rm failed on it
    assert sel.eligible == [False, True, False, False]
    sel = select_group(ranked(), SelectConfig(min_score=[MinScore(0.95)]))
    assert sel.reason.startswith("all-bad:")
    assert MinScore.parse("rm=0.3") == MinScore(0.3, "rm") and MinScore.parse("0.5") == MinScore(0.5)


def test_k_keeps_the_top_k_eligible_in_ranking_order():
    sel = select_group(ranked(), SelectConfig(k=3))
    assert sel.chosen == [0, 3, 1] and [r["meta"]["rank"] for r in sel.accepted] == [0, 1, 2]


def test_gate_from_the_ranking_counts_as_a_rule():
    sel = select_group(ranked(gate=[False, True, False, False]), SelectConfig())
    assert sel.chosen == [1]


def test_chat_prompts_stay_messages():
    prompt = [{"role": "user", "content": "What is 6 * 7?"}]
    sel = select_group(ranked(prompt=prompt), SelectConfig())
    assert sel.accepted[0]["prompt"] == prompt
    assert sel.accepted[0]["completion"] == [{"role": "assistant", "content": "A"}]
    assert sel.pairs[0]["chosen"] == [{"role": "assistant", "content": "A"}]


def pairs_of(sel):
    return [(p["chosen"], p["rejected"], round(p["margin"], 6)) for p in sel.pairs]


def test_pairs_best_worst_best_each_all_deduplicated_and_never_identical():
    assert pairs_of(select_group(ranked(), SelectConfig(pair_mode="best-worst"))) == [("A", "C", 0.7)]
    assert pairs_of(select_group(ranked(), SelectConfig(pair_mode="best-each"))) == [("A", "B", 0.4), ("A", "C", 0.7)]
    # all: (0,1), (0,2), (3,1) and (3,2) repeat texts of (0,1), (0,2); (1,2) is 0.3.
    assert pairs_of(select_group(ranked(), SelectConfig(pair_mode="all"))) == [
        ("A", "B", 0.4), ("A", "C", 0.7), ("B", "C", 0.3)]
    assert pairs_of(select_group(ranked(), SelectConfig(pair_mode="all", pair_margin=0.35))) == [
        ("A", "B", 0.4), ("A", "C", 0.7)]


def test_pairs_that_the_rules_separate_need_no_margin():
    # verified B against the higher-rm but wrong A: the rules decide, the margin is negative.
    sel = select_group(ranked(), SelectConfig(require=[Gate("verify")], pair_mode="best-each", pair_margin=0.5))
    assert pairs_of(sel) == [("B", "A", -0.4)]


def test_a_candidate_without_a_combined_score_is_never_paired():
    sel = select_group(ranked(combined=[0.9, 0.5, None, 0.9], ranking=[0, 3, 1, 2]), SelectConfig(pair_mode="all"))
    assert all("C" not in (p["chosen"], p["rejected"]) for p in sel.pairs)


def test_no_scores_at_all():
    sel = select_group(ranked(combined=[None] * 4), SelectConfig())
    assert sel.reason.startswith("no-scores:")


def test_unranked_input_and_unknown_judge_are_clear_errors():
    rec = ranked()
    del rec["ranking"]
    with pytest.raises(InputError, match="judge rank"):
        select_group(rec, SelectConfig(), ("scored.jsonl", 3))
    with pytest.raises(SpecError, match="verfy"):
        select_group(ranked(), SelectConfig(require=[Gate("verfy")]))
    with pytest.raises(SpecError):
        SelectConfig(pair_mode="both").validate()


def test_kl_bound():
    assert kl_bound(1) == 0.0
    assert kl_bound(4) == pytest.approx(math.log(4) - 0.75)
    assert kl_bound(16) == pytest.approx(math.log(16) - 15 / 16)


def test_summary_counts_rates_and_the_kl_bound():
    summary = SelectSummary()
    cfg = SelectConfig(require=[Gate("verify")])
    summary.add(select_group(ranked(), cfg))
    summary.add(select_group(ranked(id="p2", scores={"rm": [1, 1, 1, 1], "verify": [0, 0, 0, 0]}), cfg))
    d = summary.as_dict()
    assert d["prompts"] == 2 and d["accepted_prompts"] == 1 and d["acceptance_rate"] == 0.5
    assert d["rejected"] == {"all-bad": 1}
    assert d["mean_best_score"] == 0.5 and d["mean_margin"] == pytest.approx(0.3)
    assert d["kl_bound"] == pytest.approx(kl_bound(4)) and d["n"] == {"4": 2}
