"""The reward-response formats HTTP judges read and `judge serve` writes (DESIGN.md §4), as
pure functions: nemotron-4-340b-reward's HelpSteer2 attributes (logprobs, else the
"helpfulness:4.09,..." text), llama-3.1-nemotron-70b-reward's "reward:-19.875", parsed
leniently (a message as a list, null model). Nothing here raises on a bad response: it
becomes a failed Score with a short excerpt."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from judge.errors import SpecError
from judge.judges._http import excerpt
from judge.records import Item, Score

HELPSTEER2 = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
# nemotron-4-340b-reward model card: the single-score combination of the five attributes.
CARD_WEIGHTS = {"helpfulness": 0.3, "correctness": 0.74, "coherence": 0.46, "complexity": 0.47, "verbosity": -0.33}
_PAIR = re.compile(r"([A-Za-z_][\w\- ]*?)\s*:\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf|-inf)")


# ------------------------------------------------------------------ parsing (pure)
def parse_weights(text: str | None) -> dict[str, float]:
    """`weights=` as `name:w/name:w`, five numbers in HelpSteer2 order, or one attribute name.

    '/' or ';' separate entries because ',' already separates spec options."""
    if text is None or not text.strip():
        return dict(CARD_WEIGHTS)
    parts = [p.strip() for p in re.split(r"[/;]", text) if p.strip()]
    out: dict[str, float] = {}
    try:
        if all(":" not in p for p in parts) and all(_is_number(p) for p in parts):
            if len(parts) != len(HELPSTEER2):
                raise ValueError
            return {k: float(v) for k, v in zip(HELPSTEER2, parts)}
        for p in parts:
            name, _, w = p.partition(":")
            out[name.strip().lower()] = float(w) if w.strip() else 1.0
    except ValueError:
        raise SpecError(
            f"nemotron: weights={text!r} not understood; use e.g. weights=helpfulness:0.3/correctness:0.74, "
            "five numbers in HelpSteer2 order (0.3/0.74/0.46/0.47/-0.33), or one attribute name"
        ) from None
    return out


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _message_text(message: Any) -> str | None:
    """Content of a message that may be a dict, a list of dicts (NVIDIA), or content parts."""
    if isinstance(message, list):
        texts = [t for t in (_message_text(m) for m in message) if t]
        return ",".join(texts) if texts else None
    if isinstance(message, dict):
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            parts = [p.get("text") if isinstance(p, dict) else p for p in content]
            return ",".join(str(p) for p in parts if isinstance(p, str))
    if isinstance(message, str):
        return message
    return None


def _logprob_pairs(choice: dict[str, Any]) -> dict[str, float]:
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else logprobs
    out: dict[str, float] = {}
    if isinstance(content, list):
        for entry in content:
            if isinstance(entry, dict) and isinstance(entry.get("token"), str):
                try:
                    out[entry["token"].strip()] = float(entry["logprob"])
                except (KeyError, TypeError, ValueError):
                    continue
    return out


def _text_pairs(text: str | None) -> dict[str, float]:
    if not text:
        return {}
    return {m.group(1).strip(): float(m.group(2)) for m in _PAIR.finditer(text)}


def parse_reward_response(data: Any, weights: dict[str, float], weights_given: bool = False) -> Score:
    """One /chat/completions body (already JSON-decoded) -> Score. Never raises."""
    shown = excerpt(json.dumps(data, default=str) if not isinstance(data, str) else data)
    if not isinstance(data, dict):
        return Score.failed(f"unparseable response (not a JSON object): {shown}")
    choices = data.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else choices if isinstance(choices, dict) else None
    if not isinstance(choice, dict):
        return Score.failed(f"unparseable response (no choices): {shown}")
    pairs = _logprob_pairs(choice)
    source = "logprobs"
    if not ({k.lower() for k in pairs} & (set(weights) | {"reward"})):
        pairs, source = _text_pairs(_message_text(choice.get("message"))), "text"
    if not pairs:
        return Score.failed(f"unparseable response (no reward or attributes): {shown}")
    if any(not math.isfinite(v) for v in pairs.values()):
        return Score.failed(f"non-finite value in response: {shown}")
    lower = {k.lower(): v for k, v in pairs.items()}  # names are matched case-insensitively
    if "reward" in lower and not weights_given:
        extra = {"attributes": pairs} if len(pairs) > 1 else {}
        return Score(lower["reward"], details={"shape": "reward", **extra})
    needed = [k for k, w in weights.items() if w != 0]
    missing = [k for k in needed if k not in lower]
    if missing or not needed:
        return Score.failed(
            f"response has {', '.join(sorted(pairs))} but weights need {', '.join(missing or needed)}; "
            f"set weights= (e.g. weights={'/'.join(f'{k}:1' for k in sorted(pairs)[:2])}): {shown}"
        )
    value = sum(weights[k] * lower[k] for k in needed)
    return Score(value, details={"attributes": pairs, "shape": "attributes", "source": source})


def item_messages(item: Item) -> list[dict[str, str]]:
    """The prompt turns followed by the candidate as the assistant turn."""
    if isinstance(item.prompt, str):
        turns = [{"role": "user", "content": item.prompt}]
    else:
        turns = [{"role": str(m.get("role", "user")), "content": str(m.get("content", ""))} for m in item.prompt]
    return [*turns, {"role": "assistant", "content": item.response}]


def estimate_tokens(text: str) -> int:
    """Rough token count (4 characters a token) for --dry-run; no tokenizer is downloaded."""
    return max(1, math.ceil(len(text) / 4))
