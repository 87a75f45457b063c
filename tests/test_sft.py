"""judge sft on tiny real causal LMs: masking, packing, learning, exact resume, bad input.

Every test trains or runs a real transformers model built from a config (tests/tiny_models.py);
nothing is mocked. Runs use one CPU thread so that float reductions happen in the same order
in every process that is compared."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from judge.cli import main
from judge.errors import InputError
from judge.sft import SFTConfig, make_loss_module, train
from judge.sft_data import IGNORE, micro_batches, read_rows, tokenise

ROOT = Path(__file__).resolve().parent.parent

MAPPING = {"Capital of France?": "Paris", "Colour of the sky?": "blue", "2 + 2 =": "4",
           "Opposite of hot?": "cold", "First letter?": "A", "Sound of a cat?": "meow"}


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def mixed_rows(n: int = 24) -> list[dict]:
    """String and chat rows of varied lengths (as judge best-of-n writes them)."""
    rows = []
    for i in range(n):
        if i % 2:
            rows.append({"id": f"s{i}", "prompt": f"Question {i}: what is {i} + {i}? " * (1 + i % 3),
                         "completion": f"Step 1: add. The answer is {2 * i}." * (1 + i % 4), "score": 1.0})
        else:
            rows.append({"id": f"c{i}", "prompt": [{"role": "system", "content": "Be brief."},
                                                   {"role": "user", "content": f"Double {i}, please."}],
                         "completion": [{"role": "assistant", "content": f"{i} x 2 = {2 * i}. " * (1 + i % 5)}]})
    return rows


def tokenizer_of(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def final_state(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / "model.safetensors"))


def metric_rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]


# ------------------------------------------------------------------ tokenisation and masking
@pytest.mark.parametrize("arch", ["gpt2-lm", "llama-lm"])
def test_completion_only_masking_token_by_token(tiny_models, tmp_path, arch):
    tok = tokenizer_of(tiny_models[arch])
    rows = read_rows(write_rows(tmp_path / "a.jsonl", mixed_rows(6)))
    data = tokenise(tok, rows, max_length=512)
    assert len(data.examples) == 6 and data.truncated == data.dropped == 0
    for (_line, prompt, completion), ex in zip(rows, data.examples):
        if isinstance(prompt, str):
            head, tail = prompt, completion
        else:
            head = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
            tail = tok.apply_chat_template(prompt + completion, tokenize=False)[len(head):]
        n_prompt = len(tok(head, add_special_tokens=isinstance(prompt, str))["input_ids"])
        # Token by token: every prompt token is masked, every completion token is its own label.
        for i, (token, label) in enumerate(zip(ex.input_ids.tolist(), ex.labels.tolist())):
            assert label == (IGNORE if i < n_prompt else token), (i, token, label)
        assert tok.decode(ex.input_ids[:n_prompt].tolist()) == head
        assert tok.decode(ex.input_ids[n_prompt:-1].tolist()) == tail
        assert ex.input_ids[-1] == tok.eos_token_id  # EOS appended and learned
        if not isinstance(prompt, str):
            assert tail.startswith(completion[0]["content"]) and tail.endswith("<|end|>\n")


def test_over_long_rows_are_truncated_and_prompt_only_rows_dropped(tiny_models, tmp_path):
    tok = tokenizer_of(tiny_models["gpt2-lm"])
    rows = read_rows(write_rows(tmp_path / "a.jsonl", [
        {"prompt": "Short?", "completion": " yes"},
        {"prompt": "Tell me.", "completion": " The answer is 13." * 40},
        {"prompt": "Question " * 80, "completion": " no"},
    ]))
    data = tokenise(tok, rows, max_length=48)
    assert (data.truncated, data.dropped) == (2, 1)  # the third is both cut and left without a completion token
    assert [e.line for e in data.examples] == [1, 2]
    assert len(data.examples[1]) == 48 and data.examples[1].labels[-1] != IGNORE


# ------------------------------------------------------------------ packing
@pytest.mark.parametrize("arch", ["gpt2-lm", "llama-lm"])
def test_packed_loss_equals_unpacked_loss(tiny_models, tmp_path, arch):
    from transformers import AutoModelForCausalLM

    tok = tokenizer_of(tiny_models[arch])
    data = tokenise(tok, read_rows(write_rows(tmp_path / "a.jsonl", mixed_rows(12))), max_length=256)
    exs = data.examples
    model = AutoModelForCausalLM.from_pretrained(str(tiny_models[arch])).eval()
    loss = make_loss_module(model)
    share = sorted(range(len(exs)), key=lambda i: -len(exs[i]))

    def total(packing: bool, fast: bool) -> tuple[float, int]:
        loss.fast = fast
        batches = micro_batches(share, exs, 4, packing, 256, tok.pad_token_id)
        with torch.no_grad():
            return sum(float(loss(**vars_of(b))) for b in batches), len(batches)

    padded, n_padded = total(False, True)
    packed, n_packed = total(True, True)
    assert n_packed < n_padded  # the rows really were packed several to a row
    assert packed == pytest.approx(padded, rel=1e-5)
    # Logits only on labelled positions give the model's own loss.
    assert total(True, False)[0] == pytest.approx(packed, rel=1e-5)
    # The reference: each example alone, through the model's own forward and loss.
    ref = 0.0
    for ex in exs:
        labels = torch.tensor([ex.labels.tolist()])
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ex.input_ids.tolist()]), labels=labels)
        ref += float(out.loss) * int((labels[:, 1:] != IGNORE).sum())
    assert packed == pytest.approx(ref, rel=1e-5)


def vars_of(batch) -> dict:
    return {"input_ids": batch.input_ids, "labels": batch.labels, "position_ids": batch.position_ids,
            "attention_mask": batch.attention_mask}


def test_accumulation_and_packing_do_not_change_the_update(tiny_models, tmp_path):
    """One step over 8 examples: micro-batches of 8, of 2, and packed rows give the same weights."""
    data = write_rows(tmp_path / "a.jsonl", mixed_rows(8))
    base = {"model": str(tiny_models["llama-lm"]), "data": str(data), "batch_size": 8, "max_steps": 1,
            "lr": 1e-3, "threads": 1, "max_length": 256}
    outs = [train(SFTConfig(**base, output=str(tmp_path / name), **extra))
            for name, extra in [("one", {"micro_batch_size": 8}), ("acc", {"micro_batch_size": 2}),
                                ("packed", {"micro_batch_size": 1, "packing": True})]]
    states = [final_state(o) for o in outs]
    for other in states[1:]:
        for key, value in states[0].items():
            # Adam's first step is about lr x sign(gradient): 1e-5 is 1% of an update of 1e-3.
            torch.testing.assert_close(other[key], value, rtol=1e-4, atol=1e-5)
    first = [metric_rows(o)[0] for o in outs]
    for row in first[1:]:  # Adam hides a uniform scale; the loss and gradient norm would show one
        assert row["loss"] == pytest.approx(first[0]["loss"], rel=1e-5)
        assert row["grad_norm"] == pytest.approx(first[0]["grad_norm"], rel=1e-4)


# ------------------------------------------------------------------ learning
def test_loss_falls_and_greedy_generation_reproduces_the_mapping(tiny_models, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = write_rows(tmp_path / "map.jsonl", [{"prompt": k, "completion": " " + v} for k, v in MAPPING.items()])
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["sft", "--model", str(tiny_models["gpt2-lm"]), "--data", str(data), "-o", str(out),
                                       "--lr", "1e-2", "--epochs", "40", "--batch-size", "6", "--schedule", "constant",
                                       "--threads", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    losses = [r["loss"] for r in metric_rows(out)]
    assert len(losses) == 40 and losses[-1] < 0.2 < 2.0 < losses[0]
    config = json.loads((out / "sft_config.json").read_text())
    assert config["lr"] == 1e-2 and config["epochs"] == 40 and config["data"] == str(data)
    assert not (out / "checkpoint").exists()
    # The folder is a plain transformers model: nothing of ours is needed to load and use it.
    model, tok = AutoModelForCausalLM.from_pretrained(str(out)), AutoTokenizer.from_pretrained(str(out))
    for prompt, answer in MAPPING.items():
        ids = tok(prompt, return_tensors="pt")
        gen = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
        assert tok.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True) == " " + answer
        assert gen[0, -1].item() == tok.eos_token_id  # it learned to stop


def test_eval_loss_on_a_held_out_slice(tiny_models, tmp_path):
    data = write_rows(tmp_path / "a.jsonl", mixed_rows(20))
    out = train(SFTConfig(model=str(tiny_models["gpt2-lm"]), data=str(data), output=str(tmp_path / "o"),
                          eval_rows=4, eval_every=2, max_steps=4, batch_size=4, lr=1e-3, threads=1))
    start = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert (start["train_rows"], start["eval_rows"]) == (16, 4)
    evals = [r["eval_loss"] for r in metric_rows(out) if "eval_loss" in r]
    assert len(evals) == 2 and evals[1] < evals[0]


# ------------------------------------------------------------------ resume
def sft_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["sft", "--model", str(model), "--data", str(data), "-o", str(out), "--batch-size", "4",
            "--micro-batch-size", "2", "--max-steps", "60", "--lr", "3e-3", "--warmup-steps", "5",
            "--checkpoint-every", "5", "--eval-rows", "4", "--eval-every", "20", "--threads", "1", "--quiet", *extra]


def test_killed_run_resumes_to_the_same_loss_and_weights(tiny_models, tmp_path):
    """SIGKILL a real `judge sft` process after a checkpoint, --resume, and compare with a run left alone.

    GPT-2 keeps dropout on, so equality also needs the RNG state restored."""
    model, data = tiny_models["gpt2-lm"], write_rows(tmp_path / "a.jsonl", mixed_rows(24))
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "judge", *sft_args(model, data, killed)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    position = killed / "checkpoint" / "position.json"
    deadline = time.monotonic() + 120
    while not position.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (killed / "model.safetensors").exists()  # it really stopped mid-run

    assert CliRunner().invoke(main, sft_args(model, data, killed, "--resume")).exit_code == 0
    whole = tmp_path / "whole"
    assert CliRunner().invoke(main, sft_args(model, data, whole)).exit_code == 0

    a, b = metric_rows(killed), metric_rows(whole)
    assert [r["step"] for r in a] == list(range(1, 61))  # lines after the checkpoint were redone, not doubled
    for x, y in zip(a, b):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5, abs=1e-6)
    assert a[-1]["eval_loss"] == pytest.approx(b[-1]["eval_loss"], rel=1e-5)
    sa, sb = final_state(killed), final_state(whole)
    for key in sb:
        torch.testing.assert_close(sa[key], sb[key], rtol=1e-5, atol=1e-6)


def test_resume_refuses_other_options_and_a_used_folder_is_not_overwritten(tiny_models, tmp_path):
    model, data = tiny_models["llama-lm"], write_rows(tmp_path / "a.jsonl", mixed_rows(8))
    out = tmp_path / "o"
    args = ["sft", "--model", str(model), "--data", str(data), "-o", str(out), "--batch-size", "2",
            "--max-steps", "3", "--checkpoint-every", "1", "--keep-checkpoint", "--threads", "1", "-q"]
    assert CliRunner().invoke(main, args).exit_code == 0
    again = CliRunner().invoke(main, args)
    assert again.exit_code != 0 and "--resume" in again.output
    changed = CliRunner().invoke(main, [*args, "--resume", "--lr", "0.5"])
    assert changed.exit_code != 0 and "other options (lr)" in changed.output


def test_config_file_with_flags_overriding_it(tiny_models, tmp_path):
    data = write_rows(tmp_path / "a.jsonl", mixed_rows(4))
    cfg = tmp_path / "sft.yaml"
    cfg.write_text(f"model: {tiny_models['gpt2-lm']}\ndata: {data}\nmax_steps: 1\nlr: 0.001\nbatch_size: 2\nthreads: 1\n")
    out = tmp_path / "o"
    result = CliRunner().invoke(main, ["sft", "--config", str(cfg), "-o", str(out), "--lr", "0.002", "-q"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "sft_config.json").read_text())
    assert (saved["lr"], saved["max_steps"], saved["batch_size"]) == (0.002, 1, 2)
    cfg.write_text("learning_rate: 0.1\n")
    bad = CliRunner().invoke(main, ["sft", "--config", str(cfg), "-o", str(out)])
    assert bad.exit_code != 0 and "learning_rate" in bad.output


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("bad, where", [
    ('{"prompt": "Q?"}', ":2: completion: missing"),
    ('{"completion": "A"}', ":2: prompt: missing"),
    ('{"prompt": "Q?", "completion": "  "}', ":2: completion: empty"),
    ('{"prompt": "Q?", "completion": [{"role": "assistant"}]}', ":2: completion[0]"),
    ('{"prompt": 3, "completion": "A"}', ":2: prompt: must be"),
    ('{"prompt": "Q?", "completion": "A"', ":2: invalid JSON"),
])
def test_bad_rows_name_file_and_line(tiny_models, tmp_path, bad, where):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "Fine?", "completion": "yes"}\n' + bad + "\n")
    result = CliRunner().invoke(main, ["sft", "--model", str(tiny_models["gpt2-lm"]), "--data", str(data),
                                       "-o", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 2
    assert f"{data}{where}" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()  # nothing written: the fixed file reruns without --overwrite


def test_a_file_with_no_rows_is_an_error(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="no rows"):
        read_rows(empty)


def test_lora_adapters_are_trained_and_merged(tiny_models, tmp_path):
    pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    data = write_rows(tmp_path / "a.jsonl", mixed_rows(8))
    out = train(SFTConfig(model=str(tiny_models["llama-lm"]), data=str(data), output=str(tmp_path / "o"),
                          lora_r=4, lr=1e-2, max_steps=3, batch_size=4, threads=1))
    base = AutoModelForCausalLM.from_pretrained(str(tiny_models["llama-lm"])).state_dict()
    tuned = AutoModelForCausalLM.from_pretrained(str(out)).state_dict()
    assert set(tuned) == set(base)  # merged: a plain model, no adapter keys
    changed = [k for k in base if not torch.equal(base[k], tuned[k])]
    assert changed and all("proj" in k for k in changed)  # only adapted linear layers moved
