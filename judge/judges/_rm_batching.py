"""Pure helpers of the `rm:` judge: truncation that keeps framing special tokens, length-
sorted token-budget batching, padding with position ids, process-step splitting and
reduction, head weights, and a cheap identity of a model's files for the fingerprint.

Kept apart from reward_model.py so each piece can be read (and tested) on its own; only
collate() touches torch."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from judge.errors import SpecError


@dataclass
class Encoded:
    """One sequence ready for the model: token ids, optional token types, where to read."""

    ids: list[int]
    types: list[int] | None = None
    truncated: bool = False
    reads: list[int] = field(default_factory=list)  # positions whose score is read; [] = last token


def _run(ids: Sequence[int], specials: set[int], from_end: bool) -> int:
    """Length of the run of special tokens at the start (or end) of ids."""
    seq = reversed(ids) if from_end else iter(ids)
    n = 0
    for tok in seq:
        if tok not in specials:
            break
        n += 1
    return n


def kept_positions(ids: Sequence[int], max_length: int, side: str, specials: set[int]) -> list[int] | None:
    """Positions that survive cutting ids to max_length on `side` (None: nothing is cut).

    Framing special tokens at that end are kept: side="left" drops the start but keeps the
    leading BOS/CLS/role tokens and the end of the response, where a reward model reads its
    score; side="right" drops the end but keeps the trailing EOS/SEP."""
    n = len(ids)
    if n <= max_length:
        return None
    if side == "left":
        head = min(_run(ids, specials, from_end=False), max_length - 1)
        return list(range(head)) + list(range(n - (max_length - head), n))
    tail = min(_run(ids, specials, from_end=True), max_length - 1)
    return list(range(max_length - tail)) + list(range(n - tail, n))


def truncate(
    ids: list[int], types: list[int] | None, max_length: int, side: str, specials: set[int]
) -> tuple[list[int], list[int] | None, bool]:
    """ids (and token types) cut by kept_positions(); the flag says whether anything was cut."""
    keep = kept_positions(ids, max_length, side, specials)
    if keep is None:
        return ids, types, False
    return [ids[i] for i in keep], ([types[i] for i in keep] if types is not None else None), True


def plan_batches(lengths: Sequence[int], batch_tokens: int, max_rows: int) -> list[list[int]]:
    """Indices grouped into batches: longest first, each batch padded size <= batch_tokens.

    Sorting by length makes neighbours nearly equal in length, so padding to each batch's
    longest wastes little; a token budget (not a fixed count) keeps every batch about the
    same cost, so short texts go in large batches and long ones in small. Longest first so
    an out-of-memory shows up on the first batch, not after an hour."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        if current and ((len(current) + 1) * longest > batch_tokens or len(current) >= max_rows):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def padded_tokens(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> int:
    """Tokens the model processes when each batch is padded to its longest."""
    return sum(len(b) * max(lengths[i] for i in b) for b in batches if b)


def collate(seqs: Sequence[Encoded], pad_id: int, side: str) -> dict[str, Any]:
    """Pad to the batch's longest on `side`; position ids follow the attention mask.

    With left padding a GPT-2-style model would otherwise give the first real token
    position k (the pad count), and its score would change with the batch around it."""
    import torch

    width = max(len(s.ids) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    has_types = any(s.types is not None for s in seqs)
    types = torch.zeros((len(seqs), width), dtype=torch.long) if has_types else None
    offsets = []
    for row, s in enumerate(seqs):
        n = len(s.ids)
        start = width - n if side == "left" else 0
        offsets.append(start)
        ids[row, start : start + n] = torch.tensor(s.ids, dtype=torch.long)
        mask[row, start : start + n] = 1
        if types is not None and s.types is not None:
            types[row, start : start + n] = torch.tensor(s.types, dtype=torch.long)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = {"input_ids": ids, "attention_mask": mask, "position_ids": positions, "offsets": offsets}
    if types is not None:
        out["token_type_ids"] = types
    return out


# ----------------------------------------------------------------------------- process steps
def step_ends(text: str, sep: str) -> list[int]:
    """End offsets of the non-blank steps of text split by sep (prefix k = text[:ends[k]])."""
    ends, pos = [], 0
    for part in text.split(sep):
        end = pos + len(part)
        if part.strip():
            ends.append(end)
        pos = end + len(sep)
    return ends


def reduce_steps(values: Sequence[float], how: str) -> float:
    """Combine per-step scores: min / last / mean of raw scores; prod of sigmoid(score).

    "Let's Verify Step by Step" scores a solution by the product (or minimum) of per-step
    correctness probabilities; a product of raw logits would mean nothing, so prod maps
    each score through a sigmoid first and returns a probability."""
    if not values:
        raise ValueError("no steps")
    if how == "min":
        return min(values)
    if how == "last":
        return values[-1]
    if how == "mean":
        return sum(values) / len(values)
    if how == "prod":
        return math.prod(1.0 / (1.0 + math.exp(-v)) for v in values)
    raise ValueError(how)


# ----------------------------------------------------------------------------- multi-output heads
_CONFIG_WEIGHT_KEYS = ("reward_weights", "attribute_weights", "score_weights")


def resolve_weights(raw: str | None, labels: list[str], config: Any) -> list[float] | None:
    """Weights that turn a multi-output head into one score: from `weights=` or the config.

    `weights=0.3;0.74;-0.33` (in label order) or `weights=helpfulness:0.3;verbosity:-0.33`
    (unnamed labels weigh 0). Semicolons because commas separate spec options."""
    n = len(labels)
    if raw is None:
        for key in _CONFIG_WEIGHT_KEYS:
            value = getattr(config, key, None)
            if value is not None:
                raw_value = value
                break
        else:
            return None
        if isinstance(raw_value, dict):
            raw = ";".join(f"{k}:{v}" for k, v in raw_value.items())
        else:
            raw = ";".join(str(v) for v in raw_value)
    parts = [p.strip() for p in raw.replace("|", ";").split(";") if p.strip()]
    try:
        if parts and all(":" in p for p in parts):
            named = {k.strip(): float(v) for k, v in (p.rsplit(":", 1) for p in parts)}
            unknown = sorted(set(named) - set(labels))
            if unknown:
                raise SpecError(f"rm: weights name unknown outputs {unknown}; the model's outputs are {labels}")
            return [named.get(label, 0.0) for label in labels]
        values = [float(p) for p in parts]
    except ValueError:
        raise SpecError(f"rm: weights={raw!r} must be numbers separated by ';' (or label:number;...)") from None
    if len(values) != n:
        raise SpecError(f"rm: weights has {len(values)} numbers but the model has {n} outputs {labels}")
    return values


# ----------------------------------------------------------------------------- model identity
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_SMALL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                "chat_template.jinja", "chat_template.json", "vocab.txt", "merges.txt", "spm.model",
                "tokenizer.model", "vocab.json")
_SAMPLES = 16
_SAMPLE_BYTES = 4096


def model_digest(folder: str | os.PathLike[str]) -> str:
    """Identity of a model folder's weights, config and tokenizer, without reading it all.

    Small files (config, tokenizer, chat template) are hashed whole. A weight file is
    identified by its size, its safetensors header (names, shapes, dtypes) and 16 blocks of
    4 KiB spread through it: two trainings of one architecture share sizes and headers but
    not bytes, and reading 64 KiB is instant where hashing 15 GB would take a minute."""
    root = Path(folder)
    h = hashlib.sha256()
    for name in _SMALL_FILES:
        p = root / name
        if p.is_file():
            h.update(name.encode() + b"\0" + p.read_bytes() + b"\0")
    for p in sorted(root.iterdir()):
        if not p.is_file() or not p.name.endswith(_WEIGHT_SUFFIXES):
            continue
        size = p.stat().st_size
        h.update(f"{p.name}\0{size}\0".encode())
        with open(p, "rb") as fh:
            if p.suffix == ".safetensors" and size >= 8:
                n = int.from_bytes(fh.read(8), "little")
                if 0 < n <= min(size - 8, 100_000_000):
                    h.update(fh.read(n))
            for k in range(_SAMPLES):
                fh.seek(max(0, (size - _SAMPLE_BYTES) * k // max(1, _SAMPLES - 1)))
                h.update(fh.read(_SAMPLE_BYTES))
    return "sha256:" + h.hexdigest()


def config_labels(config: Any) -> list[str]:
    """Output names of a classification head (id2label, or output_0.. when unnamed)."""
    n = int(getattr(config, "num_labels", 1) or 1)
    id2label = getattr(config, "id2label", None) or {}
    names = [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(n)]
    return names

