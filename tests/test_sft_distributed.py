"""`torchrun --nproc_per_node 2 -m judge sft` on CPU (gloo): DDP trains, rank 0 writes one model.

Real processes through torchrun's own launcher. The loss of a step is normalised by the
completion tokens of the whole step on all ranks, so two processes splitting each step
must reach the weights of one process taking the whole step (Llama has no dropout)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from judge.sft import SFTConfig, train

ROOT = Path(__file__).resolve().parent.parent


def test_two_process_torchrun_trains_like_one_process(tiny_models, tmp_path):
    data = tmp_path / "a.jsonl"
    rows = [{"prompt": f"Question {i}: what is {i} + {i}? " * (1 + i % 3), "completion": f" {2 * i}." * (1 + i % 4)}
            for i in range(20)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    options = {"batch_size": 8, "micro_batch_size": 2, "max_steps": 4, "lr": 3e-3, "threads": 1, "eval_rows": 4}
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    # Its own session, so a hang kills torchrun and both ranks, not only the launcher.
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "judge", "sft", "--model", str(tiny_models["llama-lm"]), "--data", str(data),
                             "-o", str(out), "-q", *flags], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 0, stderr[-3000:]

    # One model, written once by rank 0, and a log that states the effective batch.
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["model.safetensors"]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["world"] == 2 and "8 examples per step = 2 process(es)" in lines[0]["effective_batch"]
    assert [r["step"] for r in lines[1:]] == [1, 2, 3, 4]  # one line per step: only rank 0 wrote

    single = train(SFTConfig(model=str(tiny_models["llama-lm"]), data=str(data), output=str(tmp_path / "one"),
                             **options))
    ref = [json.loads(x) for x in (single / "metrics.jsonl").read_text().splitlines()][1:]
    for a, b in zip(lines[1:], ref):
        assert abs(a["loss"] - b["loss"]) < 1e-4 * max(1.0, abs(b["loss"]))
    assert abs(lines[-1]["eval_loss"] - ref[-1]["eval_loss"]) < 1e-4 * ref[-1]["eval_loss"]
    got, want = load_file(str(out / "model.safetensors")), load_file(str(single / "model.safetensors"))
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=2e-5)
