"""GPU check for judge sft: bf16 SFT of a ~0.9B Llama-architecture model built from a config.

Prints training tokens/s and MFU = 6 x params x tokens/s / peak bf16 FLOP/s (issue 7's
formula; the figure with the input-embedding parameters left out is printed beside it).
Rows are GSM8K-format accepted rows: GSM8K train from ../shared/data when present, else
generated word problems in the same format. Needs CUDA; one run takes about 3-5 minutes.

    .venv/bin/python benchmarks/gpu_sft.py                      # defaults: 16 layers x 2048, packed 2048
    .venv/bin/python benchmarks/gpu_sft.py --micro-batch 4 --steps 20 --peak-tflops 989
Target (issue 7): >= 35% MFU on one H100/H200."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"

# Dense bf16 tensor-core peaks (no sparsity), from the vendors' data sheets.
PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0, "H100": 989.0,
               "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}


def peak_tflops(name: str) -> float:
    for key, value in PEAK_TFLOPS.items():
        if key in name:
            return value
    raise SystemExit(f"unknown GPU {name!r}: pass --peak-tflops")


def rows(n: int) -> list[dict]:
    """Accepted rows in TRL prompt–completion form (DESIGN.md §3.4)."""
    out = []
    if GSM8K.exists():
        with open(GSM8K) as fh:
            for line in fh:
                rec = json.loads(line)
                out.append({"prompt": f"Question: {rec['question']}\nAnswer:", "completion": " " + rec["answer"]})
                if len(out) >= n:
                    break
    rng = random.Random(0)
    while len(out) < n:  # generated problems in the same format, where the shared data is absent
        a, b, c = rng.randint(2, 90), rng.randint(2, 90), rng.randint(2, 9)
        out.append({"prompt": f"Question: Sam has {a} apples and buys {b} bags of {c}. How many apples now?\nAnswer:",
                    "completion": f" He buys {b} x {c} = <<{b}*{c}={b * c}>>{b * c} apples.\n"
                                  f"He has {a} + {b * c} = <<{a}+{b * c}={a + b * c}>>{a + b * c} apples.\n"
                                  f"#### {a + b * c}"})
    return out


def build(work: Path, args: argparse.Namespace, texts: list[str]) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    out = work / "model"
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=16000, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")
    fast.save_pretrained(str(out))
    config = LlamaConfig(vocab_size=32000, hidden_size=args.hidden, intermediate_size=args.intermediate,
                         num_hidden_layers=args.layers, num_attention_heads=args.hidden // 128,
                         num_key_value_heads=args.kv_heads, max_position_embeddings=4096, rope_theta=10000.0,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(str(out))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--intermediate", type=int, default=5632)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--micro-batch", type=int, default=8, help="Packed rows of max-length per forward pass.")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--skip", type=int, default=5, help="Warm-up steps left out of the timing.")
    p.add_argument("--rows", type=int, default=7473)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=0.0)
    p.add_argument("--cpu-smoke", action="store_true", help="Run on CPU (tiny sizes) to check the script itself.")
    p.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "runs" / "gpu-sft"),
                   help="Where result.json and metrics.jsonl go ($OUT on the device machine).")
    p.add_argument("--work", default="/tmp/gpu-sft", help="Model, data and the fine-tuned model (GBs).")
    args = p.parse_args()

    import torch

    if not torch.cuda.is_available() and not args.cpu_smoke:
        raise SystemExit("gpu_sft: needs a CUDA GPU")
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    peak = (args.peak_tflops or peak_tflops(name)) * 1e12
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    data_rows = rows(args.rows)
    data = work / "accepted.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in data_rows))
    t = time.perf_counter()
    model_dir = build(work, args, [r["prompt"] + r["completion"] for r in data_rows])
    print(f"built model in {time.perf_counter() - t:.0f}s", file=sys.stderr)

    from judge.sft import SFTConfig, train

    config = SFTConfig(model=str(model_dir), data=str(data), output=str(work / "sft"), overwrite=True,
                       max_length=args.max_length, packing=True, micro_batch_size=args.micro_batch,
                       batch_tokens=args.micro_batch * args.max_length, max_steps=args.steps, lr=1e-4,
                       warmup_steps=5, dtype="fp32" if args.cpu_smoke else "bf16", gradient_checkpointing=args.gradient_checkpointing,
                       keep_checkpoint=False)
    while True:
        try:
            train(config)
            break
        except torch.cuda.OutOfMemoryError:
            if config.micro_batch_size == 1:
                raise
            # Halve the pass and keep the step: accumulation makes up the same tokens per step.
            config.micro_batch_size //= 2
            print(f"out of memory: retrying with micro-batches of {config.micro_batch_size}", file=sys.stderr)
            import gc

            gc.collect()  # the failed attempt's model and optimizer go before the retry allocates
            torch.cuda.empty_cache()
    metrics = [json.loads(x) for x in (work / "sft" / "metrics.jsonl").read_text().splitlines()]
    start, steps = metrics[0], [m for m in metrics if "loss" in m]
    a, b = steps[args.skip - 1], steps[-1]
    tps = (b["tokens"] - a["tokens"]) / (b["elapsed_s"] - a["elapsed_s"])

    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(str(model_dir))
    params = _count(cfg)
    embed = cfg.vocab_size * cfg.hidden_size
    result = {
        "gpu": name, "peak_tflops": peak / 1e12, "params": params, "layers": args.layers, "hidden": args.hidden,
        "max_length": args.max_length, "micro_batch": config.micro_batch_size, "steps": args.steps,
        "tokens_per_s": tps, "mfu": 6 * params * tps / peak, "mfu_without_input_embedding": 6 * (params - embed) * tps / peak,
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0, "fast_loss": start["fast_loss"],
        "loss_first_last": [steps[0]["loss"], steps[-1]["loss"]],
    }
    (out / "result.json").write_text(json.dumps(result, indent=1))
    (out / "metrics.jsonl").write_text((work / "sft" / "metrics.jsonl").read_text())
    print(f"gpu_sft: {name}, Llama {params / 1e9:.2f}B params ({args.layers} x {args.hidden}), packed {config.micro_batch_size} x "
          f"{args.max_length}, {config.dtype}: {tps:,.0f} tokens/s, MFU {result['mfu']:.1%} "
          f"({result['mfu_without_input_embedding']:.1%} without the input embedding), "
          f"peak memory {result['peak_memory_gb']:.1f} GiB, loss {steps[0]['loss']:.3f} -> {steps[-1]['loss']:.3f}")


def _count(cfg) -> int:
    """Parameters of a Llama config, counted from the shapes (no second model in memory)."""
    h, i, n, v = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size
    kv = cfg.num_key_value_heads * (h // cfg.num_attention_heads)
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    return n * per_layer + 2 * v * h + h


if __name__ == "__main__":
    main()
