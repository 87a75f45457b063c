"""Human labels read out of scored records (DESIGN.md §3.1-3.2): pure, no I/O, no printing.

Every label kind becomes within-prompt candidate pairs (a choice: chosen beats each other; a
tie: all pairs tied; ratings/rankings: by their order), in one convention, +1 / -1 / 0, that a
judge's verdict on a pair shares. Step labels stay per step, for the step metrics."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from judge.errors import InputError


@dataclass
class Labelled:
    """One scored record reduced to what agreement needs."""

    id: str
    texts: list[str]
    scores: dict[str, list[float | None]]
    pairs: list[tuple[int, int, int]]  # (i, j, h) with i < j; h = +1 if i better, -1 if j, 0 tie
    choice: int | None = None  # consensus choice, for best-of-N
    has_choice: bool = False
    ratings: list[float] | None = None
    annotators: list[int | None] | None = None  # per-annotator choices (several annotators)
    steps: list[list[int | None]] | None = None
    step_scores: dict[str, list[list[float] | None]] = field(default_factory=dict)
    step_keys: list[list[Any]] | None = None  # identity of each step, to count shared prefixes once
    slice: str | None = None
    prompt_key: str = ""  # the prompt as canonical JSON: finds the same pair shown in both orders


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def verdict(a: float | None, b: float | None) -> int | None:
    """+1 if a scores higher, -1 if lower, 0 tie, None if either is missing."""
    if a is None or b is None:
        return None
    return _sign(a - b)


def consensus(choices: Sequence[int | None]) -> int | None:
    """Strict-majority vote of annotators; no majority (or a majority for tie) is a tie."""
    counts: dict[int | None, int] = {}
    for c in choices:
        counts[c] = counts.get(c, 0) + 1
    best, n = max(counts.items(), key=lambda kv: kv[1])
    return best if n * 2 > len(choices) else None


def choice_pairs(choice: int | None, n: int) -> list[tuple[int, int, int]]:
    """A chosen candidate beats every other; a tie ties every pair."""
    if choice is None:
        return [(i, j, 0) for i in range(n) for j in range(i + 1, n)]
    return [(min(choice, j), max(choice, j), 1 if choice < j else -1) for j in range(n) if j != choice]


def rating_pairs(ratings: Sequence[float]) -> list[tuple[int, int, int]]:
    n = len(ratings)
    return [(i, j, _sign(ratings[i] - ratings[j])) for i in range(n) for j in range(i + 1, n)]


def _get(record: dict[str, Any], path: str) -> Any:
    value: Any = record
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def labelled_from_record(record: dict[str, Any], source: str, line: int, by: str | None = None) -> Labelled | None:
    """Parse one scored record (DESIGN.md §3.1-3.2); None when it carries no human label."""

    def bad(fld: str, msg: str) -> InputError:
        return InputError(source, line, fld, msg)

    cands = record.get("candidates")
    if not isinstance(cands, list) or not cands:
        raise bad("candidates", "missing or empty")
    texts = [c if isinstance(c, str) else (c or {}).get("text", "") if isinstance(c, dict) else "" for c in cands]
    n = len(texts)
    scores = record.get("scores") or {}
    if not isinstance(scores, dict):
        raise bad("scores", "must be an object {judge: [score per candidate]}")
    for name, vals in scores.items():
        if not isinstance(vals, list) or len(vals) != n:
            raise bad(f"scores.{name}", f"expected a list of {n} scores (one per candidate)")
        for k, v in enumerate(vals):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise bad(f"scores.{name}[{k}]", f"must be a number or null, got {v!r}")
    human = record.get("human")
    if human is None:
        return None
    group = Labelled(id=str(record.get("id", line)), texts=texts, scores=scores, pairs=[],
                     prompt_key=json.dumps(record.get("prompt"), sort_keys=True, ensure_ascii=False))
    if by is not None:
        value = _get(record, by)
        group.slice = None if value is None else str(value)
    labels = human if isinstance(human, list) else [human]
    if not labels or not all(isinstance(h, dict) for h in labels):
        raise bad("human", "must be an object or a list of objects (one per annotator)")
    kinds = {k for h in labels for k in ("choice", "ratings", "ranking", "steps") if k in h}
    if len(kinds) != 1:
        raise bad("human", f"expected exactly one of choice/ratings/ranking/steps, got {sorted(kinds) or 'none'}")
    kind = kinds.pop()
    if kind == "choice":
        choices = []
        for a, h in enumerate(labels):
            c = h.get("choice")
            if c is not None and (isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < n):
                raise bad(f"human[{a}].choice" if isinstance(human, list) else "human.choice", f"expected 0..{n - 1} or null, got {c!r}")
            choices.append(c)
        group.choice = consensus(choices)
        group.has_choice = True
        group.pairs = choice_pairs(group.choice, n)
        if len(choices) > 1:
            group.annotators = choices
    elif kind in ("ratings", "ranking"):
        per = []
        for h in labels:
            v = h.get(kind)
            if not isinstance(v, list) or len(v) != n:
                raise bad(f"human.{kind}", f"expected a list of {n} entries")
            if kind == "ranking":
                if sorted(v) != list(range(n)):
                    raise bad("human.ranking", "must be a permutation of candidate indices, best first")
                v = [float(n - v.index(i)) for i in range(n)]
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
                raise bad(f"human.{kind}", "entries must be numbers")
            per.append([float(x) for x in v])
        group.ratings = [float(np.mean(col)) for col in zip(*per)]
        group.pairs = rating_pairs(group.ratings)
    else:
        steps = labels[0].get("steps")
        if not isinstance(steps, list) or len(steps) != n or not all(isinstance(s, list) for s in steps):
            raise bad("human.steps", f"expected one list of step labels per candidate ({n})")
        group.steps = steps
        keys = []
        for c in cands:
            cs = (c.get("meta") or {}).get("steps") if isinstance(c, dict) else None
            keys.append([tuple(cs[: k + 1]) for k in range(len(cs))] if isinstance(cs, list) else None)
        group.step_keys = keys
        for name, js in (record.get("judgements") or {}).items():
            if isinstance(js, list) and len(js) == n:
                per_c = [j.get("step_scores") if isinstance(j, dict) else None for j in js]
                if any(isinstance(s, list) for s in per_c):
                    group.step_scores[name] = per_c
    return group


def labelled_groups(records: Iterable[tuple[int, dict[str, Any]]], source: str, by: str | None = None) -> list[Labelled]:
    """Labelled groups of (line, record) pairs; unlabelled records are skipped."""
    out = []
    for line, rec in records:
        g = labelled_from_record(rec, source, line, by)
        if g is not None:
            out.append(g)
    return out


def label_summary(groups: Sequence[Labelled]) -> dict[str, Any]:
    """What the labels look like: how many of each kind, tie rate, and how often humans pick
    the longer or the first response (the length and position baselines in one line)."""
    pairs = [(g, i, j, h) for g in groups for i, j, h in g.pairs]
    ties = sum(1 for *_, h in pairs if h == 0)
    decided = [(g, i, j, h) for g, i, j, h in pairs if h != 0 and len(g.texts[i]) != len(g.texts[j])]
    longer = sum(1 for g, i, j, h in decided if (len(g.texts[i]) > len(g.texts[j])) == (h > 0))
    two = [(g, h) for g in groups for i, j, h in g.pairs if len(g.texts) == 2 and h != 0]
    return {
        "prompts": len(groups),
        "choice": sum(1 for g in groups if g.has_choice),
        "ratings": sum(1 for g in groups if g.ratings is not None),
        "steps": sum(1 for g in groups if g.steps is not None),
        "several_annotators": sum(1 for g in groups if g.annotators),
        "pairs": len(pairs),
        "tie_rate": ties / len(pairs) if pairs else None,
        "prefers_longer": longer / len(decided) if decided else None,
        "prefers_first": sum(1 for _, h in two if h > 0) / len(two) if two else None,
    }
