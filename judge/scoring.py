"""The scoring pipeline shared by `judge score` and `judge.score()`.

Groups stream in, are cut into chunks of about `chunk_items` candidates, each judge scores
what the store does not already hold, and the chunk is written in input order before the
next is read. Resume: every input record ends as exactly one line of OUT (a group) or of
OUT.rejected.jsonl (a bad record), so a rerun counts the complete lines written, cuts a
torn last line, skips that many records and goes on; scores of the cut lines come back
from the store, so nothing is scored twice."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from judge import io
from judge.errors import InputError, JudgeError
from judge.judges.base import Judge
from judge.records import Group, Score
from judge.store import ScoreStore


@dataclass
class ScoreConfig:
    """Configuration of one `judge score` run (written beside the output as OUT.config.json)."""

    input: str
    """Candidates file (JSONL, .jsonl.gz, Parquet or CSV)."""
    output: str
    """Scored JSONL output; written as it goes."""
    judges: list[str]
    """Judge specs, `[NAME=]KIND:TARGET[@URL][,key=value...]`."""
    store: str | None = None
    """SQLite score store; default OUT.store.sqlite beside the output."""
    on_bad_input: str = "error"
    """'error' stops at the first bad record (exit 2); 'skip' records it in OUT.rejected.jsonl."""
    chunk_items: int = 512
    """Candidates read, scored and written per step (the unit of progress and of fsync)."""
    overwrite: bool = False
    """Start afresh even if OUT holds a run to resume."""

    def store_path(self) -> str:
        return self.store or str(self.output) + ".store.sqlite"

    def rejected_path(self) -> str:
        return str(self.output) + ".rejected.jsonl"

    def config_path(self) -> str:
        return str(self.output) + ".config.json"


@dataclass
class JudgeTally:
    """Per-judge counts for the summary table."""

    name: str
    scored: int = 0
    failed: int = 0
    abstained: int = 0
    cached: int = 0
    total: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> float | None:
        return self.total / self.scored if self.scored else None

    def add(self, score: Score) -> None:
        if score.value is not None:
            self.scored += 1
            self.total += score.value
        elif score.abstained:
            self.abstained += 1
        else:
            self.failed += 1


@dataclass
class RunSummary:
    groups: int = 0
    items: int = 0
    rejected: int = 0
    resumed_from: int = 0
    tallies: dict[str, JudgeTally] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(t.failed for t in self.tallies.values())


ProgressHook = Callable[[int, int], None]  # (records done, candidates done) since the last call


def check_judge_names(judges: Sequence[Judge]) -> None:
    seen: set[str] = set()
    for j in judges:
        if j.name in seen:
            raise JudgeError(f"two judges are both named {j.name!r}; name them: --judge NAME=KIND:TARGET")
        seen.add(j.name)


def score_groups(
    groups: Sequence[Group],
    judges: Sequence[Judge],
    store: ScoreStore | None,
    tallies: dict[str, JudgeTally] | None = None,
) -> list[dict[str, Any]]:
    """Score a chunk of groups with every judge (store first) and return scored records."""
    items = [item for g in groups for item in g.items()]
    keys = [item.key for item in items]
    per_judge: dict[str, list[Score]] = {}
    for judge in judges:
        # A judge whose score depends on more than prompt+response+reference (`field` reads meta)
        # keys its own items, else the store and the dedup below would hand it another item's score.
        jkeys = [judge.item_key(it) for it in items] if hasattr(judge, "item_key") else keys
        known = store.get_many(judge.fingerprint, jkeys) if store is not None else {}
        todo: dict[str, int] = {}
        for i, key in enumerate(jkeys):
            if key not in known and key not in todo:
                todo[key] = i
        fresh = _run_judge(judge, [items[i] for i in todo.values()], list(todo), store)
        results = {**known, **dict(zip(todo.keys(), fresh))}
        scores = [results[k] for k in jkeys]
        per_judge[judge.name] = scores
        if tallies is not None:
            tally = tallies.setdefault(judge.name, JudgeTally(judge.name))
            tally.cached += sum(1 for k in jkeys if k in known)
            for s in scores:
                tally.add(s)
    records, pos = [], 0
    for g in groups:
        n = len(g.candidates)
        rec = g.to_record()
        rec["scores"] = {name: [_clean(s.value) for s in sc[pos : pos + n]] for name, sc in per_judge.items()}
        rec["judgements"] = {name: [s.judgement() for s in sc[pos : pos + n]] for name, sc in per_judge.items()}
        records.append(rec)
        pos += n
    return records


def _clean(value: float | None) -> float | None:
    """NaN/inf are not JSON and not scores: they become null (recorded as an error upstream)."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _run_judge(judge: Judge, items: list[Any], keys: list[str], store: ScoreStore | None) -> list[Score]:
    """Call the judge in its preferred batch size; a crash in one batch fails only that batch.

    Each batch goes to the store as soon as it is scored, so a slow judge (an endpoint at
    40 requests/min) that is killed or stopped by its circuit breaker mid-chunk loses none
    of the calls it already paid for."""
    out: list[Score] = []
    size = max(1, int(getattr(judge, "batch_size", 256)))
    for start in range(0, len(items), size):
        batch = items[start : start + size]
        try:
            scores = judge.score_batch(batch)
        except JudgeError:
            raise
        except Exception as exc:  # a failed item is recorded, never dropped
            scores = [Score.failed(f"{type(exc).__name__}: {exc}") for _ in batch]
        if len(scores) != len(batch):
            raise JudgeError(f"judge {judge.name!r} returned {len(scores)} scores for {len(batch)} items")
        for s in scores:
            if s.value is not None and not math.isfinite(s.value):
                s.error, s.value = f"non-finite score {s.value}", None
        if store is not None:
            store.put_many(judge.fingerprint, zip(keys[start : start + size], scores))
        out.extend(scores)
    return out


def _chunks(units: Iterable[Group | io.BadRecord], chunk_items: int) -> Iterator[list[Group | io.BadRecord]]:
    chunk: list[Group | io.BadRecord] = []
    n = 0
    for unit in units:
        chunk.append(unit)
        if isinstance(unit, Group):
            n += len(unit.candidates)
        if n >= chunk_items:
            yield chunk
            chunk, n = [], 0
    if chunk:
        yield chunk


def _identity(config: ScoreConfig, judges: Sequence[Judge]) -> dict[str, Any]:
    return {
        "input": os.path.abspath(config.input),
        "judges": {j.name: j.fingerprint for j in judges},
        "on_bad_input": config.on_bad_input,
    }


def _prepare_resume(config: ScoreConfig, judges: Sequence[Judge]) -> int:
    """Number of input records already done (0 for a fresh run); cuts torn lines."""
    out = Path(config.output)
    cfg_path = Path(config.config_path())
    if config.overwrite or not out.exists() or out.stat().st_size == 0:
        for p in (out, Path(config.rejected_path())):
            if p.exists():
                p.unlink()
        return 0
    if not cfg_path.exists():
        raise JudgeError(f"{out} exists but has no {cfg_path.name}; pass --overwrite to replace it")
    previous = json.loads(cfg_path.read_text(encoding="utf-8")).get("identity")
    if previous != _identity(config, judges):
        raise JudgeError(
            f"{out} holds a run with other input or judges; pass --overwrite to replace it, or choose another -o"
        )
    return io.complete_lines(out) + io.complete_lines(config.rejected_path())


def _last_output_id(path: str) -> str | None:
    """Id of the last record written; reads only the file's tail, not a million lines."""
    with open(path, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        block, tail = 1 << 16, b""
        while end > 0 and tail.count(b"\n") < 2:
            start = max(0, end - block)
            fh.seek(start)
            tail = fh.read(end - start) + tail
            end = start
    lines = [ln for ln in tail.split(b"\n") if ln.strip()]
    if not lines:
        return None
    last = json.loads(lines[-1]).get("id")
    return None if last is None else str(last)


def score_file(
    config: ScoreConfig,
    judges: Sequence[Judge],
    progress: ProgressHook | None = None,
) -> RunSummary:
    """Run a whole `judge score`: resume if possible, write as it goes, return the summary."""
    check_judge_names(judges)
    if config.on_bad_input not in {"error", "skip"}:
        raise JudgeError(f"--on-bad-input must be 'error' or 'skip', not {config.on_bad_input!r}")
    Path(config.output).parent.mkdir(parents=True, exist_ok=True)
    done = _prepare_resume(config, judges)
    summary = RunSummary(resumed_from=done, tallies={j.name: JudgeTally(j.name) for j in judges})
    io.write_json(
        config.config_path(),
        {"command": "score", "config": dataclasses.asdict(config), "identity": _identity(config, judges)},
    )
    units = io.read_groups(config.input, skip_bad=config.on_bad_input == "skip")
    skipped_last: Group | None = None
    for _ in range(done):
        unit = next(units, None)
        if unit is None:
            break
        if isinstance(unit, Group):
            skipped_last = unit
    if skipped_last is not None:
        written = _last_output_id(config.output)
        if written is not None and written != skipped_last.id:
            raise JudgeError(
                f"{config.output} does not match {config.input} (last written id {written!r}, input has "
                f"{skipped_last.id!r} there); pass --overwrite to start again"
            )
    with ScoreStore(config.store_path()) as store, io.JsonlWriter(config.output, append=True) as out, io.JsonlWriter(
        config.rejected_path(), append=True
    ) as rejected:
        try:
            for chunk in _chunks(units, config.chunk_items):
                groups = [u for u in chunk if isinstance(u, Group)]
                scored = iter(score_groups(groups, judges, store, summary.tallies))
                n_items = 0
                for unit in chunk:
                    if isinstance(unit, Group):
                        out.write(next(scored))
                        n_items += len(unit.candidates)
                    else:
                        err = unit.error
                        rejected.write(
                            {"path": err.path, "line": err.line, "field": err.field, "error": str(err), "raw": unit.raw}
                        )
                        summary.rejected += 1
                out.sync()
                summary.groups += len(groups)
                summary.items += n_items
                if progress is not None:
                    progress(len(chunk), n_items)
        finally:
            for judge in judges:
                if hasattr(judge, "summary"):
                    summary.tallies[judge.name].extra.update(judge.summary())
    if Path(config.rejected_path()).stat().st_size == 0:
        Path(config.rejected_path()).unlink()
    return summary


def _as_groups(data: Any) -> Iterator[Group]:
    """Accept a path, Groups, or dicts in any input format (for the Python API)."""
    if isinstance(data, (str, os.PathLike)):
        yield from io.iter_valid_groups(data)
        return
    for i, rec in enumerate(data, start=1):
        if isinstance(rec, Group):
            yield rec
        elif isinstance(rec, dict):
            if "candidates" in rec:
                yield io.parse_grouped("<records>", i, rec, str(i))
            elif "chosen" in rec or "rejected" in rec:
                yield io.parse_preference("<records>", i, rec, str(i))
            else:
                raise InputError("<records>", i, "candidates", "missing")
        else:
            raise InputError("<records>", i, None, f"expected a dict or Group, got {type(rec).__name__}")


def score(
    data: Any,
    judges: Sequence[str | Judge],
    store: str | os.PathLike[str] | None = None,
    as_frame: bool = True,
    chunk_items: int = 512,
) -> Any:
    """Score candidates in Python: `judge.score("cands.jsonl", ["verify:gsm8k"])`.

    Returns a pandas DataFrame with one row per candidate (id, candidate, response and a
    column per judge), or the scored records (DESIGN.md §3.2) with as_frame=False."""
    from judge.registry import load_judge

    built = [load_judge(j) if isinstance(j, str) else j for j in judges]
    check_judge_names(built)
    db = ScoreStore(store) if store is not None else None
    records: list[dict[str, Any]] = []
    try:
        for chunk in _chunks(_as_groups(data), chunk_items):
            batch = [g for g in chunk if isinstance(g, Group)]
            records.extend(score_groups(batch, built, db))
    finally:
        if db is not None:
            db.close()
    if not as_frame:
        return records
    return records_to_frame(records)


def records_to_frame(records: Sequence[dict[str, Any]]) -> Any:
    """Scored records -> one row per candidate (pandas)."""
    import pandas as pd

    rows = []
    for rec in records:
        for i, cand in enumerate(rec["candidates"]):
            row: dict[str, Any] = {
                "id": rec["id"],
                "candidate": i,
                "response": cand if isinstance(cand, str) else cand.get("text"),
            }
            for name, values in rec.get("scores", {}).items():
                row[name] = values[i]
            rows.append(row)
    return pd.DataFrame(rows)
