"""Adapters from public labelled data sets to our candidates format (DESIGN.md §3.1).

Each adapter streams records (dicts ready for JSONL) with `human` labels in our shapes, so
`judge score` and `judge agree` work on them unchanged. Formats are read as published
(hh-rlhf transcripts, PandaLM / LLMBar JSON arrays, PRM800K stepwise rows, MR-GSM8K, GSM8K,
MATH-500); a bad record raises an InputError naming file, record and field."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from judge.errors import InputError
from judge.io import _records

Record = dict[str, Any]


@dataclass(frozen=True)
class Adapter:
    """One public format: how to read it and what it yields."""

    name: str
    read: Callable[..., Iterator[Record]]
    description: str


# --------------------------------------------------------------------------- helpers
def _jsonl(path: Path) -> Iterator[tuple[int, Record]]:
    """(line, object) of a JSONL(.gz) file; malformed lines raise with file:line."""
    for line, rec, _raw in _records(path):
        if isinstance(rec, InputError):
            raise rec
        yield line, rec


def _json_array(path: Path) -> Iterator[tuple[int, Record]]:
    """(1-based index, object) of a JSON array file (PandaLM, LLMBar publish arrays)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(str(path), exc.lineno, None, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(data, list):
        raise InputError(str(path), None, None, f"expected a JSON array of records, got {type(data).__name__}")
    for i, rec in enumerate(data, start=1):
        if not isinstance(rec, dict):
            raise InputError(str(path), None, f"[{i}]", f"expected an object, got {type(rec).__name__}")
        yield i, rec


class _Where:
    """Names a record for errors: JSONL by line, JSON arrays by 1-based index."""

    def __init__(self, path: Path, array: bool) -> None:
        self.path, self.array = str(path), array

    def error(self, n: int, field: str, message: str) -> InputError:
        if self.array:
            return InputError(self.path, None, f"record {n}: {field}", message)
        return InputError(self.path, n, field, message)

    def text(self, rec: Record, n: int, field: str, allow_empty: bool = True, scalars: bool = False) -> str:
        value = rec.get(field)
        if scalars and isinstance(value, (bool, int, float)):
            # PandaLM holds a few responses that were the word "True" and got saved as JSON true.
            return str(value)
        if not isinstance(value, str):
            what = "missing" if value is None else f"must be a string, got {type(value).__name__}"
            raise self.error(n, field, what)
        if not allow_empty and not value.strip():
            raise self.error(n, field, "empty")
        return value


def _check_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(str(p), None, None, "file not found")
    return p


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return name


# --------------------------------------------------------------------------- hh-rlhf
_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")


def parse_transcript(text: str) -> list[dict[str, str]]:
    """`\\n\\nHuman: ...\\n\\nAssistant: ...` -> chat messages (user/assistant)."""
    parts = _TURN.split(text)
    if parts[0].strip():
        raise ValueError("text before the first '\\n\\nHuman:' turn")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[parts[i]], "content": parts[i + 1]} for i in range(1, len(parts) - 1, 2)]


def _swap(text: str) -> bool:
    """A fixed coin per pair (hash of the chosen text): the same file always converts the same way."""
    return hashlib.sha256(text.encode("utf-8")).digest()[0] & 1 == 1


def read_hh_rlhf(path: str | os.PathLike[str], order: str = "hashed") -> Iterator[Record]:
    """hh-rlhf {chosen, rejected} transcripts: the last assistant turns are the two candidates;
    identical pairs carry no label and are dropped. order="hashed" (default) puts the chosen one
    first or second by a fixed coin, so a position-biased judge cannot score well by picking the
    first and kappa is defined; order="chosen-first" keeps TRL's chosen-then-rejected."""
    if order not in {"hashed", "chosen-first"}:
        raise ValueError(f"order must be 'hashed' or 'chosen-first', got {order!r}")
    p = _check_path(path)
    where, subset = _Where(p, array=False), _stem(p).removesuffix("-test").removesuffix("-train")
    for line, rec in _jsonl(p):
        chosen, rejected = where.text(rec, line, "chosen"), where.text(rec, line, "rejected")
        if chosen == rejected:
            continue
        turns = {}
        for field, text in (("chosen", chosen), ("rejected", rejected)):
            try:
                msgs = parse_transcript(text)
            except ValueError as exc:
                raise where.error(line, field, str(exc)) from None
            if not msgs or msgs[-1]["role"] != "assistant":
                raise where.error(line, field, "transcript does not end with an Assistant turn")
            if msgs[0]["role"] != "user":
                raise where.error(line, field, "transcript does not start with a Human turn")
            turns[field] = msgs
        prompt = turns["chosen"][:-1]
        # The two transcripts share the conversation; when they do not, keep the pair but say so.
        same_context = turns["rejected"][:-1] == prompt
        meta: dict[str, Any] = {"source": f"hh-rlhf:{subset}", "line": line}
        if not same_context:
            meta["context_differs"] = True
        pair = [turns["chosen"][-1]["content"], turns["rejected"][-1]["content"]]
        swap = order == "hashed" and _swap(chosen)
        yield {
            "id": f"hh-{subset}-{line}",
            "prompt": prompt,
            "candidates": pair[::-1] if swap else pair,
            "human": {"choice": 1 if swap else 0},
            "meta": meta,
        }


# --------------------------------------------------------------------------- PandaLM
_PANDALM_VERDICT = {1: 0, 2: 1, 0: None}  # annotator code -> candidate index (None = tie)
_GPT_VERDICT = {"1": [1.0, 0.0], "2": [0.0, 1.0], "Tie": [0.5, 0.5]}


def _pandalm_prompt(instruction: str, inp: str) -> str:
    parts = [t for t in (instruction, inp) if t.strip()]
    return "\n\n".join(parts)


def read_gpt_verdicts(path: str | os.PathLike[str]) -> dict[int, Record]:
    """PandaLM's gpt-3.5 verdict file, by idx: scores [1,0] / [0,1] / [.5,.5]; None when unparseable."""
    p = _check_path(path)
    where, out = _Where(p, array=True), {}
    for n, rec in _json_array(p):
        idx = rec.get("idx")
        if not isinstance(idx, int):
            raise where.error(n, "idx", "missing or not an integer")
        raw = rec.get("gpt_result")
        out[idx] = {"scores": _GPT_VERDICT.get(str(raw).strip()), "raw": raw}
    return out


def read_pandalm(path: str | os.PathLike[str], gpt: str | os.PathLike[str] | None = None) -> Iterator[Record]:
    """PandaLM test set: two responses, three annotators (1/2 = that response, 0 = tie) kept as
    a list of {"choice"}; with `gpt`, the gpt-3.5 verdicts go to meta.gpt35 (an imported judge)."""
    p = _check_path(path)
    where = _Where(p, array=True)
    verdicts = read_gpt_verdicts(gpt) if gpt is not None else None
    for n, rec in _json_array(p):
        idx = rec.get("idx")
        if not isinstance(idx, int):
            raise where.error(n, "idx", "missing or not an integer")
        instruction = where.text(rec, n, "instruction")
        inp = rec.get("input") or ""
        if not isinstance(inp, str):
            raise where.error(n, "input", f"must be a string, got {type(inp).__name__}")
        if not (instruction + inp).strip():
            raise where.error(n, "instruction", "empty, and so is input: there is no prompt")
        human = []
        for k in (1, 2, 3):
            code = rec.get(f"annotator{k}")
            if code not in _PANDALM_VERDICT or isinstance(code, bool):
                raise where.error(n, f"annotator{k}", f"expected 0 (tie), 1 or 2, got {code!r}")
            human.append({"choice": _PANDALM_VERDICT[code]})
        meta: dict[str, Any] = {"source": "pandalm", "idx": idx}
        for key in ("motivation_app", "cmp_key"):
            if isinstance(rec.get(key), str):
                meta[key] = rec[key]
        if verdicts is not None:
            v = verdicts.get(idx)
            meta["gpt35"] = None if v is None else v["scores"]
            meta["gpt35_raw"] = None if v is None else v["raw"]
        yield {
            "id": f"pandalm-{idx}",
            "prompt": _pandalm_prompt(instruction, inp),
            "candidates": [where.text(rec, n, f"response{k}", scalars=True) for k in (1, 2)],
            "human": human,
            "meta": meta,
        }


# --------------------------------------------------------------------------- LLMBar
def read_llmbar(path: str | os.PathLike[str]) -> Iterator[Record]:
    """LLMBar array of {input, output_1, output_2, label in {1, 2}} (no ties)."""
    p = _check_path(path)
    where, subset = _Where(p, array=True), _stem(p).removeprefix("Processed_").removeprefix("LLMBar_").lower()
    for n, rec in _json_array(p):
        label = rec.get("label")
        if label not in (1, 2) or isinstance(label, bool):
            raise where.error(n, "label", f"expected 1 or 2, got {label!r}")
        yield {
            "id": f"llmbar-{subset}-{n}",
            "prompt": where.text(rec, n, "input", allow_empty=False),
            "candidates": [where.text(rec, n, "output_1"), where.text(rec, n, "output_2")],
            "human": {"choice": label - 1},
            "meta": {"source": f"llmbar:{subset}"},
        }


# --------------------------------------------------------------------------- PRM800K
def read_prm800k(path: str | os.PathLike[str]) -> Iterator[Record]:
    """PRM800K stepwise rows (prefix `responses` + rated `next_response`) grouped back into
    solutions: every root-to-leaf path of a problem's step tree is one candidate, its steps in
    candidate meta and their ratings (+1/0/-1, null = unrated) in human.steps."""
    p = _check_path(path)
    where = _Where(p, array=False)
    problems: dict[str, dict[str, Any]] = {}  # insertion order = first appearance
    for line, rec in _jsonl(p):
        problem = where.text(rec, line, "instruction", allow_empty=False)
        prefix = rec.get("responses")
        if not isinstance(prefix, list) or not all(isinstance(s, str) for s in prefix):
            raise where.error(line, "responses", "must be a list of step strings")
        step = where.text(rec, line, "next_response")
        rating = rec.get("rating")
        if rating not in (-1, 0, 1, None) or isinstance(rating, bool):
            raise where.error(line, "rating", f"expected -1, 0, 1 or null, got {rating!r}")
        entry = problems.setdefault(problem, {"nodes": {}, "line": line, "answer": None})
        node = (*prefix, step)
        old = entry["nodes"].get(node)
        # A step rated twice (two labelling sessions) keeps its first non-null rating.
        entry["nodes"][node] = {
            "rating": rating if old is None or old["rating"] is None else old["rating"],
            "solution": bool(rec.get("is_solution")) or (old is not None and old["solution"]),
            "answer": rec.get("answer") if rec.get("answer") is not None else (old or {}).get("answer"),
        }
    for k, (problem, entry) in enumerate(problems.items(), start=1):
        nodes: dict[tuple[str, ...], dict[str, Any]] = entry["nodes"]
        inner = {node[:i] for node in nodes for i in range(1, len(node))}
        candidates, labels = [], []
        for node in nodes:
            if node in inner:
                continue
            path_labels = [nodes[node[: i + 1]]["rating"] if node[: i + 1] in nodes else None for i in range(len(node))]
            last = nodes[node]
            cmeta: dict[str, Any] = {"steps": list(node), "complete": last["solution"]}
            if last["answer"] is not None:
                cmeta["answer"] = str(last["answer"])
            candidates.append({"id": f"s{len(candidates)}", "text": "\n".join(node), "meta": cmeta})
            labels.append(path_labels)
        yield {
            "id": f"prm800k-{k}",
            "prompt": problem,
            "candidates": candidates,
            "human": {"steps": labels},
            "meta": {"source": "prm800k", "line": entry["line"]},
        }


# --------------------------------------------------------------------------- MR-GSM8K
def read_mr_gsm8k(path: str | os.PathLike[str]) -> Iterator[Record]:
    """MR-GSM8K human-judged wrong solutions: one candidate whose steps before the first error
    are labelled +1, the first error -1, and later steps null (not judged)."""
    p = _check_path(path)
    where = _Where(p, array=False)
    for line, rec in _jsonl(p):
        steps = rec.get("model_output_steps")
        if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
            raise where.error(line, "model_output_steps", "must be a non-empty list of strings")
        first = rec.get("model_output_solution_first_error_step")
        if not isinstance(first, int) or isinstance(first, bool) or not 1 <= first <= len(steps):
            raise where.error(
                line, "model_output_solution_first_error_step", f"expected 1..{len(steps)}, got {first!r}"
            )
        labels: list[int | None] = [1] * (first - 1) + [-1] + [None] * (len(steps) - first)
        answer, answer_from = _mr_reference(rec)
        meta = {"source": "mr-gsm8k", "question_type": rec.get("question_type"), "first_error_step": first}
        reason = rec.get("model_output_solution_first_error_reason")
        if isinstance(reason, str):
            meta["first_error_reason"] = reason
        out: Record = {
            "id": f"mr-gsm8k-{rec.get('uuid') or line}",
            "prompt": where.text(rec, line, "question", allow_empty=False),
            "candidates": [{"text": "\n".join(steps), "meta": {"steps": steps}}],
            "human": {"steps": [labels]},
            "meta": meta,
        }
        if answer is not None:
            out["reference"] = answer
            meta["reference_from"] = answer_from
        yield out


_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
_VALUE_OF_X = re.compile(r"value of (?:the )?(?:unknown variable )?'?x'? is:?\s*\$?(-?\d[\d,]*(?:\.\d+)?)", re.I)


def _mr_reference(rec: Record) -> tuple[str | None, str]:
    """The gold answer: `ground_truth_answer` when it is one; some reversed questions hold
    "Let's think step by step." there, and then the answer is read from the gold solution."""
    answer = rec.get("ground_truth_answer")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        return str(answer), "ground_truth_answer"
    if isinstance(answer, str) and _NUMBER.fullmatch(answer.strip().replace(" ", "")):
        return answer.strip(), "ground_truth_answer"
    solution = rec.get("ground_truth_solution") or ""
    if "####" in solution:
        return solution.rpartition("####")[2].strip(), "ground_truth_solution ####"
    found = _VALUE_OF_X.findall(solution)
    if found:
        return found[-1].replace(",", ""), "ground_truth_solution 'value of x is'"
    return (answer.strip() if isinstance(answer, str) and answer.strip() else None), "ground_truth_answer"


# --------------------------------------------------------------------------- GSM8K / MATH-500
def read_gsm8k(path: str | os.PathLike[str]) -> Iterator[Record]:
    """GSM8K {question, answer}: prompt + the final answer after `#### ` as reference (for
    `verify:gsm8k` and STaR); the worked solution goes to meta.solution for rationalization."""
    p = _check_path(path)
    where, split = _Where(p, array=False), _stem(p)
    for line, rec in _jsonl(p):
        answer = where.text(rec, line, "answer")
        if "####" not in answer:
            raise where.error(line, "answer", "no '#### ' final answer")
        solution, _, final = answer.rpartition("####")
        yield {
            "id": f"gsm8k-{split}-{line}",
            "prompt": where.text(rec, line, "question", allow_empty=False),
            "reference": final.strip().replace(",", ""),
            "meta": {"source": "gsm8k", "split": split, "solution": solution.strip()},
        }


def read_math500(path: str | os.PathLike[str]) -> Iterator[Record]:
    """MATH-500 {problem, solution, answer, subject, level}: prompt + LaTeX answer as reference."""
    p = _check_path(path)
    where = _Where(p, array=False)
    for line, rec in _jsonl(p):
        answer = rec.get("answer")
        if not isinstance(answer, (str, int, float)) or isinstance(answer, bool):
            raise where.error(line, "answer", "missing")
        meta: dict[str, Any] = {"source": "math500"}
        for key in ("subject", "level", "unique_id", "solution"):
            if rec.get(key) is not None:
                meta[key] = rec[key]
        yield {
            "id": str(rec.get("unique_id") or f"math500-{line}"),
            "prompt": where.text(rec, line, "problem", allow_empty=False),
            "reference": str(answer),
            "meta": meta,
        }


ADAPTERS: dict[str, Adapter] = {
    a.name: a
    for a in [
        Adapter("hh-rlhf", read_hh_rlhf, "Anthropic hh-rlhf {chosen, rejected} transcripts (.jsonl[.gz]); order by a fixed coin"),
        Adapter("pandalm", read_pandalm, "PandaLM test set (3 annotators, ties); gpt=FILE joins gpt-3.5 verdicts"),
        Adapter("llmbar", read_llmbar, "LLMBar JSON array {input, output_1, output_2, label}"),
        Adapter("prm800k", read_prm800k, "PRM800K stepwise rows, grouped back into solutions with step labels"),
        Adapter("mr-gsm8k", read_mr_gsm8k, "MR-GSM8K wrong solutions with the human first-error step"),
        Adapter("gsm8k", read_gsm8k, "GSM8K {question, answer}: prompts + references for STaR"),
        Adapter("math500", read_math500, "MATH-500 {problem, answer, ...}: prompts + references"),
    ]
}


def convert(fmt: str, path: str | os.PathLike[str], **options: Any) -> Iterator[Record]:
    """Stream records of a public file in our format: convert("pandalm", "testset-v1.json")."""
    if fmt not in ADAPTERS:
        import difflib

        close = difflib.get_close_matches(fmt, list(ADAPTERS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputError(str(path), None, None, f"unknown format {fmt!r}{hint}; formats: {', '.join(ADAPTERS)}")
    return ADAPTERS[fmt].read(path, **options)
