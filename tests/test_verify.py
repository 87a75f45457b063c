"""The answer verifier: extraction, normalisation, and the shared GSM8K / MATH-500 checks."""

from __future__ import annotations

import json

import pytest
from conftest import shared_file

from judge.judges.verify import PRESET_ORDER, answers_match, extract_answer, find_boxed
from judge.records import Item
from judge.registry import load_judge


@pytest.mark.parametrize(
    "text, expected",
    [
        ("She makes 9 * 2 = $<<9*2=18>>18.\n#### 18", "18"),
        ("so the total is 70,000.\n#### 70,000", "70,000"),
        ("Adding up, the answer is 42.", "42"),
        ("The final answer is: 3.5\n", "3.5"),
        ("Answer: 12", "12"),
        ("Thus $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("first \\boxed{1} then \\boxed{2}", "2"),
        ("It costs 5 dollars, then 7 more, so 12 in all", "12"),
        ("I am not sure.", None),
    ],
)
def test_extract_answer(text, expected):
    order = PRESET_ORDER["math"] if "boxed" in text else PRESET_ORDER["gsm8k"]
    found, _ = extract_answer(text, order)
    assert found == expected


def test_find_boxed_nested_braces():
    assert find_boxed("x \\boxed{\\frac{a^{2}}{b_{1}}} y") == "\\frac{a^{2}}{b_{1}}"
    assert find_boxed("\\fbox{7}") == "7"
    assert find_boxed("no box here") is None


def test_last_number_fallback_can_be_switched_off():
    assert extract_answer("so 5 then 12", PRESET_ORDER["gsm8k"], last_number=True) == ("12", "last_number")
    assert extract_answer("so 5 then 12", PRESET_ORDER["gsm8k"], last_number=False) == (None, None)
    judge = load_judge("verify:gsm8k,last_number=false")
    score = judge.score_one(Item("q", "so 5 then 12", "12"))
    assert score.value == 0.0 and score.details["no_answer"] is True


@pytest.mark.parametrize(
    "answer, reference",
    [
        ("1,000", "1000"),
        ("$18", "18"),
        ("\\$18.00", "18"),
        ("18.0", "18"),
        ("18 dollars", "18"),
        ("5 hours", "5"),
        ("0.5", "1/2"),
        ("\\frac{1}{2}", "0.5"),
        ("\\dfrac{3}{4}", "\\frac34"),
        ("\\tfrac{9}{2}", "4.5"),
        ("90^\\circ", "90"),
        ("90°", "90^{\\circ}"),
        ("\\text{Evelyn}", "Evelyn"),
        ("x = 5", "5"),
        ("11\\sqrt{2}", "11\\sqrt2"),
        ("0.333", "\\frac{1}{3}"),
        ("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("25\\%", "25"),
        ("-\\frac{1}{3}", "-1/3"),
        ("\\boxed{30}", "30"),
        ("1, -2", "1,-2"),
    ],
)
def test_answers_that_match(answer, reference):
    assert answers_match(answer, reference)


@pytest.mark.parametrize(
    "answer, reference",
    [("17", "18"), ("0.33", "1/3"), ("0.334", "1/3"), ("1450000", "1450001"), ("\\frac{1}{3}", "\\frac{1}{2}"), ("1,-2", "-2,2"), ("Eve", "Evelyn"), ("10000", "1000")],
)
def test_answers_that_do_not_match(answer, reference):
    assert not answers_match(answer, reference)


def test_exact_preset_compares_strings():
    judge = load_judge("verify:exact")
    assert judge.score_one(Item("q", "\\boxed{1/2}", "1/2")).value == 1.0
    assert judge.score_one(Item("q", "\\boxed{0.5}", "1/2")).value == 0.0


def test_missing_reference_is_an_error_not_a_zero():
    score = load_judge("verify:gsm8k").score_one(Item("q", "The answer is 4.", None))
    assert score.value is None and "no reference" in score.error


def test_reference_given_as_a_whole_solution():
    judge = load_judge("verify:gsm8k")
    ref = "3 + 4 = 7\nThen 7 * 2 = 14\n#### 14"
    assert judge.score_one(Item("q", "The answer is 14.", ref)).value == 1.0
    assert judge.score_one(Item("q", "The answer is 7.", ref)).value == 0.0


def test_gsm8k_reference_solutions_all_verify():
    """Every GSM8K test solution must verify against its own gold answer (1,319 of 1,319)."""
    judge = load_judge("verify:gsm8k")
    rows = [json.loads(line) for line in shared_file("gsm8k/test.jsonl").open(encoding="utf-8")]
    items = [Item(r["question"], r["answer"], r["answer"].split("####")[-1].strip()) for r in rows]
    passed = sum(s.value == 1.0 for s in judge.score_batch(items))
    assert (passed, len(rows)) == (1319, 1319)
    # ...and the check can fail: shifting each gold answer by one fails every item.
    wrong = [Item(i.prompt, i.response, str(float(i.reference.replace(",", "")) + 1)) for i in items]
    assert sum(s.value == 1.0 for s in judge.score_batch(wrong)) == 0


def test_math500_reference_solutions_all_verify():
    judge = load_judge("verify:math")
    rows = [json.loads(line) for line in shared_file("math500/test.jsonl").open(encoding="utf-8")]
    scores = judge.score_batch([Item(r["problem"], r["solution"], r["answer"]) for r in rows])
    passed = sum(s.value == 1.0 for s in scores)
    assert (passed, len(rows)) == (500, 500)
    # Pairing each solution with the next problem's answer mostly fails (answers repeat only rarely).
    shifted = judge.score_batch(
        [Item(r["problem"], r["solution"], rows[(i + 1) % len(rows)]["answer"]) for i, r in enumerate(rows)]
    )
    assert sum(s.value == 1.0 for s in shifted) < 25
