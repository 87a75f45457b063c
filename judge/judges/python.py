"""`python`: a judge written in the user's own code, without packaging an entry point.

`--judge python:my_judges.py:MyJudge` (a file) or `python:my_pkg.judges:reward_fn` (a module).
The target is either a class following the Judge protocol, built with the JudgeSpec, or a
plain function `fn(items) -> list[float | None]` (TRL's "batch in, floats out" reward
function). The fingerprint includes a hash of the source file, so editing it invalidates
cached scores."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from judge.errors import SpecError
from judge.judges.base import BaseJudge, JudgeSpec
from judge.records import Item, Score


def load_object(target: str) -> tuple[Any, str | None]:
    """Import `module.path:Name` or `path/to/file.py:Name`; also return its source file."""
    where, sep, attr = target.rpartition(":")
    if not sep or not where or not attr:
        raise SpecError(f"python: target must be MODULE:NAME or FILE.py:NAME, got {target!r}")
    if where.endswith(".py"):
        path = Path(where)
        if not path.exists():
            raise SpecError(f"python: file not found: {where}")
        spec = importlib.util.spec_from_file_location(f"judge_user_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as exc:
            raise SpecError(f"python: cannot import {where!r}: {exc}") from exc
    if not hasattr(module, attr):
        raise SpecError(f"python: {where} has no {attr!r}")
    return getattr(module, attr), getattr(module, "__file__", None)


class PythonJudge(BaseJudge):
    kind: ClassVar[str] = "python"

    def __init__(self, spec: JudgeSpec) -> None:
        if not spec.target:
            raise SpecError("python: give a target, e.g. python:my_judges.py:MyJudge")
        self.spec = spec
        self.name = spec.display_name
        self.options = spec.options  # free-form: passed on to the user's class
        obj, source = load_object(spec.target)
        self._inner = obj(spec) if inspect.isclass(obj) else None
        self._fn = None if inspect.isclass(obj) else obj
        self.batch_size = int(getattr(self._inner, "batch_size", 256))
        self._source_hash = hashlib.sha256(Path(source).read_bytes()).hexdigest()[:16] if source else ""

    @property
    def fingerprint(self) -> str:
        inner = getattr(self._inner, "fingerprint", None)
        return f"python:{self.spec.target}:{self._source_hash}:{inner or sorted(self.options.items())}"

    def score_batch(self, items: Sequence[Item]) -> list[Score]:
        if self._inner is not None:
            return list(self._inner.score_batch(items))
        values = list(self._fn(list(items)))  # type: ignore[misc]
        return [v if isinstance(v, Score) else Score(None if v is None else float(v)) for v in values]

    def summary(self) -> dict[str, Any]:
        return dict(getattr(self._inner, "summary", dict)())

    def close(self) -> None:
        getattr(self._inner, "close", lambda: None)()
