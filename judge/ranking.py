"""`judge rank` and `judge best-of-n` over files, and `judge.rank()` / `judge.best_of_n()` in Python.

The edge between files and the pure maths of combine.py / select.py. Ranking streams: a
block of prompts (4096 by default) is parsed, packed into a padded scores[P, N, J] array
(NaN = missing), combined in one vectorised call, and written before the next is read. Each
output line is the input line's own bytes with the new keys appended, so the text, ids and
judgements of a 100k-prompt file are never re-serialised (JSON encoding would otherwise be
most of the run). global-z reads the file twice: statistics first, then ranks."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from judge import io
from judge.combine import CombineConfig, Combined, Gate, Moments, combine
from judge.errors import InputError, SpecError
from judge.select import GroupSelection, MinScore, SelectConfig, SelectSummary, select_group

RANK_KEYS = ("combined", "ranking", "gate", "failed_judges")


@dataclass
class RankConfig:
    """One `judge rank` run (written beside the output as OUT.config.json)."""

    input: str
    """Scored JSONL (output of `judge score`), .jsonl or .jsonl.gz."""
    output: str
    """Ranked JSONL: each scored record plus combined and ranking (DESIGN.md §3.3)."""
    combine: CombineConfig = field(default_factory=CombineConfig)
    """Method, weights, gates, missing-score policy."""
    chunk_prompts: int = 4096
    """Prompts parsed, ranked and written per step."""

    def config_path(self) -> str:
        return str(self.output) + ".config.json"


@dataclass
class JudgeRankStats:
    """Per judge, for the summary table."""

    name: str
    """Judge name."""
    missing: int = 0
    """Candidates it failed on."""
    failed_prompts: int = 0
    """Prompts where it scored no candidate (flagged in the output as failed_judges)."""
    top1_agree: int = 0
    """Prompts where the combined best is also (one of) this judge's best."""


@dataclass
class RankSummary:
    """Totals of a ranking run."""

    method: str
    """Combination method used."""
    judges: list[str]
    """Judges combined."""
    prompts: int = 0
    """Prompts ranked."""
    candidates: int = 0
    """Candidates ranked."""
    unranked: int = 0
    """Candidates with no combined score (every judge failed on them)."""
    gate_passed: int | None = None
    """Candidates passing every gate (None without gates)."""
    per_judge: dict[str, JudgeRankStats] = field(default_factory=dict)
    """Statistics per judge column in the file."""


# --------------------------------------------------------------------------- reading
def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _parse_lines(path: Path) -> Iterator[tuple[int, bytes, dict[str, Any]]]:
    if not path.exists():
        raise InputError(str(path), None, None, "file not found")
    with _open(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))  # str, not bytes: skips encoding detection, ~20% faster
            except UnicodeDecodeError as exc:
                raise InputError(str(path), lineno, None, f"invalid UTF-8 at byte {exc.start}") from None
            except json.JSONDecodeError as exc:
                raise InputError(str(path), lineno, None, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
            if not isinstance(rec, dict):
                raise InputError(str(path), lineno, None, f"expected a JSON object, got {type(rec).__name__}")
            yield lineno, raw, rec


def judge_names(records: Iterable[dict[str, Any]], where: str = "<records>") -> list[str]:
    """The judges of the first record's `scores`, in order."""
    for rec in records:
        scores = rec.get("scores")
        if not isinstance(scores, dict) or not scores:
            raise InputError(where, None, "scores", "missing or empty: rank reads the output of `judge score`")
        return list(scores)
    return []


def scores_array(
    records: Sequence[dict[str, Any]], judges: Sequence[str], where: str = "<records>", lines: Sequence[int] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Pack records' `scores` into (scores[P, N, J] with NaN for null/padding, valid[P, N]).

    A judge absent from a record counts as failed on all its candidates. One np.array call
    over a flat list per block, not one per record: that is what keeps 10^5 prompts fast."""
    counts = np.zeros(len(records), dtype=np.int64)
    flat: list[Any] = []
    for p, rec in enumerate(records):
        line = lines[p] if lines else p + 1
        cands = rec.get("candidates")
        scores = rec.get("scores")
        if not isinstance(cands, list) or not isinstance(scores, dict):
            field_name = "candidates" if not isinstance(cands, list) else "scores"
            raise InputError(where, line, field_name, "missing or not a list/object (rank reads `judge score` output)")
        n = len(cands)
        counts[p] = n
        for j in judges:
            values = scores.get(j)
            if values is None:
                flat.extend([None] * n)
            elif not isinstance(values, list) or len(values) != n:
                got = len(values) if isinstance(values, list) else type(values).__name__
                raise InputError(where, line, f"scores.{j}", f"expected {n} values (one per candidate), got {got}")
            else:
                flat.extend(values)
    try:
        values = np.array(flat, dtype=float)
    except (TypeError, ValueError):
        _raise_bad_value(records, judges, where, lines)
        raise
    values[~np.isfinite(values)] = np.nan
    n_max = int(counts.max()) if len(counts) else 0
    n_j = len(judges)
    out = np.full((len(records), n_max, n_j), np.nan)
    sizes = counts * n_j
    rec_idx = np.repeat(np.arange(len(records)), sizes)
    within = np.arange(len(values)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    per_rec_n = np.repeat(counts, sizes)
    out[rec_idx, within % np.maximum(per_rec_n, 1), within // np.maximum(per_rec_n, 1)] = values
    valid = np.arange(n_max)[None, :] < counts[:, None]
    return out, valid


def _raise_bad_value(records: Sequence[dict[str, Any]], judges: Sequence[str], where: str, lines: Sequence[int]) -> None:
    for p, rec in enumerate(records):
        for j in judges:
            for i, v in enumerate(rec["scores"].get(j) or []):
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                    line = lines[p] if lines else p + 1
                    raise InputError(where, line, f"scores.{j}[{i}]", f"expected a number or null, got {v!r}")


@dataclass
class Block:
    """A block of parsed scored records and their packed scores."""

    lines: list[int]
    """Line numbers in the input."""
    raw: list[bytes]
    """The input lines as read."""
    records: list[dict[str, Any]]
    """The parsed records."""
    scores: np.ndarray
    """[P, N, J] scores, NaN for missing and padding."""
    valid: np.ndarray
    """[P, N] real candidates."""


def read_blocks(path: str | os.PathLike[str], judges: Sequence[str], chunk_prompts: int) -> Iterator[Block]:
    """Stream a scored file as packed blocks of up to chunk_prompts prompts."""
    lines: list[int] = []
    raws: list[bytes] = []
    recs: list[dict[str, Any]] = []
    for lineno, raw, rec in _parse_lines(Path(path)):
        lines.append(lineno)
        raws.append(raw)
        recs.append(rec)
        if len(recs) >= chunk_prompts:
            yield Block(lines, raws, recs, *scores_array(recs, judges, str(path), lines))
            lines, raws, recs = [], [], []
    if recs:
        yield Block(lines, raws, recs, *scores_array(recs, judges, str(path), lines))


def file_judges(path: str | os.PathLike[str]) -> list[str]:
    """Judge names from the first record of a scored file."""
    return judge_names((rec for _, _, rec in _parse_lines(Path(path))), str(path))


# --------------------------------------------------------------------------- ranking
def _new_keys(result: Combined, p: int, n: int, failed_names: list[str]) -> dict[str, Any]:
    comb = result.combined[p, :n]
    keys: dict[str, Any] = {
        "combined": [None if c != c else c for c in comb.tolist()],
        "ranking": result.order[p, :n].tolist(),
    }
    if result.gate_pass is not None:
        keys["gate"] = result.gate_pass[p, :n].tolist()
    if failed_names:
        keys["failed_judges"] = failed_names
    return keys


def ranked_lines(block: Block, result: Combined, judges: Sequence[str]) -> list[bytes]:
    """Output lines for a block: the input bytes with the new keys spliced before the final brace."""
    out = []
    counts = block.valid.sum(1)
    for p, (raw, rec) in enumerate(zip(block.raw, block.records)):
        failed = [judges[j] for j in np.flatnonzero(result.failed_everywhere[p])] if result.failed_everywhere[p].any() else []
        keys = _new_keys(result, p, int(counts[p]), failed)
        if any(k in rec for k in RANK_KEYS):  # re-ranking a ranked file: replace, do not duplicate keys
            clean = {k: v for k, v in rec.items() if k not in RANK_KEYS}
            out.append((io.dumps({**clean, **keys}) + "\n").encode("utf-8"))
            continue
        tail = "".join(f', "{k}": {_json_list(v)}' for k, v in keys.items())
        out.append(raw.rstrip()[:-1] + tail.encode("utf-8") + b"}\n")
    return out


def _json_list(values: list[Any]) -> str:
    """json.dumps of a flat list, about twice as fast for floats and ints (same text: both use repr)."""
    if all(type(v) is float or type(v) is int for v in values):
        return "[" + ", ".join(map(repr, values)) + "]"
    return json.dumps(values, ensure_ascii=False, allow_nan=False)


def _tally(summary: RankSummary, block: Block, result: Combined, judges: Sequence[str]) -> None:
    valid = block.valid
    summary.prompts += len(block.records)
    summary.candidates += int(valid.sum())
    summary.unranked += int((valid & np.isnan(result.combined)).sum())
    if result.gate_pass is not None:
        summary.gate_passed = (summary.gate_passed or 0) + int(result.gate_pass.sum())
    best = result.order[:, 0]
    has = valid.any(1)
    rows = np.arange(len(best))
    for j, name in enumerate(judges):
        st = summary.per_judge.setdefault(name, JudgeRankStats(name))
        col = block.scores[:, :, j]
        st.missing += int((valid & np.isnan(col)).sum())
        st.failed_prompts += int(result.failed_everywhere[:, j].sum())
        top = np.max(col, axis=1, initial=-np.inf, where=valid & ~np.isnan(col))
        st.top1_agree += int((has & (col[rows, best] == top)).sum())


def rank_file(config: RankConfig) -> RankSummary:
    """Run a whole `judge rank`: stream blocks, combine, write; return the summary."""
    cc = config.combine
    if config.chunk_prompts < 1:
        raise SpecError("--chunk-prompts must be >= 1")
    judges = file_judges(config.input)
    use, _, _ = cc.plan(judges) if judges else ([], None, None)  # an empty file ranks to an empty file
    moments = None
    if cc.method == "global-z":
        moments = Moments.empty(len(judges))
        for block in read_blocks(config.input, judges, config.chunk_prompts):
            moments.update(np.where(block.valid[:, :, None], block.scores, np.nan))
    summary = RankSummary(method=cc.method, judges=use)
    Path(config.output).parent.mkdir(parents=True, exist_ok=True)
    io.write_json(config.config_path(), {"command": "rank", "config": dataclasses.asdict(config), "judges": judges})
    with open(config.output, "wb") as out:
        for block in read_blocks(config.input, judges, config.chunk_prompts):
            result = combine(block.scores, block.valid, judges, cc, moments)
            out.write(b"".join(ranked_lines(block, result, judges)))
            out.flush()
            _tally(summary, block, result, judges)
    return summary


def rank_records(records: list[dict[str, Any]], config: CombineConfig) -> list[dict[str, Any]]:
    """Add combined/ranking to in-memory scored records (global-z: the records are the whole input)."""
    if not records:
        return []
    judges = judge_names(records)
    scores, valid = scores_array(records, judges)
    result = combine(scores, valid, judges, config)
    out = []
    for p, rec in enumerate(records):
        failed = [judges[j] for j in np.flatnonzero(result.failed_everywhere[p])]
        clean = {k: v for k, v in rec.items() if k not in RANK_KEYS}
        out.append({**clean, **_new_keys(result, p, len(rec["candidates"]), failed)})
    return out


def rank(
    data: str | os.PathLike[str] | Iterable[dict[str, Any]],
    method: str = "zscore",
    weights: dict[str, float] | None = None,
    gates: Sequence[str | Gate] = (),
    **options: Any,
) -> list[dict[str, Any]]:
    """Rank scored records in Python: `judge.rank("scored.jsonl", method="rrf")` -> ranked records.

    Other options are CombineConfig fields (judges, missing, rrf_k, bt_prior)."""
    config = CombineConfig(method=method, weights=dict(weights or {}),
                           gates=[g if isinstance(g, Gate) else Gate.parse(g) for g in gates], **options)
    records = list(io.read_jsonl(data)) if isinstance(data, (str, os.PathLike)) else list(data)
    return rank_records(records, config)


# --------------------------------------------------------------------------- best-of-n
@dataclass
class BestOfNConfig:
    """One `judge best-of-n` run (written beside the output as OUT.config.json)."""

    input: str
    """Ranked JSONL (output of `judge rank`)."""
    output: str
    """Accepted rows (TRL prompt-completion, DESIGN.md §3.4)."""
    select: SelectConfig = field(default_factory=SelectConfig)
    """k, acceptance rules, pair settings."""
    pairs: str | None = None
    """Preference pairs file (TRL prompt-chosen-rejected); none when not given."""
    rejected: str | None = None
    """Rejected prompts (the ranked record plus `reject_reason`), e.g. for STaR rationalization."""

    def config_path(self) -> str:
        return str(self.output) + ".config.json"


def best_of_n_file(config: BestOfNConfig) -> SelectSummary:
    """Run a whole `judge best-of-n`, writing as it goes; the summary is saved in OUT.config.json too."""
    config.select.validate()
    summary = SelectSummary()
    Path(config.output).parent.mkdir(parents=True, exist_ok=True)
    resolved = {"command": "best-of-n", "config": dataclasses.asdict(config)}
    io.write_json(config.config_path(), resolved)  # again with the summary at the end
    accepted = io.JsonlWriter(config.output)
    pairs = io.JsonlWriter(config.pairs) if config.pairs else None
    rejected = io.JsonlWriter(config.rejected) if config.rejected else None
    try:
        for lineno, _, rec in _parse_lines(Path(config.input)):
            sel = select_group(rec, config.select, (config.input, lineno))
            summary.add(sel)
            for row in sel.accepted:
                accepted.write(row)
            if pairs is not None:
                for row in sel.pairs:
                    pairs.write(row)
            if rejected is not None and sel.reason is not None:
                rejected.write({**rec, "reject_reason": sel.reason})
    finally:
        for w in (accepted, pairs, rejected):
            if w is not None:
                w.close()
    io.write_json(config.config_path(), {**resolved, "summary": summary.as_dict()})
    return summary


def best_of_n(
    records: str | os.PathLike[str] | Iterable[dict[str, Any]],
    k: int = 1,
    min_score: Sequence[str | float | MinScore] = (),
    require: Sequence[str | Gate] = (),
    **options: Any,
) -> tuple[list[GroupSelection], SelectSummary]:
    """Best-of-N over ranked records in Python: per-prompt selections (rows, pairs, reasons) and totals.

    Other options are SelectConfig fields (min_margin, pair_mode, pair_margin)."""
    rules = [r if isinstance(r, MinScore) else MinScore.parse(str(r)) for r in min_score]
    config = SelectConfig(k=k, min_score=rules, require=[g if isinstance(g, Gate) else Gate.parse(g) for g in require],
                          **options)
    config.validate()
    data = io.read_jsonl(records) if isinstance(records, (str, os.PathLike)) else records
    summary = SelectSummary()
    out = []
    for i, rec in enumerate(data, start=1):
        sel = select_group(rec, config, ("<records>", i))
        summary.add(sel)
        out.append(sel)
    return out, summary
