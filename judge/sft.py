"""The bundled SFT loop: completion-only fine-tuning of a causal LM on accepted rows.

One plain torch loop, readable top to bottom (nanoGPT style): AdamW, warmup then cosine or
constant, gradient clipping, accumulation to a target batch, bf16 autocast on GPU, optional
gradient checkpointing and LoRA, eval loss, checkpoints that resume exactly, and DDP under
torchrun (only rank 0 writes). `train(config) -> path` is the API the STaR loop calls."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from judge.errors import JudgeError
from judge.sft_data import Batch, micro_batches, plan_steps, rank_share, read_rows, split_eval, tokenise
from judge.sft_runtime import Env, all_sum, barrier, load_checkpoint, save_checkpoint, setup


@dataclass
class SFTConfig:
    """Everything a run depends on; written to OUT/sft_config.json so it can be reproduced."""

    model: str = ""
    """Base model: a folder (or hub id) that AutoModelForCausalLM and AutoTokenizer load."""
    data: str = ""
    """Accepted rows (JSONL, TRL prompt–completion format, as `judge best-of-n` writes them)."""
    output: str = ""
    """Output folder: the fine-tuned model, tokenizer, metrics.jsonl, sft_config.json, checkpoint/."""
    max_length: int = 1024
    """Tokens per example (prompt + completion + EOS); longer rows are truncated and counted."""
    packing: bool = False
    """Pack examples into rows of max_length (attention never crosses examples); else length-grouped padding."""
    batch_size: int = 16
    """Examples per optimizer step over all ranks and accumulation (used when batch_tokens is 0)."""
    batch_tokens: int = 0
    """If > 0: tokens (no padding) per optimizer step over all ranks, instead of batch_size examples."""
    micro_batch_size: int = 8
    """Examples (or packed rows) per forward pass on one device; accumulation makes up the step."""
    epochs: int = 1
    """Passes over the training rows (ignored when max_steps > 0)."""
    max_steps: int = 0
    """If > 0: stop after this many optimizer steps (cycling through epochs as needed)."""
    lr: float = 2e-5
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.0
    """AdamW weight decay (not applied to biases and norm weights)."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    warmup_steps: int = 0
    """Linear warmup steps from 0 to lr."""
    schedule: str = "cosine"
    """After warmup: 'cosine' (down to min_lr_ratio x lr at the last step) or 'constant'."""
    min_lr_ratio: float = 0.0
    """Floor of the cosine schedule, as a fraction of lr."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this (0: no clipping)."""
    seed: int = 0
    """Seeds data order, the held-out slice, dropout and LoRA init."""
    eval_rows: int = 0
    """Rows held out (a seeded random slice) for eval loss; 0: no eval."""
    eval_every: int = 0
    """Eval loss every N steps (and at the end); 0 with eval_rows > 0: only at the end."""
    checkpoint_every: int = 0
    """Write OUT/checkpoint every N steps (model, optimizer, scheduler, RNG, data position); 0: never."""
    keep_checkpoint: bool = False
    """Keep OUT/checkpoint after the run finishes (it is deleted by default: it holds 3x the model)."""
    resume: bool = False
    """Continue from OUT/checkpoint exactly where it stopped (same config required)."""
    overwrite: bool = False
    """Start afresh even if OUT already holds a run."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about 30% more compute."""
    dtype: str = "auto"
    """'auto' (bf16 autocast on CUDA, fp32 on CPU), 'bf16' or 'fp32'. Weights stay fp32 either way."""
    lora_r: int = 0
    """If > 0: train LoRA adapters of this rank (needs peft: pip install star-judge[lora]); merged at the end."""
    lora_alpha: int = 16
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA input."""
    lora_targets: str = "all-linear"
    """Modules that get adapters: 'all-linear' or comma-separated names (q_proj,v_proj)."""
    threads: int = 0
    """CPU threads per process; 0: cores / processes on this node (two threads per core made steps 27x slower)."""
    log_every: int = 1
    """Write a metrics.jsonl line every N steps."""

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (paths as strings, betas as a list)."""
        return {k: (os.fspath(v) if isinstance(v, os.PathLike) else list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items()}


def load_config(path: str | os.PathLike[str], **overrides: Any) -> SFTConfig:
    """An SFTConfig from YAML/JSON, then overrides (the flags given on the command line)."""
    import yaml

    text = Path(path).read_text()
    values = yaml.safe_load(text) or {}
    if not isinstance(values, dict):
        raise JudgeError(f"{path}: expected a mapping of SFT options")
    known = {f.name for f in fields(SFTConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        import difflib

        hints = [f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(k, known, 1)) else k for k in unknown]
        raise JudgeError(f"{path}: unknown SFT option(s): {', '.join(hints)}")
    values.update(overrides)
    if "adam_betas" in values:
        values["adam_betas"] = tuple(values["adam_betas"])
    return SFTConfig(**values)


def lr_at(step: int, config: SFTConfig, total_steps: int) -> float:
    """Multiplier of lr for optimizer step `step` (0-based): linear warmup, then cosine or constant."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    span = max(1, total_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_loss_module(model: Any) -> Any:
    """An nn.Module(batch tensors) -> summed completion-token loss, wrapping the model; DDP wraps this.

    Logits are computed only where there is a label: the LM head (vocab x width per token) is
    the largest matmul of a small model and prompt positions never reach the loss, so the body
    runs once and the head only on labelled positions. A model whose logits are not
    head(last hidden state) (softcapping, logit scaling) fails `check_fast_path` and uses
    its plain forward instead."""
    import torch
    import torch.nn.functional as F

    class _Loss(torch.nn.Module):
        def __init__(self, lm: Any) -> None:
            super().__init__()
            self.lm = lm
            inner = lm.get_base_model() if hasattr(lm, "get_base_model") else lm  # peft wraps the LM
            # A tuple, not attributes: the body and head are already submodules of lm.
            self.parts = (getattr(inner, inner.base_model_prefix, None), inner.get_output_embeddings())
            self.fast = all(p is not None for p in self.parts)

        def forward(self, input_ids: Any, labels: Any, position_ids: Any, attention_mask: Any = None) -> Any:
            targets = labels[:, 1:]
            keep = targets != -100
            kwargs = {"input_ids": input_ids, "position_ids": position_ids, "attention_mask": attention_mask,
                      "use_cache": False}  # no cache: the model then reads packing from the position ids
            if self.fast:
                body, head = self.parts
                logits = head(body(**kwargs).last_hidden_state[:, :-1][keep])
            else:
                logits = self.lm(**kwargs).logits[:, :-1][keep]
            return F.cross_entropy(logits.float(), targets[keep], reduction="sum")

    return _Loss(model)


def check_fast_path(loss: Any, batch: Batch, device: Any) -> None:
    """Use the head-on-labels path only if it gives the model's own loss on a real batch."""
    import torch

    if not loss.fast:
        return
    t = _to(batch, device)
    was_training = loss.training
    loss.eval()  # no dropout: the two paths must see the same network
    with torch.no_grad():
        fast = loss(**t)
        loss.fast = False
        plain = loss(**t)
    loss.train(was_training)
    loss.fast = bool(torch.allclose(fast, plain, rtol=1e-4, atol=1e-4))


def _to(batch: Batch, device: Any) -> dict[str, Any]:
    out = {"input_ids": batch.input_ids.to(device), "labels": batch.labels.to(device),
           "position_ids": batch.position_ids.to(device)}
    out["attention_mask"] = None if batch.attention_mask is None else batch.attention_mask.to(device)
    return out


def _load_model(config: SFTConfig, env: Env) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(config.model)
    # fp32 master weights: bf16 autocast on GPU computes in bf16 while AdamW updates stay exact.
    model = AutoModelForCausalLM.from_pretrained(config.model, dtype=torch.float32)
    model.config.use_cache = False
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.lora_r > 0:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as exc:
            raise JudgeError("LoRA needs peft: pip install 'star-judge[lora]'") from exc
        targets: Any = config.lora_targets if config.lora_targets == "all-linear" else config.lora_targets.split(",")
        torch.manual_seed(config.seed)
        model = get_peft_model(model, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                                                 lora_dropout=config.lora_dropout, target_modules=targets,
                                                 task_type="CAUSAL_LM"))
    return model.to(env.device), tokenizer


def _optimizer(model: Any, config: SFTConfig) -> Any:
    import torch

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            # Biases and norm gains are not weights to shrink (the usual GPT recipe).
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = next(model.parameters()).device.type == "cuda"
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.adam_betas, fused=fused)


# ---------------------------------------------------------------- the loop
Progress = Callable[[dict[str, Any]], None]


def _evaluate(loss_module: Any, batches: list[Batch], env: Env, autocast: Any) -> float:
    """Mean completion-token loss on this rank's held-out batches, summed over ranks."""
    import torch

    total, count = 0.0, 0.0
    loss_module.eval()
    with torch.no_grad(), autocast():
        for b in batches:
            total += float(loss_module(**_to(b, env.device)))
            count += float((b.labels[:, 1:] != -100).sum())
    loss_module.train()
    total, count = all_sum(total, env), all_sum(count, env)
    return total / max(count, 1.0)


def train(config: SFTConfig, progress: Progress | None = None) -> Path:
    """Fine-tune config.model on config.data; returns OUT, which AutoModelForCausalLM loads."""
    import torch

    threads = torch.get_num_threads()
    try:
        return _train(config, progress)
    finally:
        torch.set_num_threads(threads)  # a library call leaves the caller's thread count as it found it


def _train(config: SFTConfig, progress: Progress | None) -> Path:
    import torch

    env = setup(config)
    out = Path(config.output)
    rows = read_rows(config.data)  # bad input fails here, before OUT is touched
    _check_output(out, config, env)
    torch.manual_seed(config.seed)
    random.seed(config.seed)

    # Data: read and tokenise once; the step plan then depends only on the seed and epoch.
    model, tokenizer = _load_model(config, env)
    data = tokenise(tokenizer, rows, config.max_length)
    if not data.examples:
        raise JudgeError(f"{config.data}: every row's prompt fills max_length={config.max_length}; raise it")
    train_ex, eval_ex = split_eval(data.examples, config.eval_rows, config.seed)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    steps_per_epoch = len(plan_steps(train_ex, 0, config.seed, config.batch_size, config.batch_tokens))
    total_steps = config.max_steps if config.max_steps > 0 else steps_per_epoch * config.epochs

    plans: dict[int, list[list[int]]] = {}

    def step_batches(step: int) -> list[Batch]:
        epoch, k = divmod(step, steps_per_epoch)
        if epoch not in plans:
            plans.clear()  # one epoch's plan at a time
            plans[epoch] = plan_steps(train_ex, epoch, config.seed, config.batch_size, config.batch_tokens)
        share = rank_share(plans[epoch][k], train_ex, env.rank, env.world)
        return micro_batches(share, train_ex, config.micro_batch_size, config.packing, config.max_length, pad_id)

    eval_batches = micro_batches(rank_share(list(range(len(eval_ex))), eval_ex, env.rank, env.world), eval_ex,
                                 config.micro_batch_size, config.packing, config.max_length, pad_id)

    loss_module = make_loss_module(model)
    probe = step_batches(0) or eval_batches
    if probe:
        check_fast_path(loss_module, probe[0], env.device)
    optimizer = _optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(s, config, total_steps))
    bf16 = config.dtype == "bf16" or (config.dtype == "auto" and env.device.type == "cuda")

    def autocast() -> Any:
        return torch.autocast(env.device.type, dtype=torch.bfloat16, enabled=bf16)

    start_step, tokens_seen = 0, 0
    if config.resume and ((out / "checkpoint").exists() or (out / "checkpoint.old").exists()):
        start_step, tokens_seen = load_checkpoint(out, model, optimizer, scheduler, config, env)
    runner: Any = loss_module
    if env.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        runner = DDP(loss_module, device_ids=[env.device.index] if env.device.type == "cuda" else None)

    metrics = _Metrics(out / "metrics.jsonl", env.rank == 0, start_step)
    start = {"event": "start", "step": start_step, "total_steps": total_steps, "world": env.world,
             "rows": len(data.examples) + data.dropped, "train_rows": len(train_ex), "eval_rows": len(eval_ex),
             "truncated": data.truncated, "dropped": data.dropped, "fast_loss": loss_module.fast,
             "effective_batch": _batch_words(config, env), "bf16": bf16}
    metrics.write(start)
    if progress is not None and env.rank == 0:
        progress(start)
    model.train()
    t0, window_tokens, window_t = time.perf_counter(), 0, time.perf_counter()
    for step in range(start_step, total_steps):
        batches = step_batches(step)
        # Normalise by the completion tokens of the whole step on all ranks, so that
        # accumulation, packing and the number of processes never change the loss or the update.
        step_targets = all_sum(float(sum(int((b.labels[:, 1:] != -100).sum()) for b in batches)), env)
        step_tokens = int(all_sum(float(sum(b.tokens for b in batches)), env))
        loss_sum = torch.zeros((), device=env.device)  # summed on the device: one host sync per step, not per pass
        for i, b in enumerate(batches):
            sync = i == len(batches) - 1
            ctx = runner.no_sync() if env.distributed and not sync else _null()
            with ctx, autocast():
                loss = runner(**_to(b, env.device))
            # DDP averages gradients over ranks; scaling by world makes it their sum.
            (loss * (env.world / max(step_targets, 1.0))).backward()
            loss_sum += loss.detach()
        if not batches and env.distributed:  # a rank with no example this step still joins the all-reduce
            with autocast():
                (runner(**_to(_empty_batch(pad_id), env.device)) * 0.0).backward()
        grad_norm = (torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                     if config.max_grad_norm > 0 else torch.tensor(0.0))
        lr = scheduler.get_last_lr()[0]  # the rate this step used
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        tokens_seen += step_tokens
        window_tokens += step_tokens
        done = step + 1
        row: dict[str, Any] = {"step": done, "loss": all_sum(float(loss_sum), env) / max(step_targets, 1.0),
                               "lr": lr, "grad_norm": float(grad_norm),
                               "tokens": tokens_seen, "epoch": round(done / steps_per_epoch, 4)}
        now = time.perf_counter()
        row["tokens_per_s"] = window_tokens / max(now - window_t, 1e-9)
        row["elapsed_s"] = round(now - t0, 3)
        if config.eval_rows and ((config.eval_every and done % config.eval_every == 0) or done == total_steps):
            row["eval_loss"] = _evaluate(loss_module, eval_batches, env, autocast)
        if done % config.log_every == 0 or done == total_steps or "eval_loss" in row:
            metrics.write(row)
            window_tokens, window_t = 0, time.perf_counter()  # eval time is not training time
        if progress is not None and env.rank == 0:
            progress({**row, "total_steps": total_steps})
        if config.checkpoint_every and done % config.checkpoint_every == 0 and done < total_steps:
            save_checkpoint(out, model, optimizer, scheduler, done, tokens_seen, config, env)

    if env.rank == 0:
        _save_final(model, tokenizer, out, config)
    barrier(env)
    if env.distributed:
        import torch.distributed as dist

        dist.destroy_process_group()
    return out


def _batch_words(config: SFTConfig, env: Env) -> str:
    per = f"{config.batch_tokens} tokens" if config.batch_tokens > 0 else f"{config.batch_size} examples"
    unit = "packed rows" if config.packing else "examples"
    return f"{per} per step = {env.world} process(es) x micro-batches of <= {config.micro_batch_size} {unit}"


def _empty_batch(pad_id: int) -> Batch:
    import torch

    ids = torch.full((1, 2), pad_id, dtype=torch.long)
    return Batch(ids, torch.full_like(ids, -100), torch.arange(2).unsqueeze(0), torch.ones_like(ids), 0, 0)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


class _Metrics:
    """Appends JSON lines to OUT/metrics.jsonl (rank 0); on resume, drops lines past the checkpoint."""

    def __init__(self, path: Path, active: bool, start_step: int) -> None:
        self.path, self.active = path, active
        if active and path.exists():
            # A killed run may have logged steps after its last checkpoint; they are redone now,
            # so their lines go (a fresh start keeps none).
            lines = [x for x in path.read_text().splitlines() if x.strip()] if start_step > 0 else []
            kept = [x for x in lines if json.loads(x).get("step", 0) <= start_step]
            path.write_text("".join(k + "\n" for k in kept))

    def write(self, row: dict[str, Any]) -> None:
        if self.active:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(row) + "\n")


def _check_output(out: Path, config: SFTConfig, env: Env) -> None:
    """Refuse to mix two runs in one folder; write the resolved config beside the output."""
    if env.rank == 0:
        if (out / "sft_config.json").exists() and not (config.resume or config.overwrite):
            raise JudgeError(f"{out} already holds an SFT run: add --resume to continue it or --overwrite to start afresh")
        if config.overwrite:
            for name in ("checkpoint", "checkpoint.tmp", "checkpoint.old", "metrics.jsonl"):
                p = out / name
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        from judge.io import write_json

        write_json(out / "sft_config.json", config.to_json())
    barrier(env)


def _save_final(model: Any, tokenizer: Any, out: Path, config: SFTConfig) -> None:
    """The plain transformers folder (LoRA merged in), so from_pretrained(OUT) needs nothing of ours."""
    if config.lora_r > 0:
        model = model.merge_and_unload()
    model.config.use_cache = True
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    if not config.keep_checkpoint:
        for name in ("checkpoint", "checkpoint.old", "checkpoint.tmp"):
            shutil.rmtree(out / name, ignore_errors=True)
