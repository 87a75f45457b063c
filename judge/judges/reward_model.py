"""`rm:` a local transformers reward model (AutoModelForSequenceClassification), CPU or GPU.

`--judge rm:PATH[,device=auto,dtype=auto,attn=sdpa,max_length=N,truncation=left,
batch_tokens=N,weights=...,steps=true,...]`. Formats each (prompt, candidate) with the
model's chat template (or as a plain text pair), batches by length under a token budget,
reads the score at each sequence's last real token (so neither padding side nor batch
neighbours change it), and writes results back in input order. Truncation is reported,
never silent. Process scoring (`steps=true`) scores every step prefix, or reads a PRM's
score at each `step_tag` in one pass."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from judge.errors import SpecError
from judge.judges._rm_batching import (
    Encoded,
    collate,
    config_labels,
    kept_positions,
    model_digest,
    padded_tokens,
    plan_batches,
    reduce_steps,
    resolve_weights,
    step_ends,
)
from judge.judges._rm_loading import (
    load_model,
    load_tokenizer,
    max_positions,
    resolve_device,
    resolve_dtype,
    resolve_path,
    set_cpu_threads,
    special_ids,
)
from judge.judges.base import BaseJudge, JudgeSpec
from judge.records import Item, Score


@dataclasses.dataclass
class RewardModelOptions:
    device: str = "auto"
    """auto (cuda:LOCAL_RANK when a GPU is there, else cpu) | cpu | cuda | cuda:N."""
    dtype: str = "auto"
    """auto (bf16 on a GPU that supports it, fp32 otherwise) | fp32 | bf16 | fp16."""
    attn: str | None = None
    """sdpa | eager | flash_attention_2; default sdpa where the model supports it."""
    max_length: int | None = None
    """Tokens per sequence; default the model's maximum positions."""
    truncation: str = "left"
    """left: drop the start (keep the end of the response, where the score is read) | right."""
    batch_tokens: int | None = None
    """Token budget per forward batch (rows x longest row); default 2048 on CPU, 32768 on a GPU."""
    batch_size: int = 1024
    """At most this many sequences per forward batch (the token budget usually binds first)."""
    padding: str = "right"
    """Padding side; scores do not depend on it (encoders always pad right for their CLS)."""
    template: str = "auto"
    """auto (chat template when the tokenizer has one) | chat | pair (prompt, response text pair)."""
    weights: str | None = None
    """Multi-output heads: one weight per output, `0.3;0.7` or `helpfulness:0.3;verbosity:-0.3`."""
    steps: bool = False
    """Process scoring: score each step prefix of a rationale."""
    step_sep: str | None = None
    """What separates steps (default: newlines)."""
    step_reduce: str = "min"
    """min | prod (of sigmoids) | last | mean: how step scores make the candidate's score."""
    step_tag: str | None = None
    """A PRM's step-marker token: read one score per tag in a single forward pass."""
    trust_remote_code: bool = False
    """Run model code shipped in the model folder (off: it is arbitrary code)."""
    threads: int | None = None
    """CPU threads (default: all cores, divided among torchrun ranks on this machine)."""


# Options that cannot change a score stay out of the fingerprint, so a cached score is
# reused across batch sizes, padding sides, devices at one dtype and thread counts.
_PERF_ONLY = {"device", "batch_tokens", "batch_size", "padding", "threads", "trust_remote_code"}


class RewardModelJudge(BaseJudge):
    """Scores (prompt, candidate) pairs with a local sequence-classification reward model."""

    kind: ClassVar[str] = "rm"
    Options: ClassVar[type] = RewardModelOptions
    description: ClassVar[str] = "local transformers reward model (CPU or GPU)"
    version: ClassVar[str] = "1"
    batch_size = 1 << 16  # take the pipeline's whole chunk: sorting a bigger set pads less

    def __init__(self, spec: JudgeSpec) -> None:
        super().__init__(spec)
        o: RewardModelOptions = self.options
        if not spec.target:
            raise SpecError("rm: needs a model, e.g. --judge rm:./my-reward-model")
        for key, value, allowed in (("truncation", o.truncation, {"left", "right"}),
                                    ("padding", o.padding, {"left", "right"}),
                                    ("template", o.template, {"auto", "chat", "pair"}),
                                    ("step_reduce", o.step_reduce, {"min", "prod", "last", "mean"})):
            if value not in allowed:
                raise SpecError(f"rm: {key}={value!r}; expected one of {', '.join(sorted(allowed))}")
        if (o.batch_tokens is not None and o.batch_tokens < 1) or o.batch_size < 1:
            raise SpecError("rm: batch_tokens and batch_size must be positive")
        self.path = resolve_path(spec.target)
        self.device = resolve_device(o.device)
        self.dtype = resolve_dtype(o.dtype, self.device)
        set_cpu_threads(self.device, o.threads)
        # A CPU gains nothing from batches past a few thousand tokens and a small budget keeps
        # neighbours close in length (less padding); a GPU needs large batches to be busy.
        self.batch_tokens = o.batch_tokens or (2048 if self.device == "cpu" else 32768)
        self.tokenizer = load_tokenizer(self.path, o.trust_remote_code)
        self.model, self.pooling, self._base = load_model(self.path, self.dtype, self.device, o.attn,
                                                          o.trust_remote_code)
        self.labels = config_labels(self.model.config)
        self.weights = resolve_weights(o.weights, self.labels, self.model.config)
        if len(self.labels) > 1 and self.weights is None:
            raise SpecError(
                f"rm: {self.path} has {len(self.labels)} outputs {self.labels} and its config gives no weights; "
                "say how to combine them, e.g. weights=" + ";".join(["1"] + ["0"] * (len(self.labels) - 1))
            )
        self.max_length = max_positions(self.model.config, self.tokenizer, o.max_length)
        self.use_chat = o.template == "chat" or (o.template == "auto" and bool(self.tokenizer.chat_template))
        if o.template == "chat" and not self.tokenizer.chat_template:
            raise SpecError(f"rm: template=chat but the tokenizer at {self.path} has no chat template")
        self.specials = special_ids(self.tokenizer)
        self.tag_id = self._tag_id(o.step_tag) if o.step_tag else None
        if self.tag_id is not None and self.pooling != "last":
            raise SpecError("rm: step_tag needs a decoder reward model (score read per token); this one pools a CLS token")
        self.digest = model_digest(self.path)
        self.stats = {"sequences": 0, "truncated": 0, "tokens": 0, "padded": 0, "seconds": 0.0}

    # ------------------------------------------------------------------ step tags
    def _tag_id(self, tag: str) -> int:
        ids = self.tokenizer(tag, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise SpecError(f"rm: step_tag {tag!r} is {len(ids)} tokens for this tokenizer; it must be exactly one")
        return ids[0]

    # ------------------------------------------------------------------ identity
    @property
    def fingerprint(self) -> str:
        """Model files' digest plus the resolved options that change scores."""
        opts = {k: v for k, v in dataclasses.asdict(self.options).items() if k not in _PERF_ONLY}
        opts.update(dtype=self.dtype, max_length=self.max_length, weights=self.weights, attn=self.options.attn)
        ident = {"kind": self.kind, "version": self.version, "model": self.digest, "options": opts}
        digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return f"rm:{digest}"  # no path in it: the same files under another path reuse the store

    # ------------------------------------------------------------------ formatting
    def _messages(self, item: Item, response: str) -> list[dict[str, Any]]:
        prompt = item.prompt
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
        return messages + [{"role": "assistant", "content": response}]

    def encode(self, items: Sequence[Item], responses: Sequence[str], tags: bool = False) -> list[Encoded | str]:
        """Token ids per (item, response), or an error message where formatting failed.

        With tags=True each sequence also gets `reads`: the positions of step tags inside
        the response (not those a chat template adds around it)."""
        tok = self.tokenizer
        raw: list[tuple[list[int], list[int] | None, list[bool] | None] | str] = []
        if self.use_chat:
            texts: list[str | None] = []
            errors: dict[int, str] = {}
            for i, (item, resp) in enumerate(zip(items, responses)):
                try:
                    texts.append(tok.apply_chat_template(self._messages(item, resp), tokenize=False))
                except Exception as exc:  # e.g. a template that rejects a system turn
                    errors[i] = f"chat template failed: {type(exc).__name__}: {exc}"
                    texts.append(None)
            good = [t for t in texts if t is not None]
            # the template already holds BOS where the model wants it: add nothing more
            enc = (tok(good, add_special_tokens=False, return_offsets_mapping=tags, verbose=False) if good
                   else {"input_ids": []})
            j = 0
            for i, text in enumerate(texts):
                if text is None:
                    raw.append(errors[i])
                    continue
                in_resp = None
                if tags:
                    resp = responses[i].strip()
                    at = text.rfind(resp) if resp else -1
                    lo, hi = (at, at + len(resp)) if at >= 0 else (0, len(text))
                    in_resp = [lo <= a and b <= hi for a, b in enc["offset_mapping"][j]]
                raw.append((list(enc["input_ids"][j]), None, in_resp))
                j += 1
        else:
            enc = tok([it.prompt_text for it in items], list(responses), add_special_tokens=True, verbose=False)
            types = enc.get("token_type_ids")
            for j, ids in enumerate(enc["input_ids"]):
                in_resp = [sid == 1 for sid in enc.sequence_ids(j)] if tags else None
                raw.append((list(ids), list(types[j]) if types is not None else None, in_resp))
        return [r if isinstance(r, str) else self._fit(*r) for r in raw]

    def _fit(self, ids: list[int], types: list[int] | None, in_resp: list[bool] | None) -> Encoded:
        """Drop a doubled BOS, truncate (counted), and map tag positions through both."""
        keep = list(range(len(ids)))
        bos = self.tokenizer.bos_token_id
        if bos is not None and len(ids) > 1 and ids[0] == bos and ids[1] == bos:
            keep = keep[1:]  # BOS in the text and again from the tokenizer
        cut = kept_positions([ids[k] for k in keep], self.max_length, self.options.truncation, self.specials)
        if cut is not None:
            keep = [keep[c] for c in cut]
        reads = []
        if in_resp is not None:
            reads = [n for n, k in enumerate(keep) if ids[k] == self.tag_id and in_resp[k]]
        return Encoded([ids[k] for k in keep], [types[k] for k in keep] if types is not None else None,
                       cut is not None, reads)

    # ------------------------------------------------------------------ forward
    def forward(self, seqs: Sequence[Encoded]) -> list[list[list[float]]]:
        """Per sequence, per read position, the head's outputs; batched, in input order."""
        lengths = [len(s.ids) for s in seqs]
        side = self.options.padding if self.pooling == "last" else "right"
        batches = plan_batches(lengths, self.batch_tokens, self.options.batch_size)
        results: list[list[list[float]] | None] = [None] * len(seqs)
        start = time.perf_counter()
        for batch in batches:
            for idx, value in zip(batch, self._forward_batch([seqs[i] for i in batch], side)):
                results[idx] = value
        self.stats["seconds"] += time.perf_counter() - start
        self.stats["sequences"] += len(seqs)
        self.stats["tokens"] += sum(lengths)
        self.stats["padded"] += padded_tokens(lengths, batches)
        return results  # type: ignore[return-value]

    def _forward_batch(self, seqs: Sequence[Encoded], side: str) -> list[list[list[float]]]:
        import torch

        try:
            return self._run(seqs, side)
        except torch.OutOfMemoryError:
            if len(seqs) == 1:
                raise
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()
            half = len(seqs) // 2  # the budget was too big for this GPU: halve and go on
            return self._forward_batch(seqs[:half], side) + self._forward_batch(seqs[half:], side)

    def _run(self, seqs: Sequence[Encoded], side: str) -> list[list[list[float]]]:
        import torch

        batch = collate(seqs, self.tokenizer.pad_token_id, side)
        offsets = batch.pop("offsets")
        inputs = {k: v.to(self.device) for k, v in batch.items()}
        rows, cols = [], []
        for r, (s, off) in enumerate(zip(seqs, offsets)):
            reads = s.reads or [len(s.ids) - 1]
            rows += [r] * len(reads)
            cols += [off + p for p in reads]
        with torch.inference_mode():
            if self.pooling == "last":
                inputs.pop("token_type_ids", None)
                hidden = self._base(**inputs).last_hidden_state
                picked = hidden[torch.tensor(rows, device=hidden.device), torch.tensor(cols, device=hidden.device)]
                logits = self.model.score(picked).float().cpu()
            else:
                inputs.pop("position_ids")
                logits = self.model(**inputs).logits.float().cpu()
        values = logits.tolist()
        out: list[list[list[float]]] = []
        pos = 0
        for s in seqs:
            n = len(s.reads) or 1
            out.append(values[pos : pos + n])
            pos += n
        return out

    # ------------------------------------------------------------------ scoring
    def _value(self, outputs: list[float]) -> float:
        if self.weights is None:
            return float(outputs[0])
        return float(sum(w * x for w, x in zip(self.weights, outputs)))

    def _details(self, outputs: list[float]) -> dict[str, Any]:
        if len(self.labels) == 1:
            return {}
        return {"attributes": {label: round(x, 6) for label, x in zip(self.labels, outputs)}}

    def score_batch(self, items: Sequence[Item]) -> list[Score]:
        """Score items in length-sorted token-budget batches; results in input order."""
        if self.options.steps or self.options.step_tag:
            return self._score_steps(items) if self.tag_id is None else self._score_tagged(items)
        encoded = self.encode(items, [it.response for it in items])
        return self._finish(encoded, lambda e, outs: self._single(e, outs[0]))

    def _single(self, enc: Encoded, outputs: list[float]) -> Score:
        return Score(self._value(outputs), details={"truncated": enc.truncated, **self._details(outputs)})

    def _finish(self, encoded: list[Encoded | str], make: Any, count: bool = True) -> list[Score]:
        good = [i for i, e in enumerate(encoded) if isinstance(e, Encoded)]
        scores: list[Score] = [Score.failed(e) if isinstance(e, str) else Score(None) for e in encoded]
        try:
            outs = self.forward([encoded[i] for i in good])  # type: ignore[misc]
        except Exception as exc:
            for i in good:
                scores[i] = Score.failed(f"{type(exc).__name__}: {exc}")
            return scores
        for i, o in zip(good, outs):
            enc = encoded[i]
            assert isinstance(enc, Encoded)
            self.stats["truncated"] += int(count and enc.truncated)
            scores[i] = make(enc, o)
        return scores

    def _score_steps(self, items: Sequence[Item]) -> list[Score]:
        """Score each step prefix as its own sequence, then reduce per candidate."""
        sep = self.options.step_sep or "\n"
        owners, prefixes, subjects = [], [], []
        for n, item in enumerate(items):
            ends = step_ends(item.response, sep) or [len(item.response)]
            for end in ends:
                owners.append(n)
                prefixes.append(item.response[:end])
                subjects.append(item)
        encoded = self.encode(subjects, prefixes)
        flat = self._finish(encoded, lambda e, outs: self._single(e, outs[0]), count=False)
        per_item: list[list[Score]] = [[] for _ in items]
        for n, s in zip(owners, flat):
            per_item[n].append(s)
        return [self._reduce(steps) for steps in per_item]

    def _reduce(self, steps: list[Score]) -> Score:
        failed = [s for s in steps if s.value is None]
        if failed:
            return Score.failed(failed[0].error or "a step failed")
        values = [float(s.value) for s in steps]  # type: ignore[arg-type]
        truncated = any(s.details.get("truncated") for s in steps)
        self.stats["truncated"] += int(truncated)
        details: dict[str, Any] = {"truncated": truncated, "steps": [round(v, 6) for v in values]}
        return Score(reduce_steps(values, self.options.step_reduce), details=details)

    def _score_tagged(self, items: Sequence[Item]) -> list[Score]:
        """One forward pass per candidate: a score at each step tag (a PRM's step marker)."""
        tag = self.options.step_tag or ""
        sep = self.options.step_sep or "\n"
        responses = []
        for item in items:
            text = item.response
            if tag not in text:  # mark the end of each step with the tag
                ends = step_ends(text, sep) or [len(text)]
                starts = [0, *ends[:-1]]
                text = "".join(text[a:b] + tag for a, b in zip(starts, ends)) + text[ends[-1]:]
            responses.append(text)
        encoded = self.encode(items, responses, tags=True)
        for n, e in enumerate(encoded):
            if isinstance(e, Encoded) and not e.reads:
                encoded[n] = f"no step tag {tag!r} left in the candidate (truncated away?)"
        return self._finish(encoded, self._tagged)

    def _tagged(self, enc: Encoded, outputs: list[list[float]]) -> Score:
        values = [self._value(o) for o in outputs]
        details = {"truncated": enc.truncated, "steps": [round(v, 6) for v in values]}
        return Score(reduce_steps(values, self.options.step_reduce), details=details)

    # ------------------------------------------------------------------ reporting
    def summary(self) -> dict[str, Any]:
        """Truncated candidates, padding waste (pad / real tokens) and forward tokens/s of this run."""
        s = self.stats
        out: dict[str, Any] = {"truncated": s["truncated"]}
        if s["tokens"]:
            out["padding waste"] = round((s["padded"] - s["tokens"]) / s["tokens"], 4)
        if s["seconds"] > 0:
            out["tokens/s"] = int(s["tokens"] / s["seconds"])
        return out

    def summary_state(self) -> dict[str, Any]:
        """Raw counters, gathered from every rank of a distributed run."""
        return dict(self.stats)

    def merge_summary_states(self, states: Sequence[dict[str, Any]]) -> None:
        """Combine ranks' counters (this rank's included); ranks run side by side, so the
        job's time is the slowest rank's, not the sum."""
        merged = {k: sum(s[k] for s in states) for k in self.stats}
        merged["seconds"] = max(s["seconds"] for s in states)
        self.stats = merged

    def close(self) -> None:
        """Free the model (and GPU memory); safe to call twice."""
        self.__dict__.pop("model", None)
        self.__dict__.pop("_base", None)
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
