"""`field`: an imported judge. It reads per-candidate scores that are already in the input,
e.g. `field:meta.gpt35` for the PandaLM gpt-3.5 verdicts that `judge data convert` puts in
meta, so an external judge's verdicts sit beside ours in `judge agree`.

The target is a dotted path into the group's `meta`: a list gives one value per candidate
(indexed by position); a dict is looked up by position as a string. A missing or non-numeric
value is an error for that candidate, never a zero. The score depends on meta, not only on
the text, so the judge keys the store by the imported value too (item_key)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any, ClassVar

from judge.errors import SpecError
from judge.judges.base import BaseJudge, JudgeSpec
from judge.records import Item, Score


@dataclasses.dataclass
class FieldOptions:
    scale: float = 1.0
    """Multiply imported values (e.g. -1 when the imported judge ranks lower = better)."""


class FieldJudge(BaseJudge):
    kind: ClassVar[str] = "field"
    Options: ClassVar[type] = FieldOptions
    batch_size = 4096

    def __init__(self, spec: JudgeSpec) -> None:
        super().__init__(spec)
        if not spec.target:
            raise SpecError("field: give the path of the scores, e.g. field:meta.gpt35")
        path = spec.target.split(".")
        if path[0] == "meta":
            path = path[1:]
        if not path or not all(path):
            raise SpecError(f"field: bad path {spec.target!r}; expected meta.KEY[.KEY...]")
        self.path = path
        if spec.name is None:
            self.name = path[-1]

    def score_batch(self, items: Sequence[Item]) -> list[Score]:
        return [self._one(item) for item in items]

    def item_key(self, item: Item) -> str:
        """Store key: the same text with another imported value is another item."""
        raw = self._raw(item)
        payload = json.dumps([item.key, raw if not isinstance(raw, Score) else raw.error], sort_keys=True, default=str)
        return "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def _raw(self, item: Item) -> Any:
        """The imported value for this candidate, or a failed Score saying why there is none."""
        value: Any = item.meta or {}
        for i, key in enumerate(self.path):
            if not isinstance(value, dict) or key not in value:
                return Score.failed(f"meta.{'.'.join(self.path[: i + 1])} not in the record")
            value = value[key]
        if isinstance(value, list):
            if item.index >= len(value):
                return Score.failed(f"meta.{'.'.join(self.path)} has {len(value)} values, candidate {item.index} has none")
            return value[item.index]
        if isinstance(value, dict):
            return value.get(str(item.index))
        return value

    def _one(self, item: Item) -> Score:
        value = self._raw(item)
        if isinstance(value, Score):
            return value
        if value is None:
            return Score.failed(f"meta.{'.'.join(self.path)}: no value for candidate {item.index}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                value = float(value)
            except (TypeError, ValueError):
                return Score.failed(f"meta.{'.'.join(self.path)}: {value!r} is not a number")
        if not math.isfinite(value):
            return Score.failed(f"meta.{'.'.join(self.path)}: {value!r} is not finite")
        return Score(float(value) * self.options.scale)
