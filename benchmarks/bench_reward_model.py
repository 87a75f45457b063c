"""`rm:` judge throughput on CPU against the usual way of batching a reward model.

Workload: hh-rlhf helpful-base test transcripts (chosen and rejected), split into the
prompt (the conversation up to the last "Assistant:") and the response. Model: a 6-layer
MiniLM-sized BERT reward model (hidden 384, 12 heads, 22M parameters) built from a config
with a seeded random head, and a WordPiece tokenizer trained here on the harmless-base split
(no download). Baseline, measured in the same run on the same model object: fixed batches
of 32 in file order, padded to each batch's longest (RewardBench's scripts batch this way),
tokenizer truncation from the left like the judge's default. Prints tokens/s of both, their
ratio by wall time and by process CPU time, padding waste (pad tokens / real tokens) of both,
and the largest score difference. Target: ratio >= 2.0 with max abs diff <= 1e-4. PASS is
judged on the CPU-time ratio: on a shared machine wall time mostly measures the neighbours
(both are printed; on an idle machine with one thread they agree). Needs ../shared/data
(skips otherwise).

    python benchmarks/bench_reward_model.py [--pairs 100] [--repeats 1]   # 2-3 minutes on 2 busy cores
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "hh-rlhf"
TEST = DATA / "helpful-base-test.jsonl.gz"
TOKENIZER_CORPUS = DATA / "harmless-base-test.jsonl.gz"
MAX_LENGTH = 512
BASELINE_BATCH = 32


def read_pairs(path: Path, limit: int | None = None) -> list[dict]:
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            rows.append(json.loads(line))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def split_transcript(text: str) -> tuple[str, str]:
    """hh-rlhf keeps whole conversations: the prompt ends at the last "Assistant:"."""
    cut = text.rfind("\n\nAssistant:")
    if cut < 0:
        return "", text.strip()
    head = cut + len("\n\nAssistant:")
    return text[:head].strip(), text[head:].strip()


def build_model(out: Path) -> Path:
    """A MiniLM-L6-sized BERT sequence classifier and a WordPiece tokenizer, saved to out."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    corpus = TOKENIZER_CORPUS if TOKENIZER_CORPUS.exists() else TEST
    texts = [r[k] for r in read_pairs(corpus) for k in ("chosen", "rejected")]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=16000, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
                                   unk_token="[UNK]", mask_token="[MASK]", model_max_length=MAX_LENGTH)
    fast.save_pretrained(str(out))
    config = BertConfig(vocab_size=len(fast), hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=1536, max_position_embeddings=MAX_LENGTH, num_labels=1,
                        pad_token_id=fast.pad_token_id)
    torch.manual_seed(0)
    BertForSequenceClassification(config).eval().save_pretrained(str(out))
    return out


def run_baseline(model, tok, prompts: list[str], responses: list[str]) -> tuple[list[float], float, float, int, int]:
    """Fixed batches of 32 in file order, padded to the longest: (scores, wall s, CPU s, real, padded)."""
    import torch

    scores: list[float] = []
    real = padded = 0
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(prompts), BASELINE_BATCH):
        enc = tok(prompts[i : i + BASELINE_BATCH], responses[i : i + BASELINE_BATCH], padding=True,
                  truncation="only_first", max_length=MAX_LENGTH, return_tensors="pt")
        real += int(enc["attention_mask"].sum())
        padded += enc["input_ids"].numel()
        with torch.no_grad():
            scores += model(**enc).logits[:, 0].float().tolist()
    return scores, time.perf_counter() - start, time.process_time() - cpu, real, padded


def run_judge(judge, items: list, chunk: int = 512) -> tuple[list[float], float, float]:
    """The judge as the pipeline calls it, chunks of 512 candidates: (scores, wall s, CPU s)."""
    scores: list[float] = []
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(items), chunk):
        scores += [s.value for s in judge.score_batch(items[i : i + chunk])]
    return scores, time.perf_counter() - start, time.process_time() - cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=100, help="hh-rlhf rows (each gives 2 candidates).")
    ap.add_argument("--repeats", type=int, default=1, help="Alternating timed runs of each; the best counts.")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for both (0: torch's default). One thread measures steadily on a shared "
                         "machine: with two, every parallel region waits for whichever thread was descheduled.")
    args = ap.parse_args()
    if not TEST.exists():
        print(f"SKIP bench_reward_model: shared data not found at {TEST} (only present in the team's workspace)",
              file=sys.stderr)
        return 0
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from judge.records import Item
    from judge.registry import load_judge

    rows = read_pairs(TEST, args.pairs)
    pairs = [split_transcript(r[k]) for r in rows for k in ("chosen", "rejected")]
    prompts, responses = [p for p, _ in pairs], [r for _, r in pairs]
    items = [Item(p, r) for p, r in pairs]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = build_model(Path(tmp) / "minilm-rm")
        judge = load_judge(f"rm:{path}" + (f",threads={args.threads}" if args.threads else ""))
        tok = judge.tokenizer
        tok.truncation_side = "left"  # the judge's default: keep the end of the response
        n_params = sum(p.numel() for p in judge.model.parameters())
        print(f"model: BERT 6x384 ({n_params / 1e6:.1f}M params, fp32, sdpa), built in {time.perf_counter() - t0:.1f}s; "
              f"torch threads {torch.get_num_threads()}; {len(items)} candidates from {TEST.name}")
        base_times, judge_times, base_cpu, judge_cpu = [], [], [], []
        for rep in range(args.repeats):
            base_scores, bt, bc, real, padded = run_baseline(judge.model, tok, prompts, responses)
            judge.stats = {k: 0 if k != "seconds" else 0.0 for k in judge.stats}
            ours, jt, jc = run_judge(judge, items)
            base_times.append(bt)
            judge_times.append(jt)
            base_cpu.append(bc)
            judge_cpu.append(jc)
            print(f"  run {rep + 1}: baseline {bt:.2f}s wall / {bc:.2f}s CPU, judge {jt:.2f}s wall / {jc:.2f}s CPU")
    stats = judge.stats
    assert stats["tokens"] == real, (stats["tokens"], real)  # the same token sequences on both sides
    diff = max(abs(a - b) for a, b in zip(ours, base_scores))
    base_tps, judge_tps = real / min(base_times), real / min(judge_times)
    ratio = judge_tps / base_tps
    lengths = sorted(len(x) for x in tok(prompts, responses, truncation="only_first", max_length=MAX_LENGTH)["input_ids"])
    print(f"tokens: {real:,} real; lengths min {lengths[0]}, median {lengths[len(lengths) // 2]}, max {lengths[-1]}; "
          f"truncated {judge.summary()['truncated']} of {len(items)}")
    print(f"baseline (batches of {BASELINE_BATCH}, file order): {base_tps:,.0f} tokens/s, "
          f"padding waste {(padded - real) / real:.1%}")
    print(f"rm judge (length-sorted, batch_tokens={judge.batch_tokens}): {judge_tps:,.0f} tokens/s, "
          f"padding waste {(stats['padded'] - stats['tokens']) / stats['tokens']:.1%}")
    cpu_ratio = min(base_cpu) / min(judge_cpu)
    print(f"ratio: {ratio:.2f}x tokens/s (target >= 2.0x), {cpu_ratio:.2f}x by CPU time; "
          f"max abs score diff {diff:.2e} (target <= 1e-4)")
    ok = cpu_ratio >= 2.0 and diff <= 1e-4
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
