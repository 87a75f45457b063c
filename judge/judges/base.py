"""The Judge protocol and a small base class.

A judge has one method, score_batch(items) -> list[Score] (same length, same order):
batching, concurrency and retries live inside the judge, so the pipeline sees one
synchronous call. Options come from a spec (`KIND:TARGET[@URL],key=value`) and are parsed
into a per-judge dataclass, so unknown keys get a "did you mean" error for free."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

from judge.errors import SpecError
from judge.records import Item, Score


@runtime_checkable
class Judge(Protocol):
    name: str
    fingerprint: str

    def score_batch(self, items: Sequence[Item]) -> list[Score]: ...


@dataclasses.dataclass(frozen=True)
class JudgeSpec:
    """A parsed `--judge [NAME=]KIND:TARGET[@URL][,key=value...]`."""

    kind: str
    target: str | None = None
    url: str | None = None
    options: dict[str, str] = dataclasses.field(default_factory=dict)
    name: str | None = None
    text: str = ""

    @property
    def display_name(self) -> str:
        return self.name or self.kind


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(kind: str, key: str, raw: str, typ: Any) -> Any:
    """Convert a spec option string to the dataclass field's type."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if raw.lower() in {"none", "null", ""}:
            return None
        typ = args[0]
    try:
        if typ is bool:
            low = raw.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError
        if typ is int:
            return int(raw)
        if typ is float:
            return float(raw)
    except ValueError:
        name = getattr(typ, "__name__", str(typ))
        raise SpecError(f"{kind}: option {key}={raw!r} is not a valid {name}") from None
    return raw


def parse_options(kind: str, options_cls: type, options: dict[str, str]) -> Any:
    """Build an options dataclass from spec strings; unknown keys get "did you mean"."""
    fields = {f.name: f for f in dataclasses.fields(options_cls)}
    hints = typing.get_type_hints(options_cls)
    values: dict[str, Any] = {}
    for key, raw in options.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(sorted(fields)) or "none"
            raise SpecError(f"{kind}: unknown option {key!r}{hint}; options are: {known}")
        values[key] = _convert(kind, key, raw, hints[key])
    return options_cls(**values)


@dataclasses.dataclass
class NoOptions:
    pass


class BaseJudge:
    """Shared plumbing: name, options parsing and a fingerprint from kind+target+options.

    Subclasses set `kind`, `Options` and implement score_batch. `batch_size` tells the
    pipeline how many items to hand over at once (the judge may re-batch inside)."""

    kind: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    description: ClassVar[str] = ""
    version: ClassVar[str] = "1"  # bump when a change to the judge's logic changes its scores
    batch_size: int = 256

    def __init__(self, spec: JudgeSpec) -> None:
        self.spec = spec
        self.name = spec.display_name
        self.options = parse_options(self.kind, self.Options, spec.options)

    @property
    def fingerprint(self) -> str:
        """Stable identity for the score store: same fingerprint, same scores."""
        ident = {
            "kind": self.kind,
            "version": self.version,
            "target": self.spec.target,
            "url": self.spec.url,
            "options": dataclasses.asdict(self.options),
            **self.fingerprint_extra(),
        }
        digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return f"{self.kind}:{self.spec.target or ''}:{digest}"

    def fingerprint_extra(self) -> dict[str, Any]:
        """Anything beyond the spec that changes scores (model hash, rubric version)."""
        return {}

    def score_batch(self, items: Sequence[Item]) -> list[Score]:
        raise NotImplementedError

    def score_one(self, item: Item) -> Score:
        return self.score_batch([item])[0]

    def close(self) -> None:
        """Release resources (HTTP clients, GPU memory). Safe to call twice."""

    def summary(self) -> dict[str, Any]:
        """Extra per-run figures for the summary table (e.g. truncated count)."""
        return {}
