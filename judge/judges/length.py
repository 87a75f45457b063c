"""`length`: the "longer is better" baseline. Any judge worth using must beat it, and its
correlation with other judges is the length-bias diagnostic."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from judge.errors import SpecError
from judge.judges.base import BaseJudge, JudgeSpec
from judge.records import Item, Score


class LengthJudge(BaseJudge):
    kind: ClassVar[str] = "length"
    batch_size = 4096

    def __init__(self, spec: JudgeSpec) -> None:
        super().__init__(spec)
        self.unit = spec.target or "chars"
        if self.unit not in {"chars", "words"}:
            raise SpecError(f"length: unit must be 'chars' or 'words', not {self.unit!r}")

    def score_batch(self, items: Sequence[Item]) -> list[Score]:
        if self.unit == "words":
            return [Score(float(len(i.response.split()))) for i in items]
        return [Score(float(len(i.response))) for i in items]
