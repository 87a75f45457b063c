"""Scale-out of `judge score` over processes started by torchrun (gloo on CPU, nccl on GPUs).

Each rank takes a deterministic shard (valid group i goes to rank i % world), scores it into
the shared SQLite store, and rank 0 then runs the ordinary single-process pipeline, which
finds every score in the store and writes the one output in input order. So the merge, the
resume after a crash and the output format are exactly those of a 1-process run; only
failed items (never stored) are retried by rank 0. torchrun is the launcher: nothing here
starts processes. Across nodes, the store and output must be on a disk every node sees."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from judge import io
from judge.errors import JudgeError
from judge.judges.base import Judge
from judge.records import Group
from judge.scoring import (
    JudgeTally,
    ProgressHook,
    RunSummary,
    ScoreConfig,
    _chunks,
    check_judge_names,
    score_file,
    score_groups,
)
from judge.store import ScoreStore


def world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) outside torchrun."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def launched_by_torchrun() -> bool:
    """True in a process of a multi-process torchrun job (each would otherwise score it all)."""
    return world()[1] > 1


@contextmanager
def process_group() -> Iterator[None]:
    """Join torchrun's process group for the run (gloo for CPU tensors, nccl for CUDA ones)."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        yield
        return
    if torch.cuda.is_available():  # each rank on its own GPU, never all on cuda:0
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    # object collectives and barriers go over gloo (CPU); nccl serves any CUDA tensors
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    try:
        yield
    finally:
        dist.destroy_process_group()


def shard(groups: Iterator[Group], rank: int, size: int) -> Iterator[Group]:
    """This rank's groups: every size-th valid group, starting at rank (deterministic)."""
    for n, group in enumerate(groups):
        if n % size == rank:
            yield group


def score_shard(
    config: ScoreConfig, judges: Sequence[Judge], rank: int, size: int, progress: ProgressHook | None = None
) -> dict[str, JudgeTally]:
    """Score this rank's shard into the store; no output file is written here."""
    units = io.read_groups(config.input, skip_bad=config.on_bad_input == "skip")
    groups = (u for u in units if isinstance(u, Group))
    tallies = {j.name: JudgeTally(j.name) for j in judges}
    with ScoreStore(config.store_path()) as store:
        for chunk in _chunks(shard(groups, rank, size), config.chunk_items):
            batch = [g for g in chunk if isinstance(g, Group)]
            score_groups(batch, judges, store, tallies)
            if progress is not None:  # rank 0 shows the job's progress, estimated from its shard
                progress(len(batch) * size, sum(len(g.candidates) for g in batch) * size)
    return tallies


def score_file_distributed(
    config: ScoreConfig, judges: Sequence[Judge], progress: ProgressHook | None = None
) -> RunSummary | None:
    """A whole `judge score` across torchrun's ranks; rank 0 returns the summary, others None."""
    import torch.distributed as dist

    check_judge_names(judges)
    if config.on_bad_input not in {"error", "skip"}:
        raise JudgeError(f"--on-bad-input must be 'error' or 'skip', not {config.on_bad_input!r}")
    if config.store is None:
        config.store = config.store_path()  # every rank must share one store
    with process_group():
        rank, size = dist.get_rank(), dist.get_world_size()
        if rank == 0:  # create the store alone: SQLite's switch to WAL fails when ranks race to it
            ScoreStore(config.store_path()).close()
        dist.barrier()
        tallies = score_shard(config, judges, rank, size, progress if rank == 0 else None)
        fresh = {name: t.scored + t.abstained - t.cached for name, t in tallies.items()}
        states = {j.name: _summary_state(j) for j in judges}
        gathered: list[Any] | None = [None] * size if rank == 0 else None
        dist.gather_object((fresh, states), gathered, dst=0)  # also: every shard is in the store
        if rank != 0:
            return None
        assert gathered is not None
        for judge in judges:
            merge = getattr(judge, "merge_summary_states", None)
            if merge is not None:
                merge([g[1][judge.name] for g in gathered])
        summary = score_file(config, judges)
        for name, tally in summary.tallies.items():
            tally.cached = max(0, tally.cached - sum(g[0].get(name, 0) for g in gathered))
        return summary


def _summary_state(judge: Judge) -> Any:
    state = getattr(judge, "summary_state", None)
    return state() if state is not None else None


def under_torchrun() -> bool:
    """True in any process torchrun started (even a world of one)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ
