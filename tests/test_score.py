"""`judge score` end to end: output format, store, resume after SIGKILL, bad input, API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from counting_judge import CountingJudge

import judge
from judge.cli import main
from judge.store import ScoreStore

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "math_candidates.jsonl"
COUNTING = f"python:{ROOT / 'tests' / 'counting_judge.py'}:CountingJudge"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "judge", *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def make_input(path: Path, n_groups: int, n_cands: int = 4) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n_groups):
            cands = [f"Step one for {i}.\nThe answer is {i + k}." for k in range(n_cands)]
            fh.write(json.dumps({"id": f"g{i}", "prompt": f"What is {i}?", "reference": str(i), "candidates": cands}) + "\n")
    return path


def test_score_example_writes_scored_records_in_input_order(tmp_path):
    out = tmp_path / "scored.jsonl"
    result = CliRunner().invoke(main, ["score", str(EXAMPLE), "-o", str(out), "--judge", "verify:gsm8k", "--judge", "length"])
    assert result.exit_code == 0, result.output
    recs = lines(out)
    src = lines(EXAMPLE)
    assert [r["id"] for r in recs] == [s["id"] for s in src]
    for rec, s in zip(recs, src):
        assert rec["candidates"] == s["candidates"] and rec["reference"] == s["reference"]
        assert set(rec["scores"]) == {"verify", "length"}
        assert len(rec["scores"]["verify"]) == len(s["candidates"]) == len(rec["judgements"]["verify"])
        # Each handwritten problem has exactly one correct rationale, with id ending in -c0.
        good = [c["id"] for c, v in zip(rec["candidates"], rec["scores"]["verify"]) if v == 1.0]
        assert good == [f"{rec['id']}-c0"]
    config = json.loads((tmp_path / "scored.jsonl.config.json").read_text())
    assert config["config"]["judges"] == ["verify:gsm8k", "length"]
    assert "verify" in result.output and "mean score" in result.output


def test_output_folder_is_created(tmp_path):
    out = tmp_path / "new" / "folder" / "scored.jsonl"
    r = run_cli("score", str(EXAMPLE), "-o", str(out), "--judge", "verify:gsm8k", "-q")
    assert r.returncode == 0, r.stderr
    assert len(lines(out)) == 20


def test_store_makes_reruns_free_and_is_shared(tmp_path):
    inp = make_input(tmp_path / "c.jsonl", 30)
    log = tmp_path / "calls.log"
    store = tmp_path / "shared.sqlite"
    spec = f"{COUNTING},log={log},delay=0"
    r1 = run_cli("score", str(inp), "-o", str(tmp_path / "a.jsonl"), "--judge", spec, "--store", str(store), "-q")
    assert r1.returncode == 0, r1.stderr
    assert len(log.read_text().splitlines()) == 120
    r2 = run_cli("score", str(inp), "-o", str(tmp_path / "b.jsonl"), "--judge", spec, "--store", str(store), "-q")
    assert r2.returncode == 0, r2.stderr
    assert len(log.read_text().splitlines()) == 120  # nothing rescored
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    with ScoreStore(store) as db:
        assert db.count() == 120


def test_duplicate_candidates_are_scored_once(tmp_path):
    inp = tmp_path / "dup.jsonl"
    inp.write_text(json.dumps({"prompt": "p", "candidates": ["same", "same", "other"]}) + "\n")
    log = tmp_path / "calls.log"
    r = run_cli("score", str(inp), "-o", str(tmp_path / "o.jsonl"), "--judge", f"{COUNTING},log={log},delay=0", "-q")
    assert r.returncode == 0, r.stderr
    assert len(log.read_text().splitlines()) == 2
    assert lines(tmp_path / "o.jsonl")[0]["scores"]["python"][0] is not None


@pytest.mark.parametrize("kill_fraction", [0.1, 0.5, 0.9])
def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path, kill_fraction):
    n = 400
    inp = make_input(tmp_path / "c.jsonl", n)
    ref_out, out = tmp_path / "ref.jsonl", tmp_path / "out.jsonl"
    log = tmp_path / "calls.log"
    spec = f"{COUNTING},log={log},delay=0.004"
    args = ["--judge", "verify:gsm8k", "--judge", spec, "--chunk-items", "16", "-q"]
    ref = run_cli("score", str(inp), "-o", str(ref_out), "--store", str(tmp_path / "ref.sqlite"), *args)
    assert ref.returncode == 0, ref.stderr
    log.unlink()

    proc = subprocess.Popen([sys.executable, "-m", "judge", "score", str(inp), "-o", str(out), *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = int(n * kill_fraction)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= target:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = out.read_bytes().count(b"\n")
    assert 0 < written < n

    again = run_cli("score", str(inp), "-o", str(out), *args)
    assert again.returncode == 0, again.stderr
    assert out.read_bytes() == ref_out.read_bytes()  # complete, in order, no duplicate, nothing lost
    keys = log.read_text().splitlines()
    # Nothing stored is scored twice; only the one batch in flight when the kill landed
    # (logged by the judge, not yet committed to the store) may be redone.
    assert len(set(keys)) == n * 4 and len(keys) - n * 4 <= CountingJudge.batch_size


def test_kill_inside_a_chunk_keeps_the_batches_already_scored(tmp_path):
    """A slow judge killed before its chunk is written must not pay for those batches again."""
    inp = make_input(tmp_path / "c.jsonl", 100)
    out, log = tmp_path / "out.jsonl", tmp_path / "calls.log"
    args = ["--judge", f"{COUNTING},log={log},delay=0.01", "--chunk-items", "1000", "-q"]
    proc = subprocess.Popen([sys.executable, "-m", "judge", "score", str(inp), "-o", str(out), *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 120:
            break
        time.sleep(0.005)
    assert proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists() or out.stat().st_size == 0  # one chunk: nothing written yet
    before = len(log.read_text().splitlines())
    assert run_cli("score", str(inp), "-o", str(out), *args).returncode == 0
    keys = log.read_text().splitlines()
    assert len(set(keys)) == 400 and len(keys) - 400 <= CountingJudge.batch_size and before >= 120
    assert len(lines(out)) == 100


def test_resume_refuses_output_of_a_different_run(tmp_path):
    inp = make_input(tmp_path / "c.jsonl", 5)
    out = tmp_path / "o.jsonl"
    assert run_cli("score", str(inp), "-o", str(out), "--judge", "verify:gsm8k", "-q").returncode == 0
    r = run_cli("score", str(inp), "-o", str(out), "--judge", "verify:math", "-q")
    assert r.returncode == 1 and "--overwrite" in r.stderr
    assert run_cli("score", str(inp), "-o", str(out), "--judge", "verify:math", "-q", "--overwrite").returncode == 0


def test_resume_refuses_an_input_that_changed_under_the_output(tmp_path):
    inp = make_input(tmp_path / "c.jsonl", 5)
    out = tmp_path / "o.jsonl"
    assert run_cli("score", str(inp), "-o", str(out), "--judge", "verify:gsm8k", "-q").returncode == 0
    out.write_text("".join(out.read_text().splitlines(keepends=True)[:3]))  # as if killed after 3 records
    inp.write_text(inp.read_text().replace('"id": "g2"', '"id": "changed"'))
    r = run_cli("score", str(inp), "-o", str(out), "--judge", "verify:gsm8k", "-q")
    assert r.returncode == 1 and "last written id 'g2'" in r.stderr and "'changed'" in r.stderr


def test_bad_input_stops_with_file_line_field_and_keeps_what_was_written(tmp_path):
    inp = make_input(tmp_path / "c.jsonl", 3)
    with open(inp, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "bad", "prompt": "p", "candidates": []}) + "\n")
        fh.write(json.dumps({"id": "later", "prompt": "p", "candidates": ["x"]}) + "\n")
    out = tmp_path / "o.jsonl"
    r = run_cli("score", str(inp), "-o", str(out), "--judge", "verify:gsm8k", "-q", "--chunk-items", "4")
    assert r.returncode == 2
    assert f"{inp}:4: candidates: empty list" in r.stderr
    assert "Traceback" not in r.stderr
    assert [x["id"] for x in lines(out)] == ["g0", "g1", "g2"]
    debug = run_cli("--debug", "score", str(inp), "-o", str(tmp_path / "d.jsonl"), "--judge", "verify:gsm8k", "-q")
    assert "Traceback" in debug.stderr


def test_skip_bad_input_records_each_bad_line(tmp_path):
    inp = tmp_path / "c.jsonl"
    inp.write_bytes(
        b'{"id": "a", "prompt": "p", "reference": "1", "candidates": ["The answer is 1."]}\n'
        b'{"id": "b", "prompt": "p", "candidates": ["x"\n'
        b'{"id": "c", "prompt": "p\xff", "candidates": ["x"]}\n'
        b'{"id": "d", "candidates": ["x"]}\n'
        b'{"id": "e", "prompt": "p", "reference": "2", "candidates": ["The answer is 3."]}\n'
    )
    out = tmp_path / "o.jsonl"
    r = run_cli("score", str(inp), "-o", str(out), "--judge", "verify:gsm8k", "--on-bad-input", "skip")
    assert r.returncode == 0, r.stderr
    assert [x["id"] for x in lines(out)] == ["a", "e"]
    rejected = lines(tmp_path / "o.jsonl.rejected.jsonl")
    assert [x["line"] for x in rejected] == [2, 3, 4]
    assert "invalid JSON" in rejected[0]["error"] and "invalid UTF-8" in rejected[1]["error"]
    assert rejected[2]["field"] == "prompt"
    assert "3 bad record(s)" in r.stderr


def test_failed_items_are_recorded_as_null_with_the_reason(tmp_path):
    inp = tmp_path / "c.jsonl"
    inp.write_text(json.dumps({"id": "a", "prompt": "p", "candidates": ["The answer is 1."]}) + "\n")  # no reference
    out = tmp_path / "o.jsonl"
    r = run_cli("score", str(inp), "-o", str(out), "--judge", "verify:gsm8k", "--strict", "-q")
    assert r.returncode == 1
    (rec,) = lines(out)
    assert rec["scores"]["verify"] == [None]
    assert rec["judgements"]["verify"][0]["error"] == "no reference to verify against"


def test_unknown_judge_kind_is_a_usage_error(tmp_path):
    r = run_cli("score", str(EXAMPLE), "-o", str(tmp_path / "o.jsonl"), "--judge", "verfy:gsm8k")
    assert r.returncode == 2 and "did you mean 'verify'" in r.stderr and "Traceback" not in r.stderr


def test_python_api_returns_a_dataframe_and_records(tmp_path):
    frame = judge.score(str(EXAMPLE), ["verify:gsm8k", "length"])
    assert list(frame.columns) == ["id", "candidate", "response", "verify", "length"]
    assert len(frame) == 80 and frame["verify"].sum() == 20
    recs = judge.score(
        [{"id": "x", "prompt": "p", "reference": "2", "candidates": ["The answer is 2.", "The answer is 3."]}],
        ["verify:gsm8k"], as_frame=False, store=tmp_path / "s.sqlite",
    )
    assert recs[0]["scores"] == {"verify": [1.0, 0.0]}


def test_two_judges_with_one_name_are_refused(tmp_path):
    r = run_cli("score", str(EXAMPLE), "-o", str(tmp_path / "o.jsonl"), "--judge", "verify:gsm8k", "--judge", "verify:math")
    assert r.returncode == 1 and "both named 'verify'" in r.stderr
