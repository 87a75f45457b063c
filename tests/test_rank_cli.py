"""`judge rank` and `judge best-of-n` end to end: the files they write, streaming blocks, re-ranking,
bad input, and the BestOfN Python API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import judge
from judge.cli import main
from judge.combine import CombineConfig, combine_one
from judge.io import dumps

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "math_candidates.jsonl"


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def write_scored(path: Path) -> Path:
    """Scored records by hand: a failed rm score, a prompt where rm failed everywhere, a chat prompt."""
    recs = [
        {"id": "a", "prompt": "1+1?", "reference": "2", "candidates": ["2", "3", "two", "4"],
         "scores": {"rm": [0.5, 2.0, None, -1.0], "verify": [1.0, 0.0, 1.0, 0.0]},
         "judgements": {"rm": [{}, {}, {"error": "timeout"}, {}], "verify": [{}, {}, {}, {}]}},
        {"id": "b", "prompt": [{"role": "user", "content": "2+2?"}], "reference": "4",
         "candidates": [{"text": "4", "id": "b0"}, "5"],
         "scores": {"rm": [None, None], "verify": [1.0, 0.0]},
         "judgements": {"rm": [{"error": "x"}, {"error": "x"}], "verify": [{}, {}]}},
        {"id": "c", "prompt": "3+3?", "reference": "6", "candidates": ["6", "7", "8"],
         "scores": {"rm": [1.0, 3.0, 2.0], "verify": [1.0, 0.0, 0.0]}, "judgements": {}},
    ]
    path.write_text("".join(dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path


@pytest.mark.parametrize("method", ["zscore", "rrf", "bradley-terry", "copeland"])
def test_rank_writes_the_scored_records_plus_combined_and_ranking(tmp_path, method):
    scored = write_scored(tmp_path / "scored.jsonl")
    out = tmp_path / "ranked.jsonl"
    result = invoke("rank", scored, "-o", out, "--method", method)
    assert result.exit_code == 0, result.output
    src, got = lines(scored), lines(out)
    for s, r in zip(src, got, strict=True):
        assert {k: v for k, v in r.items() if k not in ("combined", "ranking", "failed_judges")} == s
        combined, ranking = combine_one(s["scores"], CombineConfig(method=method))
        assert r["ranking"] == ranking and r["combined"] == pytest.approx(combined)
    assert got[1]["failed_judges"] == ["rm"] and "failed_judges" not in got[0]
    # Spliced lines are exactly what serialising the record would give.
    assert [dumps(r) for r in got] == out.read_text(encoding="utf-8").splitlines()
    config = json.loads((tmp_path / "ranked.jsonl.config.json").read_text())
    assert config["command"] == "rank" and config["config"]["combine"]["method"] == method
    assert config["judges"] == ["rm", "verify"]
    assert "zscore" in result.output or method != "zscore"
    assert "verify" in result.output and "wrote" in result.output


def test_blocks_do_not_change_the_output_and_global_z_uses_the_whole_file(tmp_path):
    scored = write_scored(tmp_path / "scored.jsonl")
    for method in ("zscore", "global-z", "bradley-terry"):
        one, many = tmp_path / f"{method}-1.jsonl", tmp_path / f"{method}-all.jsonl"
        assert invoke("rank", scored, "-o", one, "--method", method, "--chunk-prompts", 1, "-q").exit_code == 0
        assert invoke("rank", scored, "-o", many, "--method", method, "-q").exit_code == 0
        assert one.read_bytes() == many.read_bytes()
    # global-z: one mean/std per judge over all 9 candidates, then a per-candidate mean.
    rec = lines(tmp_path / "global-z-1.jsonl")[2]
    rm = [0.5, 2.0, -1.0, 1.0, 3.0, 2.0]
    ver = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0]

    def z(x, xs):
        mean = sum(xs) / len(xs)
        return (x - mean) / (sum((v - mean) ** 2 for v in xs) / len(xs)) ** 0.5

    assert rec["combined"][0] == pytest.approx((z(1.0, rm) + z(1.0, ver)) / 2)


def test_rerank_replaces_keys_and_gates_are_written(tmp_path):
    scored = write_scored(tmp_path / "scored.jsonl")
    first, second = tmp_path / "r1.jsonl", tmp_path / "r2.jsonl"
    assert invoke("rank", scored, "-o", first, "--gate", "verify", "-q").exit_code == 0
    assert invoke("rank", first, "-o", second, "--method", "borda", "-q").exit_code == 0
    r1, r2 = lines(first), lines(second)
    assert r1[0]["gate"] == [True, False, True, False] and r1[0]["ranking"][:2] == [0, 2]
    assert "gate" not in r2[0] and r2[0]["ranking"] != r1[0]["ranking"]
    assert all(line.count('"ranking"') == 1 for line in second.read_text().splitlines())


def test_bad_input_is_one_line_with_file_line_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    rec = {"id": "a", "prompt": "p", "candidates": ["x", "y"], "scores": {"rm": [1.0]}}
    bad.write_text(json.dumps({**rec, "scores": {"rm": [1.0, 2.0]}}) + "\n" + json.dumps(rec) + "\n")
    result = invoke("rank", bad, "-o", tmp_path / "o.jsonl")
    assert result.exit_code == 2
    assert f"{bad}:2: scores.rm: expected 2 values" in result.output
    bad.write_text(json.dumps({**rec, "scores": {"rm": [1.0, "high"]}}) + "\n")
    result = invoke("rank", bad, "-o", tmp_path / "o.jsonl")
    assert result.exit_code == 2 and "scores.rm[1]: expected a number or null, got 'high'" in result.output
    scored = write_scored(tmp_path / "scored.jsonl")
    result = invoke("rank", scored, "-o", tmp_path / "o.jsonl", "--weights", "verfy=2")
    assert result.exit_code == 2 and "did you mean 'verify'" in result.output


def test_best_of_n_writes_accepted_pairs_rejected_and_summary(tmp_path):
    scored = write_scored(tmp_path / "scored.jsonl")
    ranked = tmp_path / "ranked.jsonl"
    assert invoke("rank", scored, "-o", ranked, "--method", "zscore", "-q").exit_code == 0
    acc, pairs, rej = tmp_path / "accepted.jsonl", tmp_path / "pairs.jsonl", tmp_path / "rejected.jsonl"
    result = invoke("best-of-n", ranked, "-o", acc, "--require", "verify", "--min-score", "rm=1.5",
                    "--pairs", pairs, "--pair-mode", "best-each", "--rejected", rej)
    assert result.exit_code == 0, result.output
    # a: only "2" and "two" pass verify, rm 0.5 and None fail rm>=1.5; b: rm failed everywhere; c: "6" has rm 1.
    assert lines(acc) == []
    assert [r["id"] for r in lines(rej)] == ["a", "b", "c"] and all(r["reject_reason"] for r in lines(rej))
    result = invoke("best-of-n", ranked, "-o", acc, "--require", "verify", "--pairs", pairs, "--rejected", rej)
    assert result.exit_code == 0, result.output
    accepted = lines(acc)
    # a: "two" beats "2" because rm failed on it and missing="skip" judges it by verify alone.
    assert [(r["id"], r["completion"]) for r in accepted] == [
        ("a", "two"), ("b", [{"role": "assistant", "content": "4"}]), ("c", "6")]
    assert accepted[1]["meta"]["candidate_id"] == "b0"
    assert lines(rej) == []
    for p in lines(pairs):
        assert p["chosen"] != p["rejected"] and set(p) == {"id", "prompt", "chosen", "rejected", "margin"}
    config = json.loads((tmp_path / "accepted.jsonl.config.json").read_text())
    assert config["summary"]["acceptance_rate"] == 1.0 and config["config"]["select"]["require"][0]["judge"] == "verify"
    assert "KL bound" in result.output


def test_best_of_n_on_a_scored_file_says_to_rank_first(tmp_path):
    scored = write_scored(tmp_path / "scored.jsonl")
    result = invoke("best-of-n", scored, "-o", tmp_path / "a.jsonl")
    assert result.exit_code == 2 and ":1: combined: missing (run `judge rank` first)" in result.output


def test_example_score_rank_best_of_n_keeps_the_correct_rationales(tmp_path):
    scored, ranked, acc = tmp_path / "scored.jsonl", tmp_path / "ranked.jsonl", tmp_path / "acc.jsonl"
    r = invoke("score", EXAMPLE, "-o", scored, "--judge", "verify:gsm8k", "--judge", "length", "-q")
    assert r.exit_code == 0, r.output
    assert invoke("rank", scored, "-o", ranked, "--method", "rrf", "--gate", "verify", "-q").exit_code == 0
    r = invoke("best-of-n", ranked, "-o", acc, "--require", "verify", "-q")
    assert r.exit_code == 0, r.output
    accepted = lines(acc)
    assert len(accepted) == len(lines(EXAMPLE))
    assert all(row["meta"]["candidate_id"].endswith("-c0") for row in accepted)  # the one correct rationale each


def test_python_api_rank_and_best_of_n(tmp_path):
    scored = write_scored(tmp_path / "scored.jsonl")
    ranked = judge.rank(scored, method="rrf", gates=["verify"])
    assert [r["ranking"][0] for r in ranked] == [0, 0, 0]
    selections, summary = judge.best_of_n(ranked, require=["verify"], pair_mode="all")
    # b: the gate leaves rm to rank, and rm failed on every candidate: nothing to rank by.
    assert [s.chosen for s in selections] == [[0], [], [0]] and summary.accepted_prompts == 2
    assert selections[1].reason.startswith("no-scores") and ranked[1]["failed_judges"] == ["rm"]


def test_bestofn_reranks_in_memory_without_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prompts = ["What is 6 * 7?", [{"role": "user", "content": "What is 2 + 2?"}]]
    samples = [["6 * 7 = 42. The answer is 42.", "The answer is 41.", "6 * 7 = 48, so the answer is 48."],
               ["The answer is 5.", "2 + 2 = 3. The answer is 3."]]
    with judge.BestOfN(judges=["verify:gsm8k", "length"], method="rrf", require=["verify"]) as bon:
        picks = bon.select(prompts, samples, references=["42", "4"])
    assert isinstance(picks[0], judge.Selection)
    assert (picks[0].index, picks[0].accepted, picks[0].scores["verify"]) == (0, True, 1.0)
    assert picks[0].text == samples[0][0] and picks[0].score == picks[0].combined[0]
    assert picks[1].accepted is False and picks[1].index is None and picks[1].reason.startswith("all-bad")
    assert sorted(picks[1].ranking) == [0, 1]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_an_empty_scored_file_ranks_to_an_empty_file(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert invoke("rank", empty, "-o", tmp_path / "r.jsonl", "-q").exit_code == 0
    assert (tmp_path / "r.jsonl").read_text() == "" and (tmp_path / "r.jsonl.config.json").exists()
