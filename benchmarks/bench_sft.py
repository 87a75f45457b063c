"""judge sft vs TRL's SFTTrainer on this CPU: tokens/s, peak memory and loss curves, same run.

Same model (GPT-2 style, 4 layers, 256 wide, built from a config with a BPE tokenizer trained
here on GSM8K text), same data (accepted rows made from GSM8K train questions and solutions),
same batch, sequence length, optimizer, schedule, seed and thread count. Each trainer runs in
its own process (peak RSS is per process); the runs alternate judge, TRL, judge, TRL, ...
and the median of each side is reported. TRL lives only in the benchmark's own environment
(runs/.venv-trl, made here on first use; it sees the project's venv through a .pth file).

    .venv/bin/python benchmarks/bench_sft.py                 # packed and padded, 1 round
    .venv/bin/python benchmarks/bench_sft.py --rounds 3 --steps 60
Target (issue 7): packed judge sft >= 1.2x TRL's tokens/s, and no more memory."""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
WORK = ROOT / "runs" / "bench-sft"
TRL_VENV = ROOT / "runs" / ".venv-trl"


# ---------------------------------------------------------------- set-up (main process)
def trl_python() -> Path:
    """The benchmark's own Python with trl installed: the project's venv plus trl, never a project dependency."""
    py = TRL_VENV / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import trl"], capture_output=True).returncode == 0:
        return py
    print(f"making {TRL_VENV} with trl (once)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(TRL_VENV)], check=True)
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    main_site = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip()
    # torch and transformers come from the project's venv, so both trainers run the very same versions.
    Path(site, "_project_venv.pth").write_text(main_site + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "trl"], check=True)
    return py


def make_data(n_rows: int) -> Path:
    """Accepted rows (DESIGN.md §3.4) from the first n GSM8K train questions and their solutions."""
    rows = []
    with open(GSM8K) as fh:
        for i, line in enumerate(fh):
            if i >= n_rows:
                break
            rec = json.loads(line)
            rows.append({"id": f"gsm8k-train-{i}", "prompt": f"Question: {rec['question']}\nAnswer:",
                         "completion": " " + rec["answer"], "score": 1.0})
    path = WORK / "accepted.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def make_model(vocab_size: int) -> Path:
    """GPT-2 style, 4 layers x 256, from a config; a byte-level BPE trained on GSM8K train text."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, GPT2Config, PreTrainedTokenizerFast

    out = WORK / "model"
    if (out / "model.safetensors").exists():
        return out
    texts = [(lambda r: r["question"] + "\n" + r["answer"])(json.loads(x)) for x in open(GSM8K)]
    tok = Tokenizer(models.BPE(unk_token="<|unk|>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|pad|>", "<|endoftext|>", "<|unk|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   pad_token="<|pad|>", unk_token="<|unk|>")
    fast.save_pretrained(str(out))
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(fast), n_layer=4, n_embd=256, n_head=4, n_positions=1024,
                        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    AutoModelForCausalLM.from_config(config).save_pretrained(str(out))
    return out


# ---------------------------------------------------------------- workers (one process each)
def worker_judge(a: argparse.Namespace) -> dict:
    from judge.sft import SFTConfig, train

    out = Path(a.out)
    config = SFTConfig(model=a.model, data=a.data, output=str(out), overwrite=True, max_length=a.max_length,
                       packing=a.packing, micro_batch_size=a.batch, max_steps=a.steps, lr=a.lr,
                       warmup_steps=a.warmup, schedule="cosine", max_grad_norm=1.0, seed=0, threads=a.threads,
                       # packed: a step is `batch` rows of max_length tokens; padded: `batch` examples
                       batch_tokens=a.batch * a.max_length if a.packing else 0, batch_size=a.batch)
    train(config)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    return {"loss": [r["loss"] for r in rows], "tokens": [r["tokens"] for r in rows],
            "time": [r["elapsed_s"] for r in rows]}


def worker_trl(a: argparse.Namespace) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(a.threads)
    rows = [json.loads(x) for x in open(a.data)]
    dataset = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    args = SFTConfig(output_dir=a.out, max_steps=a.steps, per_device_train_batch_size=a.batch,
                     gradient_accumulation_steps=1, learning_rate=a.lr, lr_scheduler_type="cosine",
                     warmup_steps=a.warmup, max_grad_norm=1.0, weight_decay=0.0, logging_steps=1,
                     save_strategy="no", eval_strategy="no", report_to="none", use_cpu=True, bf16=False,
                     max_length=a.max_length, packing=a.packing, completion_only_loss=True, seed=0,
                     dataloader_num_workers=0, disable_tqdm=True)
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *_args, **_kwargs):
            times.append(time.perf_counter())

    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset,
                         processing_class=AutoTokenizer.from_pretrained(a.model), callbacks=[Clock()])
    t0 = time.perf_counter()
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    return {"loss": [h["loss"] for h in logs], "tokens": [h.get("num_tokens") for h in logs],
            "time": [t - t0 for t in times]}


def worker(a: argparse.Namespace) -> None:
    result = worker_judge(a) if a.worker == "judge" else worker_trl(a)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    Path(a.result).write_text(json.dumps(result))


# ---------------------------------------------------------------- the comparison
def tokens_per_s(run: dict, skip: int) -> float:
    """Tokens/s over the steps after the first `skip` (warm-up: allocator, first kernels)."""
    tok, t = run["tokens"], run["time"]
    return (tok[-1] - tok[skip - 1]) / (t[-1] - t[skip - 1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=1, help="Alternating runs of each trainer per setting.")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=4, help="Packed rows (or examples, unpacked) per step.")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--settings", default="packed,padded")
    p.add_argument("--worker", choices=["judge", "trl"], help=argparse.SUPPRESS)
    for hidden in ("--model", "--data", "--out", "--result"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    p.add_argument("--packing", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        a.packing = bool(a.packing)
        worker(a)
        return
    if not GSM8K.exists():
        print(f"SKIP bench_sft: {GSM8K} not found (the shared GSM8K data is only in the team's workspace)")
        return
    WORK.mkdir(parents=True, exist_ok=True)
    trl_py = trl_python()
    model, data = make_model(a.vocab), make_data(a.rows)
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    common = ["--model", str(model), "--data", str(data), "--steps", str(a.steps), "--batch", str(a.batch),
              "--max-length", str(a.max_length), "--lr", str(a.lr), "--warmup", str(a.warmup),
              "--threads", str(a.threads)]
    report: dict = {"model": f"GPT-2 style, 4 layers x 256, vocab {a.vocab}", "rows": a.rows, "steps": a.steps,
                    "batch": a.batch, "max_length": a.max_length, "threads": a.threads, "settings": {}}
    skip = min(3, a.steps - 1)
    for setting in a.settings.split(","):
        runs: dict[str, list[dict]] = {"judge": [], "trl": []}
        for r in range(a.rounds):
            for name, py in (("judge", sys.executable), ("trl", str(trl_py))):
                res = WORK / f"{setting}-{name}-{r}.json"
                cmd = [py, __file__, "--worker", name, *common, "--packing", str(int(setting == "packed")),
                       "--out", str(WORK / f"out-{name}"), "--result", str(res)]
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if proc.returncode != 0:
                    sys.exit(f"{name} run failed:\n{proc.stderr[-4000:]}")
                run = json.loads(res.read_text())
                run["tokens_per_s"] = tokens_per_s(run, skip)
                runs[name].append(run)
                print(f"  {setting} {name} round {r}: {run['tokens_per_s']:,.0f} tok/s, "
                      f"peak RSS {run['peak_rss_mb']:,.0f} MB, loss {run['loss'][0]:.3f} -> {run['loss'][-1]:.3f}",
                      file=sys.stderr)
        summary = {}
        for name, rs in runs.items():
            summary[name] = {"tokens_per_s": statistics.median(x["tokens_per_s"] for x in rs),
                             "peak_rss_mb": statistics.median(x["peak_rss_mb"] for x in rs),
                             "loss": rs[0]["loss"]}
        summary["ratio"] = summary["judge"]["tokens_per_s"] / summary["trl"]["tokens_per_s"]
        summary["loss_max_abs_diff"] = max(abs(x - y) for x, y in zip(summary["judge"]["loss"], summary["trl"]["loss"]))
        report["settings"][setting] = summary
    (WORK / "result.json").write_text(json.dumps(report, indent=1))
    print(f"bench_sft: {report['model']}, {a.rows} GSM8K rows, {a.steps} steps of {a.batch} x {a.max_length}, "
          f"{a.threads} threads, median of {a.rounds} round(s)")
    for setting, s in report["settings"].items():
        j, t = s["judge"], s["trl"]
        print(f"{setting:7s} judge {j['tokens_per_s']:8,.0f} tok/s  TRL {t['tokens_per_s']:8,.0f} tok/s  "
              f"ratio {s['ratio']:.2f}x   peak RSS judge {j['peak_rss_mb']:,.0f} MB  TRL {t['peak_rss_mb']:,.0f} MB")
        marks = sorted({0, len(j["loss"]) // 4, len(j["loss"]) // 2, 3 * len(j["loss"]) // 4, len(j["loss"]) - 1})
        print("        loss at steps " + ", ".join(
            f"{k + 1}: {j['loss'][k]:.3f}/{t['loss'][k]:.3f}" for k in marks if k < len(t["loss"]))
            + f"  (judge/TRL; max |diff| {s['loss_max_abs_diff']:.3f})")
    print(f"full curves: {WORK / 'result.json'}")


if __name__ == "__main__":
    main()
