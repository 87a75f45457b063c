"""`torchrun --nproc_per_node 2 -m judge score` on CPU (gloo) equals a 1-process run.

Real processes through torchrun's own launcher: each rank scores its shard into the shared
store, rank 0 merges into one output in input order. A small judge that logs its rank shows
that the work really was split, and that nothing was scored twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

RANK_JUDGE = '''
import os
from judge.records import Score

class RankJudge:
    batch_size = 64
    fingerprint = "rank-judge:v1"

    def __init__(self, spec):
        self.name = spec.display_name
        self.log = spec.options["log"]

    def score_batch(self, items):
        with open(self.log, "a") as fh:
            for it in items:
                fh.write(f"{os.environ.get('RANK', '-')} {it.group_id} {it.index}\\n")
        return [Score(float(len(it.response))) for it in items]
'''


def make_input(path: Path) -> Path:
    rows = []
    for g in range(9):  # an odd count: the shards are uneven
        cands = [f"The answer is {g + k}. " * (1 + (g * 7 + k * 5) % 13) for k in range(1 + g % 3)]
        rows.append(json.dumps({"id": f"g{g}", "prompt": f"Question {g}: what is {g} + {g}?", "candidates": cands}))
        if g == 4:
            rows.append('{"id": "broken", "candidates": 3}')  # a bad record, skipped
    path.write_text("\n".join(rows) + "\n")
    return path


def run(args: list[str], env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           **(env_extra or {})}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_two_process_torchrun_equals_one_process_run(tiny_models, tmp_path):
    src = make_input(tmp_path / "cands.jsonl")
    judges = ["--judge", f"rm:{tiny_models['gpt2-rm']},max_length=48", "--judge",
              f"ranks=python:{tmp_path / 'rank_judge.py'}:RankJudge,log={tmp_path / 'ranks.log'}"]
    (tmp_path / "rank_judge.py").write_text(RANK_JUDGE)
    common = ["score", str(src), "--on-bad-input", "skip", "--quiet", *judges]

    one = run([sys.executable, "-m", "judge", *common, "-o", str(tmp_path / "one.jsonl")])
    assert one.returncode == 0, one.stderr
    (tmp_path / "ranks.log").unlink()

    two = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "judge", *common, "--distributed", "-o", str(tmp_path / "two.jsonl")])
    assert two.returncode == 0, two.stderr[-3000:]

    a, b = lines(tmp_path / "one.jsonl"), lines(tmp_path / "two.jsonl")
    assert [r["id"] for r in b] == [f"g{g}" for g in range(9)]  # input order, bad record left out
    assert [r["id"] for r in a] == [r["id"] for r in b]
    for ra, rb in zip(a, b):
        assert ra["judgements"] == rb["judgements"]
        assert ra["scores"]["ranks"] == rb["scores"]["ranks"]
        assert ra["scores"]["rm"] == pytest.approx(rb["scores"]["rm"], abs=1e-4)
    assert any(j["truncated"] for r in b for j in r["judgements"]["rm"])
    assert len(lines(tmp_path / "two.jsonl.rejected.jsonl")) == 1

    logged = [line.split() for line in (tmp_path / "ranks.log").read_text().splitlines()]
    seen = [(g, i) for _, g, i in logged]
    assert len(seen) == len(set(seen)) == sum(len(r["candidates"]) for r in b)  # each scored once
    for rank, group, _ in logged:  # group n went to rank n % 2
        assert int(rank) == int(group[1:]) % 2


def test_distributed_flag_outside_torchrun_says_how_to_launch(tmp_path):
    src = make_input(tmp_path / "cands.jsonl")
    res = run([sys.executable, "-m", "judge", "score", str(src), "-o", str(tmp_path / "o.jsonl"), "--judge", "length",
               "--distributed", "--on-bad-input", "skip"])
    assert res.returncode != 0
    assert "torchrun --nproc_per_node N -m judge score" in res.stderr
    assert not (tmp_path / "o.jsonl").exists()
