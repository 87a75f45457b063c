"""`judge.BestOfN`: score, combine and pick the best candidate per prompt inside a training step.

No files: candidates come in as Python lists, go through the same scoring (scoring.score_groups),
combination (combine.combine) and selection (select.select_group) as `judge score | rank |
best-of-n`, and come back as one Selection per prompt."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from judge.combine import CombineConfig, Gate
from judge.errors import JudgeError
from judge.judges.base import Judge
from judge.records import Candidate, Group, Prompt
from judge.select import MinScore, SelectConfig, select_group


@dataclass
class Selection:
    """The outcome for one prompt."""

    index: int | None
    """Chosen candidate (the top-ranked eligible one); None when the prompt was rejected."""
    text: str | None
    """Its text."""
    score: float | None
    """Its combined score."""
    scores: dict[str, float | None]
    """Its per-judge scores (None where a judge failed)."""
    accepted: bool
    """False when the acceptance rules rejected the prompt."""
    reason: str | None = None
    """Why it was rejected."""
    ranking: list[int] = field(default_factory=list)
    """All candidates, best to worst."""
    combined: list[float | None] = field(default_factory=list)
    """Combined score of every candidate."""
    pairs: list[dict[str, Any]] = field(default_factory=list)
    """Preference pairs (prompt/chosen/rejected/margin) for DPO-style updates."""


class BestOfN:
    """Best-of-N reranking for training loops: `BestOfN(judges=["verify:gsm8k", "length"], method="rrf")`.

    Judges are spec strings or Judge objects, loaded once. `store` (a SQLite path) caches
    scores across steps; without it nothing touches disk. global-z normalises over the
    prompts of one select() call."""

    def __init__(
        self,
        judges: Sequence[str | Judge],
        method: str = "rrf",
        weights: dict[str, float] | None = None,
        gates: Sequence[str | Gate] = (),
        require: Sequence[str | Gate] = (),
        min_score: Sequence[str | float | MinScore] = (),
        min_margin: float | None = None,
        missing: str = "skip",
        store: str | os.PathLike[str] | None = None,
        **combine_options: Any,
    ) -> None:
        from judge.registry import load_judge
        from judge.scoring import check_judge_names
        from judge.store import ScoreStore

        self.judges = [load_judge(j) if isinstance(j, str) else j for j in judges]
        if not self.judges:
            raise JudgeError("BestOfN needs at least one judge")
        check_judge_names(self.judges)
        self.combine_config = CombineConfig(
            method=method, weights=dict(weights or {}), missing=missing,
            gates=[g if isinstance(g, Gate) else Gate.parse(g) for g in gates], **combine_options,
        )
        self.combine_config.plan([j.name for j in self.judges])  # fail now, not mid-training
        self.select_config = SelectConfig(
            min_score=[m if isinstance(m, MinScore) else MinScore.parse(str(m)) for m in min_score],
            require=[g if isinstance(g, Gate) else Gate.parse(g) for g in require],
            min_margin=min_margin,
        )
        self.select_config.validate()
        self.store = ScoreStore(store) if store is not None else None

    def select(
        self,
        prompts: Sequence[Prompt],
        candidates_per_prompt: Sequence[Sequence[str]],
        references: Sequence[str | None] | None = None,
    ) -> list[Selection]:
        """One Selection per prompt: the best candidate by the combined judges, or a rejection."""
        from judge.ranking import rank_records
        from judge.scoring import score_groups

        if len(prompts) != len(candidates_per_prompt):
            raise JudgeError(f"{len(prompts)} prompts but {len(candidates_per_prompt)} candidate lists")
        if references is not None and len(references) != len(prompts):
            raise JudgeError(f"{len(prompts)} prompts but {len(references)} references")
        groups = []
        for i, (prompt, cands) in enumerate(zip(prompts, candidates_per_prompt)):
            if not cands:
                raise JudgeError(f"prompt {i} has no candidates")
            ref = None if references is None or references[i] is None else str(references[i])
            groups.append(Group(id=str(i), prompt=prompt, candidates=[Candidate(str(t)) for t in cands], reference=ref))
        ranked = rank_records(score_groups(groups, self.judges, self.store), self.combine_config)
        out = []
        for rec in ranked:
            sel = select_group(rec, self.select_config)
            best = sel.chosen[0] if sel.chosen else None
            out.append(Selection(
                index=best,
                text=None if best is None else rec["candidates"][best] if isinstance(rec["candidates"][best], str)
                else rec["candidates"][best]["text"],
                score=None if best is None else rec["combined"][best],
                scores={} if best is None else {j: v[best] for j, v in rec["scores"].items()},
                accepted=sel.reason is None, reason=sel.reason, ranking=rec["ranking"], combined=rec["combined"],
                pairs=sel.pairs,
            ))
        return out

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        for j in self.judges:
            getattr(j, "close", lambda: None)()

    def __enter__(self) -> BestOfN:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
