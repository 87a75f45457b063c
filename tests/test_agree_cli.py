"""`judge data convert` and `judge agree` end to end: the files they write, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from judge.cli import main

FIX = Path(__file__).parent / "fixtures"


def run(*args: str) -> object:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


def test_convert_score_agree_writes_json_png_and_weights(tmp_path: Path) -> None:
    cands, scored = tmp_path / "pandalm.jsonl", tmp_path / "scored.jsonl"
    r = run("data", "convert", "--from", "pandalm", FIX / "pandalm-testset.json", "--gpt", FIX / "pandalm-gpt.json", "-o", cands)
    assert r.exit_code == 0, r.output
    assert len(cands.read_text().splitlines()) == 4
    assert json.loads((tmp_path / "pandalm.jsonl.config.json").read_text())["config"]["from"] == "pandalm"
    r = run("score", cands, "-o", scored, "--judge", "length", "--judge", "gpt35=field:meta.gpt35", "-q")
    assert r.exit_code == 0, r.output
    first = json.loads(scored.read_text().splitlines()[0])
    assert first["scores"]["gpt35"] == [1.0, 0.0]
    out, png, weights = tmp_path / "agree.json", tmp_path / "agree.png", tmp_path / "weights.txt"
    r = run("agree", scored, "--json", out, "--plot", png, "--by", "meta.motivation_app", "--bootstrap", "200",
            "--fit-weights", "--weights-out", weights)
    assert r.exit_code == 0, r.output
    report = json.loads(out.read_text())
    assert report["judges"] == ["gpt35", "length"]
    gpt = report["results"]["gpt35"]["pairwise"]
    # fixture by hand: humans (majority) pick 1, 2, tie, tie; gpt-3.5 says 1, 2, Tie, garbage
    assert gpt["missing"] == 1
    assert gpt["accuracy"]["count"]["value"] == pytest.approx(1.0)
    assert gpt["accuracy"]["drop"]["n"] == 2
    assert report["human"]["annotators"] == 3
    assert set(report["slices"]) == {"Grammar helper", "Recipes", "Trivia"}
    assert json.loads((tmp_path / "agree.json.config.json").read_text())["config"]["stats"]["ties"] == "drop"
    import matplotlib.image

    img = matplotlib.image.imread(png)
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert weights.read_text().strip() == report["fit"]["spec"]


def _synthetic(path: Path, n: int = 60) -> None:
    import random

    rnd = random.Random(0)
    with open(path, "w") as fh:
        for i in range(n):
            a, b = "x" * rnd.randint(1, 40), "y" * rnd.randint(1, 40)
            choice = 0 if rnd.random() < 0.7 else 1
            fh.write(json.dumps({
                "id": str(i), "prompt": f"q{i}", "candidates": [a, b], "human": {"choice": choice},
                "scores": {"good": [1.0, 0.0] if rnd.random() < 0.8 else [0.0, 1.0], "len": [len(a), len(b)]},
                "meta": {"source": "s1" if i % 3 else "s2"},
            }) + "\n")


def test_agree_ties_rule_and_judge_selection(tmp_path: Path) -> None:
    scored, out = tmp_path / "s.jsonl", tmp_path / "a.json"
    _synthetic(scored)
    r = run("agree", scored, "--judge", "good", "--ties", "half", "--bootstrap", "100", "--json", out, "-q")
    assert r.exit_code == 0, r.output
    report = json.loads(out.read_text())
    assert report["judges"] == ["good"]
    assert report["config"]["ties"] == "half"
    acc = report["results"]["good"]["pairwise"]["accuracy"]["half"]
    assert acc["low"] <= acc["value"] <= acc["high"]


def test_agree_ensemble_row_uses_judge_combine(tmp_path: Path) -> None:
    pytest.importorskip("judge.combine")
    scored, out = tmp_path / "s.jsonl", tmp_path / "a.json"
    _synthetic(scored)
    r = run("agree", scored, "--method", "borda", "--bootstrap", "0", "--json", out, "-q")
    assert r.exit_code == 0, r.output
    report = json.loads(out.read_text())
    assert "ensemble:borda" in report["results"]


def test_agree_without_labels_is_a_clear_error(tmp_path: Path) -> None:
    scored = tmp_path / "s.jsonl"
    scored.write_text(json.dumps({"id": "1", "prompt": "p", "candidates": ["a"], "scores": {"j": [1.0]}}) + "\n")
    r = CliRunner().invoke(main, ["agree", str(scored)])
    assert r.exit_code == 2
    assert "no record has human labels" in r.output


def test_agree_unknown_judge_suggests_one(tmp_path: Path) -> None:
    scored = tmp_path / "s.jsonl"
    _synthetic(scored, 5)
    r = CliRunner().invoke(main, ["agree", str(scored), "--judge", "goood"])
    assert r.exit_code == 1
    assert "did you mean 'good'" in r.output


def test_agree_bad_record_names_file_and_line(tmp_path: Path) -> None:
    scored = tmp_path / "s.jsonl"
    _synthetic(scored, 3)
    with open(scored, "a") as fh:
        fh.write(json.dumps({"id": "9", "prompt": "p", "candidates": ["a", "b"], "human": {"choice": 5}}) + "\n")
    r = CliRunner().invoke(main, ["agree", str(scored)])
    assert r.exit_code == 2
    assert "s.jsonl:4: human.choice: expected 0..1 or null, got 5" in r.output


def test_convert_bad_input_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "l.json"
    bad.write_text("[{\"input\": \"q\", \"output_1\": \"a\"}]")
    r = CliRunner().invoke(main, ["data", "convert", "--from", "llmbar", str(bad), "-o", str(tmp_path / "o.jsonl")])
    assert r.exit_code == 2
    assert "record 1: label" in r.output
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "o.jsonl.tmp").exists()


def test_field_judge_imports_meta_scores_and_never_shares_them_by_text(tmp_path: Path) -> None:
    """Two prompts with the same two texts but opposite imported verdicts: the store and the
    within-chunk dedup key by text, so the field judge must key by its value too."""
    from judge import score
    from judge.errors import SpecError
    from judge.registry import load_judge

    recs = [
        {"id": "1", "prompt": "p", "candidates": ["a", "b"], "meta": {"v": [1.0, 0.0]}},
        {"id": "2", "prompt": "p", "candidates": ["a", "b"], "meta": {"v": [0.0, 1.0]}},
        {"id": "3", "prompt": "p", "candidates": ["a", "b"], "meta": {"v": ["x", None]}},
        {"id": "4", "prompt": "p", "candidates": ["a", "b"], "meta": {}},
    ]
    store = tmp_path / "s.sqlite"
    for _ in range(2):  # the second run reads everything back from the store
        out = score(recs, ["gpt=field:meta.v,scale=2"], store=store, as_frame=False)
        assert [r["scores"]["gpt"] for r in out] == [[2.0, 0.0], [0.0, 2.0], [None, None], [None, None]]
    assert "not a number" in out[2]["judgements"]["gpt"][0]["error"]
    assert "meta.v not in the record" in out[3]["judgements"]["gpt"][0]["error"]
    assert load_judge("field:meta.gpt35").name == "gpt35"
    with pytest.raises(SpecError, match="field: give the path"):
        load_judge("field")
