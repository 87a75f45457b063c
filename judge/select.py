"""Best-of-N selection from ranked records (DESIGN.md §3.3 -> §3.4): which candidates to keep,
which prompts to reject, and preference pairs for DPO / reward-model training.

Pure: functions over ranked record dicts, no files, no printing. A candidate is *eligible*
when it has a combined score, passes the ranking's gates, and clears every --require and
--min-score rule; a missing score never clears a rule. Best-of-N keeps the top-k eligible
candidates in ranking order, so `--require verify` over an rm ranking keeps the best
verified rationale (STaR's filter, then a reward model)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from judge.combine import Gate
from judge.errors import InputError, SpecError

PAIR_MODES = ("best-worst", "best-each", "all")


@dataclass(frozen=True)
class MinScore:
    """A --min-score rule: the combined score (judge None) or a named judge's score must be >= value."""

    value: float
    """Threshold (inclusive)."""
    judge: str | None = None
    """Judge name, or None for the combined score."""

    @classmethod
    def parse(cls, text: str) -> MinScore:
        """`0.5` (combined) or `rm=0.3` (a judge)."""
        name, sep, value = text.rpartition("=")
        try:
            return cls(float(value), name.strip() if sep else None)
        except ValueError:
            raise SpecError(f"--min-score {text!r}: expected a number or JUDGE=NUMBER") from None

    def __str__(self) -> str:
        return f"{self.judge or 'combined'}>={self.value:g}"


@dataclass
class SelectConfig:
    """How `judge best-of-n` picks (flags map 1:1)."""

    k: int = 1
    """Candidates kept per accepted prompt (top-k eligible, ranking order)."""
    min_score: list[MinScore] = field(default_factory=list)
    """Rules on the combined score or on named judges; a candidate must clear all."""
    require: list[Gate] = field(default_factory=list)
    """Judges the candidate must pass (score >= 0.5 by default: verify must say 1)."""
    min_margin: float | None = None
    """Reject the prompt unless the best beats the next eligible candidate (other text) by this much."""
    pair_mode: str = "best-worst"
    """Preference pairs: best-worst, best-each (best vs every lower one) or all (every eligible vs every lower one)."""
    pair_margin: float = 0.0
    """Least combined-score margin of a pair (pairs that the rules separate need none)."""

    def validate(self) -> None:
        if self.k < 1:
            raise SpecError(f"--k must be >= 1, got {self.k}")
        if self.pair_mode not in PAIR_MODES:
            raise SpecError(f"--pair-mode must be one of {', '.join(PAIR_MODES)}, not {self.pair_mode!r}")
        if self.min_margin is not None and self.min_margin < 0:
            raise SpecError("--min-margin must be >= 0")


@dataclass
class GroupSelection:
    """What best-of-N decided for one prompt."""

    id: str
    """The prompt's id."""
    n: int
    """Candidates it had (the N of best-of-N)."""
    chosen: list[int]
    """Accepted candidate indices, best first (empty when rejected)."""
    eligible: list[bool]
    """Per candidate: passed every rule."""
    reason: str | None = None
    """Why the prompt was rejected, None when accepted."""
    margin: float | None = None
    """Combined score of the best minus the next eligible candidate with another text."""
    accepted: list[dict[str, Any]] = field(default_factory=list)
    """Accepted rows (DESIGN.md §3.4, TRL prompt-completion)."""
    pairs: list[dict[str, Any]] = field(default_factory=list)
    """Preference rows (TRL prompt-chosen-rejected)."""

    @property
    def best_score(self) -> float | None:
        return self.accepted[0]["score"] if self.accepted else None


def kl_bound(n: int) -> float:
    """KL(best-of-n || base) <= log n - (n - 1) / n: how far best-of-n moves from the sampler."""
    return math.log(n) - (n - 1) / n if n >= 1 else 0.0


def candidate_text(candidate: Any) -> str:
    """A candidate as stored in records: a string or an object with text."""
    return candidate if isinstance(candidate, str) else str(candidate.get("text", ""))


def as_completion(prompt: Any, text: str) -> Any:
    """TRL's convention: a chat prompt gets an assistant message list, a text prompt a string."""
    return [{"role": "assistant", "content": text}] if isinstance(prompt, list) else text


def _check(rec: dict[str, Any], where: tuple[str, int]) -> tuple[list[Any], list[float | None], list[int]]:
    path, line = where
    for key in ("candidates", "combined", "ranking"):
        if key not in rec:
            hint = " (run `judge rank` first)" if key != "candidates" else ""
            raise InputError(path, line, key, f"missing{hint}")
    cands, combined, ranking = rec["candidates"], rec["combined"], rec["ranking"]
    if len(combined) != len(cands) or sorted(ranking) != list(range(len(cands))):
        raise InputError(path, line, "ranking", "combined/ranking do not match the candidates (rerun `judge rank`)")
    return cands, combined, ranking


def eligibility(rec: dict[str, Any], config: SelectConfig) -> list[bool]:
    """Per candidate: has a combined score, passes the ranking's gates and every rule."""
    combined = rec["combined"]
    scores = rec.get("scores", {})
    gate = rec.get("gate")
    out = []
    for i, c in enumerate(combined):
        ok = c is not None and (gate is None or bool(gate[i]))
        for rule in config.min_score:
            v = c if rule.judge is None else _judge_score(scores, rule.judge, i)
            ok = ok and v is not None and v >= rule.value
        for req in config.require:
            v = _judge_score(scores, req.judge, i)
            ok = ok and v is not None and v >= req.threshold
        out.append(ok)
    return out


def _judge_score(scores: dict[str, Any], name: str, i: int) -> float | None:
    if name not in scores:
        raise SpecError(f"a rule names judge {name!r}, but the scores hold: {', '.join(scores) or 'none'}")
    return scores[name][i]


def select_group(
    rec: dict[str, Any], config: SelectConfig, where: tuple[str, int] = ("<records>", 0)
) -> GroupSelection:
    """Best-of-N for one ranked record: accepted rows, preference pairs, or a reason to reject."""
    cands, combined, ranking = _check(rec, where)
    texts = [candidate_text(c) for c in cands]
    ok = eligibility(rec, config)
    gid = str(rec.get("id", where[1]))
    result = GroupSelection(id=gid, n=len(cands), chosen=[], eligible=ok)
    order = [i for i in ranking if ok[i]]
    if not any(c is not None for c in combined):
        result.reason = "no-scores: no candidate has a combined score"
    elif not order:
        rules = [str(r) for r in config.min_score] + [f"require {g.judge}>={g.threshold:g}" for g in config.require]
        if rec.get("gate") is not None:
            rules.append("the ranking's gate")
        result.reason = "all-bad: no candidate passes " + ", ".join(rules or ["(no rules)"])
    if order:
        best = order[0]
        runner = next((i for i in order[1:] if texts[i] != texts[best]), None)
        if runner is not None:
            result.margin = combined[best] - combined[runner]
        if config.min_margin is not None and result.margin is not None and result.margin < config.min_margin:
            result.reason = f"margin: best beats the runner-up by {result.margin:.4g} < {config.min_margin:g}"
    if result.reason is None:
        result.chosen = order[: config.k]
        result.accepted = [_accepted_row(rec, gid, i, texts[i], rank) for rank, i in enumerate(result.chosen)]
    result.pairs = preference_pairs(rec, gid, texts, combined, ranking, ok, config)
    return result


def _accepted_row(rec: dict[str, Any], gid: str, i: int, text: str, rank: int) -> dict[str, Any]:
    cand = rec["candidates"][i]
    meta = dict(rec.get("meta") or {})
    meta.update(candidate=i, rank=rank, scores={j: v[i] for j, v in rec.get("scores", {}).items()})
    if isinstance(cand, dict) and cand.get("id") is not None:
        meta["candidate_id"] = cand["id"]
    return {"id": gid, "prompt": rec["prompt"], "completion": as_completion(rec["prompt"], text),
            "score": rec["combined"][i], "meta": meta}


def preference_pairs(
    rec: dict[str, Any],
    gid: str,
    texts: Sequence[str],
    combined: Sequence[float | None],
    ranking: Sequence[int],
    eligible: Sequence[bool],
    config: SelectConfig,
) -> list[dict[str, Any]]:
    """Chosen is eligible; texts differ; the pair is a preference when the rules fail rejected
    (margin may then be negative: the rules, not the scores, decided), or when chosen ranks
    above rejected by a combined margin > 0 and >= pair_margin. A candidate no judge could
    score is never paired (a failure is not evidence). Deduplicated by (chosen, rejected) text."""
    pos = {i: r for r, i in enumerate(ranking)}
    scored = [i for i in ranking if combined[i] is not None]

    def is_pair(a: int, b: int) -> bool:
        if texts[a] == texts[b]:
            return False
        if not eligible[b]:  # the rules prefer a, whatever the scores say (verified vs a high-rm wrong answer)
            return True
        margin = combined[a] - combined[b]
        return pos[a] < pos[b] and margin > 0 and margin >= config.pair_margin

    chosen = [i for i in scored if eligible[i]]
    if not chosen:
        return []
    if config.pair_mode == "all":
        candidates = [(a, b) for a in chosen for b in scored if is_pair(a, b)]
    else:
        best = chosen[0]
        below = [b for b in scored if is_pair(best, b)]
        candidates = [(best, b) for b in (below[-1:] if config.pair_mode == "best-worst" else below)]
    out, seen = [], set()
    for a, b in candidates:
        key = (texts[a], texts[b])
        if key in seen:
            continue
        seen.add(key)
        out.append({"id": gid, "prompt": rec["prompt"], "chosen": as_completion(rec["prompt"], texts[a]),
                    "rejected": as_completion(rec["prompt"], texts[b]), "margin": combined[a] - combined[b]})
    return out


@dataclass
class SelectSummary:
    """Totals over a best-of-N run (streamed: add one GroupSelection at a time)."""

    prompts: int = 0
    """Prompts read."""
    accepted_prompts: int = 0
    """Prompts with at least one accepted row."""
    accepted_rows: int = 0
    """Rows written to the accepted file."""
    pairs: int = 0
    """Preference pairs written."""
    rejected: Counter = field(default_factory=Counter)
    """Rejected prompts by reason code (all-bad, margin, no-scores)."""
    best_total: float = 0.0
    """Sum of the best combined score over accepted prompts."""
    margin_total: float = 0.0
    """Sum of defined best-vs-runner-up margins over accepted prompts."""
    margin_count: int = 0
    """Accepted prompts with a defined margin."""
    kl_total: float = 0.0
    """Sum of log N - (N-1)/N over accepted prompts."""
    n_seen: Counter = field(default_factory=Counter)
    """How many prompts had each N."""

    def add(self, sel: GroupSelection) -> None:
        self.prompts += 1
        self.n_seen[sel.n] += 1
        self.pairs += len(sel.pairs)
        if sel.reason is not None:
            self.rejected[sel.reason.split(":", 1)[0]] += 1
            return
        self.accepted_prompts += 1
        self.accepted_rows += len(sel.accepted)
        self.best_total += sel.best_score or 0.0
        self.kl_total += kl_bound(sel.n)
        if sel.margin is not None:
            self.margin_total += sel.margin
            self.margin_count += 1

    def as_dict(self) -> dict[str, Any]:
        acc = self.accepted_prompts
        return {
            "prompts": self.prompts,
            "accepted_prompts": acc,
            "accepted_rows": self.accepted_rows,
            "acceptance_rate": acc / self.prompts if self.prompts else None,
            "rejected": dict(self.rejected),
            "pairs": self.pairs,
            "mean_best_score": self.best_total / acc if acc else None,
            "mean_margin": self.margin_total / self.margin_count if self.margin_count else None,
            "n": {str(k): v for k, v in sorted(self.n_seen.items())},
            "kl_bound": self.kl_total / acc if acc else None,
        }
