"""Reading candidates and writing results.

Readers stream: a JSONL file is read line by line, Parquet in record batches and CSV in
chunks, so a million-line file never sits in memory. Every bad record raises an InputError
naming file:line:field. Writers append line by line and flush, so a killed run keeps what
it wrote."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from judge.errors import InputError
from judge.records import Candidate, Group


@dataclass
class BadRecord:
    """A record that could not be read; yielded instead of raising with on_bad_input='skip'."""

    error: InputError
    raw: str


def _check_messages(path: str, line: int, field: str, messages: Any) -> None:
    if not messages:
        raise InputError(path, line, field, "chat prompt is an empty list")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise InputError(path, line, f"{field}[{i}]", f"expected a message object, got {type(msg).__name__}")
        if msg.get("role") not in {"system", "user", "assistant", "tool"}:
            raise InputError(path, line, f"{field}[{i}].role", f"expected system/user/assistant, got {msg.get('role')!r}")
        if not isinstance(msg.get("content"), str):
            raise InputError(path, line, f"{field}[{i}].content", "must be a string")


def _prompt(path: str, line: int, rec: dict[str, Any], field: str = "prompt") -> Any:
    if field not in rec or rec[field] is None:
        raise InputError(path, line, field, "missing")
    prompt = rec[field]
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        _check_messages(path, line, field, prompt)
        return prompt
    raise InputError(path, line, field, f"must be a string or a list of chat messages, got {type(prompt).__name__}")


def _candidate(path: str, line: int, field: str, value: Any) -> Candidate:
    if isinstance(value, str):
        return Candidate(value)
    if isinstance(value, dict):
        text = value.get("text")
        if not isinstance(text, str):
            raise InputError(path, line, f"{field}.text", "missing or not a string")
        cid = value.get("id")
        meta = value.get("meta")
        if meta is not None and not isinstance(meta, dict):
            raise InputError(path, line, f"{field}.meta", "must be an object")
        return Candidate(text, None if cid is None else str(cid), meta)
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        # A chat-format completion ([{"role": "assistant", "content": ...}]): take the assistant text.
        _check_messages(path, line, field, value)
        return Candidate(value[-1]["content"])
    raise InputError(path, line, field, f"must be a string or an object with 'text', got {type(value).__name__}")


def _meta(path: str, line: int, rec: dict[str, Any]) -> dict[str, Any]:
    meta = rec.get("meta") or {}
    if not isinstance(meta, dict):
        raise InputError(path, line, "meta", "must be an object")
    return meta


def _reference(path: str, line: int, rec: dict[str, Any]) -> str | None:
    ref = rec.get("reference")
    if ref is None:
        return None
    if isinstance(ref, (int, float)) and not isinstance(ref, bool):
        return str(ref)
    if not isinstance(ref, str):
        raise InputError(path, line, "reference", f"must be a string, got {type(ref).__name__}")
    return ref


_GROUPED_KNOWN = {"id", "prompt", "reference", "candidates", "human", "meta"}


def parse_grouped(path: str, line: int, rec: dict[str, Any], fallback_id: str) -> Group:
    """A grouped record: {"id", "prompt", "candidates": [...], ...} (DESIGN.md §3.1)."""
    cands = rec["candidates"]
    if not isinstance(cands, list):
        raise InputError(path, line, "candidates", f"must be a list, got {type(cands).__name__}")
    if not cands:
        raise InputError(path, line, "candidates", "empty list: a prompt needs at least one candidate")
    gid = rec.get("id", fallback_id)
    return Group(
        id=str(gid),
        prompt=_prompt(path, line, rec),
        candidates=[_candidate(path, line, f"candidates[{i}]", c) for i, c in enumerate(cands)],
        reference=_reference(path, line, rec),
        human=rec.get("human"),
        meta=_meta(path, line, rec),
        extra={k: v for k, v in rec.items() if k not in _GROUPED_KNOWN},
        source=path,
        line=line,
    )


def parse_preference(path: str, line: int, rec: dict[str, Any], fallback_id: str) -> Group:
    """A TRL/hh-rlhf style row {"prompt", "chosen", "rejected"}: two candidates, human.choice=0."""
    if "prompt" not in rec:
        raise InputError(path, line, "prompt", "missing (a chosen/rejected row needs its prompt)")
    chosen = _candidate(path, line, "chosen", rec.get("chosen"))
    rejected = _candidate(path, line, "rejected", rec.get("rejected"))
    extra = {k: v for k, v in rec.items() if k not in _GROUPED_KNOWN | {"chosen", "rejected"}}
    return Group(
        id=str(rec.get("id", fallback_id)),
        prompt=_prompt(path, line, rec),
        candidates=[chosen, rejected],
        reference=_reference(path, line, rec),
        human=rec.get("human", {"choice": 0}),
        meta=_meta(path, line, rec),
        extra=extra,
        source=path,
        line=line,
    )


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any] | InputError, str]]:
    """(line number, parsed dict or the error, raw text) for each record of a file."""
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    if suffix in {".parquet", ".csv", ".tsv"}:
        yield from _table_records(path, suffix)
        return
    opener = _open_gz if path.suffix == ".gz" else (lambda p: open(p, "rb"))
    with opener(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield lineno, InputError(str(path), lineno, None, f"invalid UTF-8 at byte {exc.start}"), repr(raw[:200])
                continue
            if not text.strip():
                continue
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as exc:
                yield lineno, InputError(str(path), lineno, None, f"invalid JSON: {exc.msg} (column {exc.colno})"), text
                continue
            if not isinstance(rec, dict):
                yield lineno, InputError(str(path), lineno, None, f"expected a JSON object, got {type(rec).__name__}"), text
                continue
            yield lineno, rec, text


def _open_gz(path: Path) -> IO[bytes]:
    import gzip

    return gzip.open(path, "rb")


def _table_records(path: Path, suffix: str) -> Iterator[tuple[int, dict[str, Any] | InputError, str]]:
    """Parquet/CSV rows through pandas/pyarrow, in chunks; line = row number + 1 (CSV: +header)."""
    import pandas as pd

    def decode(row: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key, value in row.items():
            if isinstance(value, float) and value != value:  # NaN from an empty cell
                continue
            if hasattr(value, "tolist"):
                value = value.tolist()
            if isinstance(value, str) and key in {"candidates", "prompt", "human", "meta"} and value[:1] in "[{":
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    pass
            out[key] = value
        return out

    row_no = 1 if suffix != ".parquet" else 0
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        chunks = (batch.to_pandas() for batch in pq.ParquetFile(path).iter_batches(batch_size=4096))
    else:
        chunks = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", chunksize=4096, dtype=str, keep_default_na=False)
    for frame in chunks:
        for row in frame.to_dict(orient="records"):
            row_no += 1
            yield row_no, decode(row), json.dumps(row, default=str)[:2000]


def read_groups(path: str | os.PathLike[str], skip_bad: bool = False) -> Iterator[Group | BadRecord]:
    """Stream groups from a candidates file in any of the formats of DESIGN.md §3.1.

    Flat rows {"id", "prompt", "response"} are grouped by consecutive id. With skip_bad,
    bad records are yielded as BadRecord (in input order) instead of raising."""
    path = Path(path)
    if not path.exists():
        raise InputError(str(path), None, None, "file not found")
    spath = str(path)
    pending: Group | None = None
    count = 0
    for lineno, rec, raw in _records(path):
        try:
            if isinstance(rec, InputError):
                raise rec
            count += 1
            fallback = str(count)
            if "candidates" in rec:
                group = parse_grouped(spath, lineno, rec, fallback)
            elif "chosen" in rec or "rejected" in rec:
                group = parse_preference(spath, lineno, rec, fallback)
            elif "response" in rec:
                if "id" not in rec:
                    raise InputError(spath, lineno, "id", "missing (flat rows are grouped by id)")
                gid = str(rec["id"])
                if pending is not None and pending.id == gid:
                    pending.candidates.append(_candidate(spath, lineno, "response", rec["response"]))
                    continue
                group = parse_grouped(spath, lineno, {**rec, "id": gid, "candidates": [rec["response"]]}, gid)
                group.extra.pop("response", None)
                if pending is not None:
                    yield pending
                pending = group
                continue
            elif "prompt" not in rec:
                raise InputError(spath, lineno, "prompt", "missing")
            else:
                raise InputError(spath, lineno, "candidates", "missing (or give 'response' rows, or 'chosen'/'rejected')")
        except InputError as err:
            if not skip_bad:
                raise
            yield BadRecord(err, raw if isinstance(raw, str) else str(raw))
            continue
        if pending is not None:
            yield pending
            pending = None
        yield group
    if pending is not None:
        yield pending


def iter_valid_groups(path: str | os.PathLike[str]) -> Iterator[Group]:
    """Groups only; the first bad record raises."""
    for g in read_groups(path):
        assert isinstance(g, Group)
        yield g


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Plain JSONL objects with file:line errors (for scored/ranked files)."""
    for _line, rec, _ in _records(Path(path)):
        if isinstance(rec, InputError):
            raise rec
        yield rec


def dumps(record: dict[str, Any]) -> str:
    """One canonical JSON line: the same record always serialises to the same bytes."""
    return json.dumps(record, ensure_ascii=False, allow_nan=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class JsonlWriter:
    """Append-only JSONL writer. Each write ends with a flush, so SIGKILL loses nothing written."""

    def __init__(self, path: str | os.PathLike[str], append: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a" if append else "w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(dumps(record) + "\n")
        self._fh.flush()

    def sync(self) -> None:
        """fsync: survive a power cut too, not only a killed process (called per batch)."""
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def complete_lines(path: str | os.PathLike[str]) -> int:
    """Count complete lines and cut off a torn last line (a write killed half-way)."""
    path = Path(path)
    if not path.exists():
        return 0
    count, good_end = 0, 0
    with open(path, "rb") as fh:
        pos = 0
        for raw in fh:
            pos += len(raw)
            if raw.endswith(b"\n"):
                count += 1
                good_end = pos
    if good_end != path.stat().st_size:
        with open(path, "r+b") as fh:
            fh.truncate(good_end)
    return count


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write a JSON file atomically (configs, reports)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=_json_default) + "\n", encoding="utf-8")
    os.replace(tmp, path)
