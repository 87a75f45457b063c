"""SFT data: read accepted rows, tokenise with completion-only labels, and batch or pack them.

Rows are TRL's prompt–completion format (DESIGN.md §3.4): a string prompt with a string
completion, or a list of chat messages with `[{"role": "assistant", "content": ...}]`.
Labels are -100 on every prompt token, so the loss only sees the completion (and its EOS).
Batches are planned per optimizer step from the seed alone, so a resumed run rebuilds the
very same plan and skips to its step."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from judge.errors import InputError, JudgeError
from judge.io import _records

IGNORE = -100  # the label value torch's cross_entropy skips


@dataclass
class Example:
    """One tokenised row: input ids, labels (-100 on the prompt) and where it came from.

    int32 arrays, not lists: a million rows of Python ints would take ~10x the memory."""

    input_ids: Any  # numpy int32 array
    labels: Any
    line: int

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class Batch:
    """One forward pass: [rows, length] tensors; position ids restart at 0 for each packed example."""

    input_ids: Any
    labels: Any
    position_ids: Any
    attention_mask: Any | None  # None when packed: the model derives block-diagonal attention from position ids
    tokens: int  # real (non-pad) tokens
    examples: int


def _message_list(path: str, line: int, field: str, value: list[Any]) -> list[dict[str, str]]:
    if not value:
        raise InputError(path, line, field, "empty list of messages")
    for i, msg in enumerate(value):
        if not isinstance(msg, dict) or not isinstance(msg.get("content"), str):
            raise InputError(path, line, f"{field}[{i}]", "expected {'role': ..., 'content': '...'}")
        if msg.get("role") not in {"system", "user", "assistant", "tool"}:
            raise InputError(path, line, f"{field}[{i}].role", f"expected system/user/assistant/tool, got {msg.get('role')!r}")
    return value


def read_rows(path: str | Path) -> list[tuple[int, Any, Any]]:
    """(line, prompt, completion) for every row of an accepted.jsonl; bad rows raise with file:line."""
    path = Path(path)
    if not path.exists():
        raise InputError(str(path), None, None, "file not found")
    rows = []
    for line, rec, _raw in _records(path):
        if isinstance(rec, InputError):
            raise rec
        for field in ("prompt", "completion"):
            if rec.get(field) is None:
                hint = " (SFT reads judge best-of-n's accepted rows: {\"prompt\", \"completion\"})"
                raise InputError(str(path), line, field, "missing" + hint)
        prompt, completion = rec["prompt"], rec["completion"]
        if isinstance(prompt, list):
            _message_list(str(path), line, "prompt", prompt)
        elif not isinstance(prompt, str):
            raise InputError(str(path), line, "prompt", f"must be a string or chat messages, got {type(prompt).__name__}")
        if isinstance(completion, list):
            _message_list(str(path), line, "completion", completion)
            text = "".join(m["content"] for m in completion)
        elif isinstance(completion, str):
            text = completion
        else:
            raise InputError(str(path), line, "completion", f"must be a string or chat messages, got {type(completion).__name__}")
        if not text.strip():
            raise InputError(str(path), line, "completion", "empty: there is nothing to learn from this row")
        rows.append((line, prompt, completion))
    if not rows:
        raise InputError(str(path), None, None, "no rows: an SFT run needs at least one prompt/completion row")
    return rows


def _texts(tokenizer: Any, prompt: Any, completion: Any) -> tuple[str, str, bool]:
    """(prompt text, completion text, add special tokens to the prompt?) for one row.

    A chat prompt is rendered with the model's chat template; the completion is whatever the
    full conversation adds after the generation prompt, so turn-end tokens are learned too."""
    if isinstance(prompt, str):
        text = completion if isinstance(completion, str) else "".join(m["content"] for m in completion)
        return prompt, text, True
    if not getattr(tokenizer, "chat_template", None):
        raise JudgeError("chat-format prompts need a tokenizer with a chat template; this model has none "
                         "(give string prompts, or a model whose tokenizer_config.json has chat_template)")
    reply = completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}]
    head = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(prompt + reply, tokenize=False)
    if not full.startswith(head):
        raise JudgeError("the chat template renders the prompt differently once the reply is added, so the "
                         "completion cannot be split off; give string prompts instead")
    return head, full[len(head):], False


@dataclass
class Tokenised:
    """The tokenised data and what happened on the way."""

    examples: list[Example]
    truncated: int  # rows cut at max_length (their completion kept in part)
    dropped: int  # rows whose prompt alone fills max_length: no completion token left to learn


def tokenise(tokenizer: Any, rows: list[tuple[int, Any, Any]], max_length: int) -> Tokenised:
    """Completion-only labels for every row; EOS appended; over-long rows truncated and counted."""
    if tokenizer.eos_token_id is None:
        raise JudgeError("the tokenizer has no eos_token: set one, or the model never learns to stop")
    texts = [_texts(tokenizer, p, c) for _line, p, c in rows]
    # Batch calls on the fast tokenizer: one Rust call per group instead of one per row.
    with_special = [i for i, t in enumerate(texts) if t[2]]
    without = [i for i, t in enumerate(texts) if not t[2]]
    prompt_ids: list[list[int]] = [[] for _ in texts]
    for idx, special in ((with_special, True), (without, False)):
        if idx:
            enc = tokenizer([texts[i][0] for i in idx], add_special_tokens=special)["input_ids"]
            for i, ids in zip(idx, enc):
                prompt_ids[i] = list(ids)
    completion_ids = tokenizer([t[1] for t in texts], add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    out, truncated, dropped = [], 0, 0
    for (line, _p, _c), p_ids, c_ids in zip(rows, prompt_ids, completion_ids):
        c_ids = list(c_ids)
        if not c_ids or c_ids[-1] != eos:
            c_ids.append(eos)
        ids = p_ids + c_ids
        labels = [IGNORE] * len(p_ids) + c_ids
        if len(ids) > max_length:
            truncated += 1
            ids, labels = ids[:max_length], labels[:max_length]
        # The label at position 0 is never predicted (nothing precedes it), so a row needs a
        # completion token at position >= 1.
        if all(x == IGNORE for x in labels[1:]):
            dropped += 1
            continue
        out.append(Example(np.asarray(ids, dtype=np.int32), np.asarray(labels, dtype=np.int32), line))
    return Tokenised(out, truncated, dropped)


def split_eval(examples: list[Example], eval_rows: int, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, held out): a seeded random slice of eval_rows examples is kept for eval loss."""
    if eval_rows <= 0:
        return examples, []
    if eval_rows >= len(examples):
        raise JudgeError(f"eval_rows={eval_rows} leaves no training rows (the data has {len(examples)})")
    order = list(range(len(examples)))
    random.Random(seed ^ 0x5EED).shuffle(order)
    held = set(order[:eval_rows])
    return [e for i, e in enumerate(examples) if i not in held], [examples[i] for i in sorted(held)]


def plan_steps(examples: list[Example], epoch: int, seed: int, batch_size: int, batch_tokens: int) -> list[list[int]]:
    """The optimizer steps of one epoch: lists of example indices, from the seed and epoch only.

    A step takes examples until it has batch_size of them, or (batch_tokens > 0) until its
    tokens reach batch_tokens; a short last step is kept, so every example is seen."""
    order = list(range(len(examples)))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    steps: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for i in order:
        current.append(i)
        tokens += len(examples[i])
        if (batch_tokens > 0 and tokens >= batch_tokens) or (batch_tokens <= 0 and len(current) >= batch_size):
            steps.append(current)
            current, tokens = [], 0
    if current:
        steps.append(current)
    return steps


def rank_share(step: list[int], examples: list[Example], rank: int, world: int) -> list[int]:
    """This rank's examples of a step: sorted by length and dealt round-robin, so ranks get similar work."""
    by_length = sorted(step, key=lambda i: (len(examples[i]), i), reverse=True)
    return by_length[rank::world]


def micro_batches(share: list[int], examples: list[Example], micro_batch_size: int, packing: bool,
                  max_length: int, pad_id: int) -> list[Batch]:
    """The forward passes of one rank's share of a step.

    Without packing, examples (already length-sorted) go micro_batch_size at a time, padded on
    the right to the longest. With packing, examples are placed first-fit-decreasing into rows
    of max_length, micro_batch_size rows a pass, each example with its own position ids."""
    groups: list[list[list[int]]]
    if not packing:
        groups = [[[i] for i in share[k:k + micro_batch_size]] for k in range(0, len(share), micro_batch_size)]
    else:
        rows: list[list[int]] = []
        room: list[int] = []
        for i in sorted(share, key=lambda i: (len(examples[i]), i), reverse=True):
            n = len(examples[i])
            for r, free in enumerate(room):
                if free >= n:
                    rows[r].append(i)
                    room[r] -= n
                    break
            else:
                rows.append([i])
                room.append(max_length - n)
        groups = [rows[k:k + micro_batch_size] for k in range(0, len(rows), micro_batch_size)]
    return [_collate(g, examples, pad_id, packed=packing) for g in groups]


def _collate(rows: list[list[int]], examples: list[Example], pad_id: int, packed: bool) -> Batch:
    import torch

    width = max(sum(len(examples[i]) for i in row) for row in rows)
    n = len(rows)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    labels = torch.full((n, width), IGNORE, dtype=torch.long)
    pos = torch.zeros((n, width), dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    tokens = 0
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            ex = examples[i]
            k = len(ex)
            ids[r, at:at + k] = torch.from_numpy(ex.input_ids)
            labels[r, at:at + k] = torch.from_numpy(ex.labels)
            pos[r, at:at + k] = torch.arange(k)
            mask[r, at:at + k] = 1
            at += k
        tokens += at
        # Padding gets its own position run from 0, so in a packed row it is a separate
        # "sequence" that no real token attends to; its labels are ignored either way.
        pos[r, at:] = torch.arange(width - at)
    count = sum(len(row) for row in rows)
    return Batch(ids, labels, pos, None if packed else mask, tokens, count)
