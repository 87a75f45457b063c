"""GPU check of the `rm:` judge: throughput and model FLOPs utilisation of a real-size reward
model, and agreement of bf16 GPU scores with fp32 CPU scores on the same weights.

Model: a Llama-architecture sequence classifier (~1.0B parameters with the defaults: 16
layers, hidden 2048, GQA 32/8 heads, MLP 8192, 32k vocab, 1 label) built from a config with
seeded random weights, saved in bf16 (so the fp32 CPU run reads exactly the same weights),
plus a byte-level BPE tokenizer with a chat template trained here on the texts. Workload:
4,000 hh-rlhf helpful-base test candidates (chosen and rejected transcripts split into prompt
and response). Prints tokens/s, MFU = 2 x params x tokens / time / peak bf16 FLOP/s (params
without the embedding table, which does no matmul; attention FLOPs not counted, so MFU is a
lower bound), padding waste, the same model batched the usual way (fixed batches of 32 in
file order) for a ratio, and Spearman of bf16 GPU vs fp32 CPU scores. Targets: MFU >= 40%
on an H100/H200, Spearman >= 0.99. Writes results JSON to $OUT (or --out) when set.

    python benchmarks/gpu_reward_model.py                      # the GPU check (<= 8 min)
    python benchmarks/gpu_reward_model.py --device cpu --layers 2 --hidden 128 --heads 4 \\
        --kv-heads 2 --intermediate 256 --vocab 2000 --texts 200 --cpu-texts 40   # smoke test
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = ROOT.parent / "shared" / "data" / "hh-rlhf" / "helpful-base-test.jsonl.gz"
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
)
PEAK_BF16 = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "GH200": 989e12, "A100": 312e12, "L40S": 362e12}


def load_items(limit: int) -> list:
    from judge.records import Item

    items = []
    with gzip.open(TEST, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            for key in ("chosen", "rejected"):
                text = row[key]
                cut = text.rfind("\n\nAssistant:") + len("\n\nAssistant:")
                items.append(Item(text[:cut].strip(), text[cut:].strip(), None, f"r{len(items) // 2}", len(items) % 2))
            if len(items) >= limit:
                break
    return items[:limit]


def build(out: Path, items: list, args: argparse.Namespace) -> int:
    """Tokenizer trained on the texts + a Llama sequence classifier with random weights."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForSequenceClassification, PreTrainedTokenizerFast

    specials = ["<|pad|>", "<|bos|>", "<|eos|>", "<|unk|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    tok = Tokenizer(models.BPE(unk_token="<|unk|>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([it.prompt + " " + it.response for it in items], trainers.BpeTrainer(
        vocab_size=args.vocab, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>",
                                   pad_token="<|pad|>", unk_token="<|unk|>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out))
    config = LlamaConfig(vocab_size=len(fast), hidden_size=args.hidden, num_hidden_layers=args.layers,
                         num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
                         intermediate_size=args.intermediate, max_position_embeddings=4096, num_labels=1,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    init_device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(init_device):
        model = LlamaForSequenceClassification(config)
    model.to(torch.bfloat16).save_pretrained(str(out))
    n = sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return n


def peak_flops(device: str, override: float | None) -> tuple[float | None, str]:
    import torch

    if override:
        return override * 1e12, "given"
    if not device.startswith("cuda"):
        return None, "cpu"
    name = torch.cuda.get_device_name(torch.device(device))
    for key in sorted(PEAK_BF16, key=len, reverse=True):
        if key in name:
            return PEAK_BF16[key], name
    return None, name


def timed(judge, items: list, sync) -> tuple[list[float | None], float]:
    sync()
    start = time.perf_counter()
    scores = [s.value for s in judge.score_batch(items)]
    sync()
    return scores, time.perf_counter() - start


def fixed_batches(judge, items: list, sync) -> tuple[float, int, int]:
    """The usual way: batches of 32 in file order, padded to the longest (end to end)."""
    import torch

    tok = judge.tokenizer
    texts = [tok.apply_chat_template([{"role": "user", "content": it.prompt},
                                      {"role": "assistant", "content": it.response}], tokenize=False) for it in items]
    tok.truncation_side = "left"
    real = padded = 0
    sync()
    start = time.perf_counter()
    for i in range(0, len(texts), 32):
        enc = tok(texts[i : i + 32], padding=True, truncation=True, max_length=judge.max_length,
                  add_special_tokens=False, return_tensors="pt").to(judge.device)
        real += int(enc["attention_mask"].sum())
        padded += enc["input_ids"].numel()
        with torch.inference_mode():
            judge.model(**enc).logits.float().cpu()
    sync()
    return time.perf_counter() - start, real, padded


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=4000)
    ap.add_argument("--cpu-texts", type=int, default=192, help="Texts also scored in fp32 on the CPU (Spearman).")
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--intermediate", type=int, default=8192)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--max-length", type=int, default=2048)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--budgets", default="16384,32768,65536", help="batch_tokens values to time.")
    ap.add_argument("--peak-tflops", type=float, default=None, help="Peak bf16 TFLOP/s if the GPU is not known.")
    ap.add_argument("--out", default=os.environ.get("OUT"), help="Folder for results JSON (default $OUT).")
    args = ap.parse_args()
    if not TEST.exists():
        print(f"SKIP gpu_reward_model: shared data not found at {TEST}", file=sys.stderr)
        return 0
    import torch
    from scipy.stats import spearmanr

    from judge.registry import load_judge

    t0 = time.perf_counter()
    items = load_items(args.texts)
    results: dict = {"texts": len(items)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "llama-rm"
        n_params = build(path, items, args)
        print(f"built Llama RM: {n_params / 1e9:.3f}B params without embeddings, in {time.perf_counter() - t0:.0f}s")
        spec = f"rm:{path},device={args.device},dtype=bf16,attn=sdpa,max_length={args.max_length}"
        judge = load_judge(spec)
        dev = judge.device
        sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
        peak, gpu = peak_flops(dev, args.peak_tflops)
        print(f"device {dev} ({gpu}), dtype {judge.dtype}, attn {judge.model.config._attn_implementation}")
        results.update(device=gpu, params_no_embedding=n_params)
        judge.score_batch(items[:64])  # warm-up: kernels, allocator
        best = None
        for budget in [int(b) for b in args.budgets.split(",")]:
            judge.batch_tokens = budget
            judge.stats = {k: 0 if k != "seconds" else 0.0 for k in judge.stats}
            scores, seconds = timed(judge, items, sync)
            tokens, fwd = judge.stats["tokens"], judge.stats["seconds"]
            waste = (judge.stats["padded"] - tokens) / tokens
            mfu = 2 * n_params * tokens / fwd / peak if peak else None
            mfu_e2e = 2 * n_params * tokens / seconds / peak if peak else None
            row = {"batch_tokens": budget, "tokens": tokens, "seconds": seconds, "forward_seconds": fwd,
                   "tokens_per_s": tokens / seconds, "padding_waste": waste, "mfu_forward": mfu, "mfu_end_to_end": mfu_e2e,
                   "truncated": judge.stats["truncated"]}
            results.setdefault("runs", []).append(row)
            mfu_txt = f"MFU {mfu:.1%} (forward time), {mfu_e2e:.1%} end to end" if peak else "MFU n/a (unknown peak)"
            print(f"batch_tokens={budget}: {tokens:,} tokens in {seconds:.2f}s = {tokens / seconds:,.0f} tokens/s; "
                  f"{mfu_txt}; padding waste {waste:.1%}; truncated {judge.stats['truncated']}")
            if best is None or row["tokens_per_s"] > best[0]["tokens_per_s"]:
                best = (row, scores)
        assert best is not None
        base_s, base_real, base_padded = fixed_batches(judge, items, sync)
        ratio = best[0]["tokens_per_s"] / (base_real / base_s)
        print(f"fixed batches of 32 in file order: {base_real / base_s:,.0f} tokens/s, padding waste "
              f"{(base_padded - base_real) / base_real:.1%}; judge is {ratio:.2f}x")
        results.update(baseline_tokens_per_s=base_real / base_s, ratio=ratio)
        judge.close()
        del judge
        if dev.startswith("cuda"):
            torch.cuda.empty_cache()

        sub = items[: args.cpu_texts]
        cpu = load_judge(f"rm:{path},device=cpu,dtype=fp32,max_length={args.max_length},threads={os.cpu_count()}")
        t1 = time.perf_counter()
        cpu_scores = [s.value for s in cpu.score_batch(sub)]
        rho = float(spearmanr(cpu_scores, best[1][: len(sub)]).statistic)
        print(f"bf16 {dev} vs fp32 cpu on {len(sub)} texts: Spearman {rho:.4f} (target >= 0.99); "
              f"cpu fp32 took {time.perf_counter() - t1:.0f}s")
        results.update(spearman_bf16_vs_fp32=rho, spearman_texts=len(sub))
    best_mfu = best[0]["mfu_forward"]
    ok = (best_mfu is None or best_mfu >= 0.40) and rho >= 0.99
    results["pass"] = ok
    print(("PASS" if ok else "FAIL") + f" (total {time.perf_counter() - t0:.0f}s)")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu_reward_model.json").write_text(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
