"""Dataset adapters on hand-written fixtures in each public format, and on the full shared
files where ../shared/data is present (record counts from its README)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from conftest import shared_file

from judge.datasets import ADAPTERS, convert, parse_transcript
from judge.errors import InputError
from judge.io import parse_grouped

FIX = Path(__file__).parent / "fixtures"


def _valid(records: list[dict]) -> None:
    """Every converted record with candidates must read back as a Group (DESIGN.md §3.1)."""
    for i, rec in enumerate(records, start=1):
        if "candidates" in rec:
            parse_grouped("<converted>", i, json.loads(json.dumps(rec)), str(i))


def test_transcript_parses_into_chat_messages() -> None:
    msgs = parse_transcript("\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant: ")
    assert msgs == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "bye"},
        {"role": "assistant", "content": ""},
    ]


def test_hh_rlhf_keeps_last_turns_as_candidates_and_drops_identical_pairs() -> None:
    recs = list(convert("hh-rlhf", FIX / "hh-rlhf-test.jsonl"))
    _valid(recs)
    recs = list(convert("hh-rlhf", FIX / "hh-rlhf-test.jsonl", order="chosen-first"))
    assert [r["id"] for r in recs] == ["hh-hh-rlhf-1", "hh-hh-rlhf-2", "hh-hh-rlhf-4"]  # line 3 identical
    two = recs[1]
    assert two["prompt"][-1] == {"role": "user", "content": "For how long?"}
    assert len(two["prompt"]) == 3
    assert two["candidates"] == ["About nine minutes for a firm yolk.", "I am not sure, maybe an hour?"]
    assert two["human"] == {"choice": 0}
    assert recs[2]["candidates"][1] == ""  # an empty last turn stays a (bad) candidate
    assert two["meta"]["source"] == "hh-rlhf:hh-rlhf"


def test_hh_rlhf_hashed_order_keeps_the_label_with_the_chosen_text() -> None:
    plain = list(convert("hh-rlhf", FIX / "hh-rlhf-test.jsonl", order="chosen-first"))
    hashed = list(convert("hh-rlhf", FIX / "hh-rlhf-test.jsonl"))
    assert hashed == list(convert("hh-rlhf", FIX / "hh-rlhf-test.jsonl"))  # a fixed coin, not a random one
    for p, h in zip(plain, hashed):
        assert h["candidates"][h["human"]["choice"]] == p["candidates"][0]
        assert sorted(h["candidates"]) == sorted(p["candidates"])


def test_hh_rlhf_bad_transcript_names_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a"}) + "\n")
    with pytest.raises(InputError, match=r"bad.jsonl:1: rejected: transcript does not end"):
        list(convert("hh-rlhf", bad))


def test_pandalm_three_annotators_ties_and_gpt_join() -> None:
    recs = list(convert("pandalm", FIX / "pandalm-testset.json", gpt=FIX / "pandalm-gpt.json"))
    _valid(recs)
    assert len(recs) == 4
    assert recs[0]["human"] == [{"choice": 0}] * 3
    assert recs[1]["human"] == [{"choice": 1}, {"choice": 1}, {"choice": 0}]
    assert recs[2]["human"] == [{"choice": None}, {"choice": None}, {"choice": 0}]
    assert recs[2]["candidates"][0] == "True"  # a response saved as JSON true
    assert recs[1]["prompt"] == "Name a fruit that is yellow."
    assert recs[3]["prompt"] == "Translate 'merci' to English."
    assert recs[0]["prompt"].endswith("\n\nI recieved the pakage yesterday.")
    assert [r["meta"]["gpt35"] for r in recs] == [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], None]
    assert recs[0]["meta"]["cmp_key"] == "model-a_model-b"


def test_pandalm_bad_annotator_code(tmp_path: Path) -> None:
    data = json.loads((FIX / "pandalm-testset.json").read_text())
    data[1]["annotator2"] = 3
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"record 2: annotator2: expected 0 \(tie\), 1 or 2, got 3"):
        list(convert("pandalm", bad))


def test_llmbar_label_to_choice() -> None:
    recs = list(convert("llmbar", FIX / "LLMBar_Natural.json"))
    _valid(recs)
    assert [r["human"]["choice"] for r in recs] == [0, 1, 0]
    assert recs[0]["meta"]["source"] == "llmbar:natural"


def test_llmbar_rejects_a_tie_label(tmp_path: Path) -> None:
    bad = tmp_path / "l.json"
    bad.write_text(json.dumps([{"input": "q", "output_1": "a", "output_2": "b", "label": 0}]))
    with pytest.raises(InputError, match="record 1: label: expected 1 or 2, got 0"):
        list(convert("llmbar", bad))


def test_prm800k_groups_steps_back_into_solutions() -> None:
    recs = list(convert("prm800k", FIX / "prm800k-stepwise.jsonl"))
    _valid(recs)
    assert len(recs) == 2
    first = recs[0]
    steps = [c["meta"]["steps"] for c in first["candidates"]]
    # four leaves: the bad first step, and three second steps after the good first step
    assert steps == [
        ["Add first: 3 + 4 = 7."],
        ["Multiplication first: 4 * 2 = 8.", "Then 3 + 8 = 11. # Answer\n\n11"],
        ["Multiplication first: 4 * 2 = 8.", "Then 3 * 8 = 24."],
        ["Multiplication first: 4 * 2 = 8.", "Let me double check the order of operations."],
    ]
    assert first["human"]["steps"] == [[-1], [1, 1], [1, -1], [1, 0]]
    assert first["candidates"][1]["meta"]["complete"] is True
    assert first["candidates"][1]["meta"]["answer"] == "11"
    # a step rated twice counts once; an unrated step stays null
    assert recs[1]["human"]["steps"] == [[1, 1], [1, None]]


def test_mr_gsm8k_first_error_step_labels() -> None:
    recs = list(convert("mr-gsm8k", FIX / "mr-gsm8k.jsonl"))
    _valid(recs)
    assert recs[0]["human"] == {"steps": [[1, -1, None]]}
    assert recs[1]["human"] == {"steps": [[-1, None, None]]}
    assert recs[0]["reference"] == "6"
    assert recs[1]["meta"]["first_error_step"] == 1
    # a reversed question whose ground_truth_answer is not an answer: read it from the solution
    assert recs[2]["reference"] == "4"
    assert recs[2]["meta"]["reference_from"] == "ground_truth_solution 'value of x is'"


def test_mr_gsm8k_first_error_out_of_range(tmp_path: Path) -> None:
    rec = json.loads((FIX / "mr-gsm8k.jsonl").read_text().splitlines()[0])
    rec["model_output_solution_first_error_step"] = 4
    bad = tmp_path / "m.jsonl"
    bad.write_text(json.dumps(rec) + "\n")
    with pytest.raises(InputError, match=r"m.jsonl:1: model_output_solution_first_error_step: expected 1..3, got 4"):
        list(convert("mr-gsm8k", bad))


def test_gsm8k_and_math500_prompts_with_references() -> None:
    gsm = list(convert("gsm8k", FIX / "gsm8k-test.jsonl"))
    assert [r["reference"] for r in gsm] == ["7", "2400"]
    assert gsm[0]["meta"]["solution"] == "She keeps 12 - 5 = <<12-5=7>>7 stickers."
    assert "candidates" not in gsm[0]
    math = list(convert("math500", FIX / "math500-test.jsonl"))
    assert math[0]["reference"] == "\\frac{5}{6}"
    assert math[0]["id"] == "test/prealgebra/1.json"
    assert math[1]["meta"]["level"] == 1


def test_gsm8k_without_final_answer(tmp_path: Path) -> None:
    bad = tmp_path / "g.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "no mark"}) + "\n")
    with pytest.raises(InputError, match="g.jsonl:1: answer: no '#### ' final answer"):
        list(convert("gsm8k", bad))


def test_unknown_format_suggests_a_name() -> None:
    with pytest.raises(InputError, match="did you mean 'pandalm'"):
        convert("pandalmm", FIX / "pandalm-testset.json")


def test_gzipped_input_reads_the_same(tmp_path: Path) -> None:
    gz = tmp_path / "hh.jsonl.gz"
    gz.write_bytes(gzip.compress((FIX / "hh-rlhf-test.jsonl").read_bytes()))
    assert [r["candidates"] for r in convert("hh-rlhf", gz)] == [
        r["candidates"] for r in convert("hh-rlhf", FIX / "hh-rlhf-test.jsonl")
    ]


# --------------------------------------------------------------------------- full shared files
@pytest.mark.parametrize(
    ("fmt", "rel", "records", "candidates"),
    [
        ("hh-rlhf", "hh-rlhf/helpful-base-test.jsonl.gz", 2354 - 2, 2 * (2354 - 2)),
        ("hh-rlhf", "hh-rlhf/harmless-base-test.jsonl.gz", 2312, 2 * 2312),
        ("hh-rlhf", "hh-rlhf/helpful-rejection-sampled-test.jsonl.gz", 2749 - 32, 2 * (2749 - 32)),
        ("pandalm", "pandalm/testset-v1.json", 999, 1998),
        ("llmbar", "llmbar/LLMBar_Natural.json", 100, 200),
        ("llmbar", "llmbar/Processed_FairEval.json", 66, 132),
        ("llmbar", "llmbar/Processed_LLMEval2.json", 200, 400),
        ("prm800k", "prm800k/phase1_test.stepwise-critique.jsonl.gz", 101, None),
        ("mr-gsm8k", "mr-gsm8k/mr_gsm8k_incorrect_subset.jsonl", 590, 590),
        ("gsm8k", "gsm8k/train.jsonl", 7473, 0),
        ("gsm8k", "gsm8k/test.jsonl", 1319, 0),
        ("math500", "math500/test.jsonl", 500, 0),
    ],
)
def test_full_shared_file(fmt: str, rel: str, records: int, candidates: int | None) -> None:
    path = shared_file(rel)
    recs = list(convert(fmt, path))
    assert len(recs) == records
    if candidates is not None:
        assert sum(len(r.get("candidates", [])) for r in recs) == candidates
    _valid(recs[:200])


def test_full_pandalm_gpt_join_and_inter_annotator_kappa() -> None:
    """The published PandaLM inter-annotator kappa is 0.85-0.88; our reading must reproduce it."""
    from judge.agreement import AgreeConfig, human_ceiling
    from judge.labels import labelled_from_record

    recs = list(convert("pandalm", shared_file("pandalm/testset-v1.json"),
                        gpt=shared_file("pandalm/gpt-3.5-turbo-testset-v1.json")))
    assert sum(r["meta"]["gpt35"] is None for r in recs) == 25  # gpt_result "garbage"
    groups = [labelled_from_record(r, "pandalm", i) for i, r in enumerate(recs, 1)]
    ceiling = human_ceiling([g for g in groups if g], AgreeConfig(bootstrap=0))
    assert ceiling is not None
    assert all(0.85 <= k <= 0.88 for k in ceiling["pairwise_kappa"].values())


def test_full_hh_rlhf_order_is_balanced() -> None:
    recs = list(convert("hh-rlhf", shared_file("hh-rlhf/helpful-base-test.jsonl.gz")))
    first = sum(r["human"]["choice"] == 0 for r in recs) / len(recs)
    assert 0.45 < first < 0.55


def test_full_prm800k_keeps_every_rated_step() -> None:
    path = shared_file("prm800k/phase1_test.stepwise-critique.jsonl.gz")
    rows = [json.loads(line) for line in gzip.open(path)]
    unique = {(r["instruction"], *r["responses"], r["next_response"]) for r in rows}
    recs = list(convert("prm800k", path))
    seen = {(r["prompt"], *c["meta"]["steps"][: k + 1]) for r in recs for c in r["candidates"]
            for k in range(len(c["meta"]["steps"]))}
    assert seen == unique


def test_every_adapter_is_listed() -> None:
    assert set(ADAPTERS) == {"hh-rlhf", "pandalm", "llmbar", "prm800k", "mr-gsm8k", "gsm8k", "math500"}
