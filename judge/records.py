"""Records shared by every part of judge: a Group (one prompt and its candidates),
the Item a judge scores, and the Score it returns. Plain dataclasses, no I/O."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

Prompt = str | list[dict[str, Any]]


@dataclass
class Candidate:
    """One response/rationale to a prompt."""

    text: str
    id: str | None = None
    meta: dict[str, Any] | None = None

    def to_json(self) -> str | dict[str, Any]:
        """Plain strings stay strings so a round trip keeps the user's file shape."""
        if self.id is None and not self.meta:
            return self.text
        out: dict[str, Any] = {"text": self.text}
        if self.id is not None:
            out["id"] = self.id
        if self.meta:
            out["meta"] = self.meta
        return out


@dataclass
class Group:
    """One prompt with its N candidates, as read from one input record (DESIGN.md §3.1)."""

    id: str
    prompt: Prompt
    candidates: list[Candidate]
    reference: str | None = None
    human: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # unknown fields, carried through
    source: str = ""  # file the group came from, for messages
    line: int = 0  # first line of the group in that file

    def items(self) -> list[Item]:
        return [
            Item(self.prompt, c.text, self.reference, self.id, i, self.meta)
            for i, c in enumerate(self.candidates)
        ]

    def to_record(self) -> dict[str, Any]:
        """The normalised grouped record that scored/ranked outputs extend."""
        rec: dict[str, Any] = {"id": self.id, "prompt": self.prompt}
        if self.reference is not None:
            rec["reference"] = self.reference
        rec["candidates"] = [c.to_json() for c in self.candidates]
        if self.human is not None:
            rec["human"] = self.human
        if self.meta:
            rec["meta"] = self.meta
        rec.update(self.extra)
        return rec


@dataclass(frozen=True)
class Item:
    """What a judge scores: one candidate in the context of its prompt."""

    prompt: Prompt
    response: str
    reference: str | None = None
    group_id: str = ""
    index: int = 0
    meta: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        """Content hash of prompt + response + reference: the store key (algorithm named)."""
        payload = json.dumps([self.prompt, self.response, self.reference], sort_keys=True, ensure_ascii=False)
        return "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()

    @property
    def prompt_text(self) -> str:
        """The prompt flattened to text, for judges that do not read chat messages."""
        if isinstance(self.prompt, str):
            return self.prompt
        return "\n\n".join(str(m.get("content", "")) for m in self.prompt)


@dataclass
class Score:
    """A judge's verdict on one item. value None means failed (error) or abstained."""

    value: float | None
    error: str | None = None
    abstained: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.value is not None

    def judgement(self) -> dict[str, Any]:
        """The per-candidate entry of `judgements` in scored output."""
        out = dict(self.details)
        if self.error is not None:
            out["error"] = self.error
        if self.abstained:
            out["abstained"] = True
        return out

    @classmethod
    def failed(cls, error: str, **details: Any) -> Score:
        return cls(None, error=error, details=details)
