"""Where a judge sft process runs and how it resumes: device, ranks, and exact checkpoints.

A checkpoint holds the model, optimizer and scheduler states (written by rank 0), each rank's
RNG states (dropout), and the data position; it is written to a new folder and renamed over
the old one, so a kill at any moment leaves a whole checkpoint behind."""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from judge.errors import JudgeError

if TYPE_CHECKING:
    from judge.sft import SFTConfig


@dataclass
class Env:
    """Where this process runs: device, rank and world size, and whether it is torchrun's."""

    device: Any
    rank: int
    world: int
    local_world: int
    distributed: bool


def setup(config: SFTConfig) -> Env:
    """Pick the device, set CPU threads, and join torchrun's process group when there is one."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        # Threads are set on purpose: with N processes on a node each keeping torch's default
        # (all cores), they oversubscribe the CPU and a step gets many times slower.
        torch.set_num_threads(config.threads or max(1, (os.cpu_count() or 1) // local_world))
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Env(device, rank, world, local_world, world > 1)


def all_sum(value: float, env: Env) -> float:
    """The sum of a number over ranks (itself outside torchrun)."""
    if not env.distributed:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=env.device)
    dist.all_reduce(t)
    return float(t.item())


# ---------------------------------------------------------------- checkpoints (exact resume)
def _rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _resume_key(config: SFTConfig) -> dict[str, Any]:
    """The options a checkpoint must agree with (bookkeeping flags may differ)."""
    skip = {"resume", "overwrite", "checkpoint_every", "keep_checkpoint", "log_every", "threads", "eval_every"}
    return {k: v for k, v in json.loads(json.dumps(config.to_json())).items() if k not in skip}


def save_checkpoint(out: Path, model: Any, optimizer: Any, scheduler: Any, step: int, tokens: int,
                    config: SFTConfig, env: Env) -> None:
    """Write OUT/checkpoint atomically (a new folder renamed over the old one): a kill never leaves half of one."""
    import torch

    tmp, final = out / "checkpoint.tmp", out / "checkpoint"
    if env.rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(env)
    # Each rank's RNG (dropout) state; everything else is identical on all ranks, so rank 0 writes it.
    torch.save(_rng_state(), tmp / f"rng-{env.rank}.pt")
    if env.rank == 0:
        torch.save({"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "state.pt")
        (tmp / "position.json").write_text(json.dumps(
            {"step": step, "tokens": tokens, "world": env.world, "config": _resume_key(config)}, indent=1))
    barrier(env)
    if env.rank == 0:
        old = out / "checkpoint.old"
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    barrier(env)


def load_checkpoint(out: Path, model: Any, optimizer: Any, scheduler: Any, config: SFTConfig, env: Env) -> tuple[int, int]:
    """Restore a checkpoint; returns (steps done, tokens seen). Refuses one made with other options."""
    import torch

    ckpt = out / "checkpoint"
    if not (ckpt / "position.json").exists() and (out / "checkpoint.old" / "position.json").exists():
        ckpt = out / "checkpoint.old"  # killed between the two renames of save_checkpoint
    position = json.loads((ckpt / "position.json").read_text())
    want = _resume_key(config)
    diff = sorted(k for k in set(want) | set(position["config"]) if want.get(k) != position["config"].get(k))
    if diff:
        raise JudgeError(f"{ckpt} was written with other options ({', '.join(diff)}); resume with the same "
                         "options, or start afresh with --overwrite")
    if position["world"] != env.world:
        raise JudgeError(f"{ckpt} was written by {position['world']} process(es), this run has {env.world}: "
                         "the data split would differ; resume with the same number of processes")
    state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(torch.load(ckpt / f"rng-{env.rank}.pt", weights_only=False))
    return int(position["step"]), int(position["tokens"])


def barrier(env: Env) -> None:
    """Wait for every rank (a no-op in a single process)."""
    if env.distributed:
        import torch.distributed as dist

        dist.barrier()
