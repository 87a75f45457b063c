"""judge: score, combine, compare and select candidate rationales (STaR / best-of-N).

The public API is imported lazily so `import judge` stays light (no torch, no pandas):
    judge.score(data, ["verify:gsm8k"]), judge.load_judge("rm:./my-rm")."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "score": "judge.scoring:score",
    "load_judge": "judge.registry:load_judge",
    "parse_spec": "judge.registry:parse_spec",
    "read_groups": "judge.io:read_groups",
    "Group": "judge.records:Group",
    "Candidate": "judge.records:Candidate",
    "Item": "judge.records:Item",
    "Score": "judge.records:Score",
    "JudgeError": "judge.errors:JudgeError",
    "InputError": "judge.errors:InputError",
    "SpecError": "judge.errors:SpecError",
    "rank": "judge.ranking:rank",
    "best_of_n": "judge.ranking:best_of_n",
    "BestOfN": "judge.bestofn:BestOfN",
    "Selection": "judge.bestofn:Selection",
    "agree": "judge.agreement:agree_records",
    "convert": "judge.datasets:convert",
    "train_sft": "judge.sft:train",
    "SFTConfig": "judge.sft:SFTConfig",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'judge' has no attribute {name!r}")
    import importlib

    module, _, attr = _LAZY[name].partition(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
