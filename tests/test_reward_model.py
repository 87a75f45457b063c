"""The `rm:` judge on tiny real GPT-2, Llama and BERT reward models built from configs.

References are plain unbatched forwards through transformers, formatted independently of
the judge, so a wrong template, a misplaced read position or padding leaking into a score
shows up as a difference."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from judge.errors import JudgeError, SpecError
from judge.judges._rm_batching import kept_positions, plan_batches, reduce_steps, step_ends
from judge.records import Item
from judge.registry import load_judge

TOL = 1e-4

PROMPTS = [
    "What is 2 + 3?",
    [{"role": "system", "content": "You are a careful tutor."}, {"role": "user", "content": "Add 16 and 3, then halve."}],
    "Human: how do I bake bread?",
]
RESPONSES = [
    "5",
    "Step 1: 16 + 3 = 19.\nStep 2: 19 / 2 = 9.5.\nThe answer is 9.5.",
    "Mix flour, water, salt and yeast. " * 6,
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Janet has 16 eggs and eats 3 of them, so she has 13 left.",
]


def items() -> list[Item]:
    out = []
    for n, resp in enumerate(RESPONSES * 2):
        out.append(Item(PROMPTS[n % len(PROMPTS)], resp[: 10 + 17 * n] if n >= len(RESPONSES) else resp, None, f"g{n}", n))
    return out


def values(scores) -> list[float]:
    assert all(s.error is None for s in scores), [s.error for s in scores]
    return [s.value for s in scores]


def close(a: list[float], b: list[float], tol: float = TOL) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b))


_REF_CACHE: dict[str, tuple] = {}


def reference_model(path: Path) -> tuple:
    if str(path) not in _REF_CACHE:
        tok = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForSequenceClassification.from_pretrained(str(path), dtype=torch.float32).eval()
        _REF_CACHE[str(path)] = (tok, model)
    return _REF_CACHE[str(path)]


def reference_ids(tok, item: Item, response: str) -> dict[str, list[int]]:
    """Formatting done the documented way, not by the judge's code."""
    if tok.chat_template:
        messages = [{"role": "user", "content": item.prompt}] if isinstance(item.prompt, str) else list(item.prompt)
        ids = tok.apply_chat_template(messages + [{"role": "assistant", "content": response}], tokenize=True,
                                      return_dict=False)
        return {"input_ids": list(ids)}
    enc = tok(item.prompt_text, response)
    return {k: list(v) for k, v in enc.items() if k in {"input_ids", "token_type_ids"}}


def reference_forward(model, ids: dict[str, list[int]]) -> list[float]:
    """One sequence, no padding: the model's own pooling is unambiguous here."""
    with torch.no_grad():
        return model(**{k: torch.tensor([v]) for k, v in ids.items()}).logits[0].tolist()


@pytest.fixture(scope="module")
def judges(tiny_models):
    cache: dict[str, object] = {}

    def get(spec: str):
        if spec not in cache:
            name, _, opts = spec.partition(",")
            cache[spec] = load_judge(f"rm:{tiny_models[name]}" + (f",{opts}" if opts else ""))
        return cache[spec]

    return get


# ----------------------------------------------------------------------------- correctness
@pytest.mark.parametrize("name", ["gpt2-rm", "llama-rm", "bert-rm"])
def test_scores_equal_an_unbatched_reference_forward(tiny_models, judges, name):
    judge = judges(name)
    tok, model = reference_model(tiny_models[name])
    batch = items()
    got = values(judge.score_batch(batch))
    want = [reference_forward(model, reference_ids(tok, it, it.response))[0] for it in batch]
    assert close(got, want), (got, want)
    assert len(set(round(v, 5) for v in got)) > 1  # a head reading a constant would pass otherwise


@pytest.mark.parametrize("name", ["gpt2-rm", "llama-rm", "bert-rm"])
def test_scores_do_not_depend_on_batch_composition_or_padding_side(judges, name):
    """(BERT pools its first token, so it always pads right: padding=left must not break it.)"""
    batch = items()
    judge = judges(name)
    alone = [values(judge.score_batch([it]))[0] for it in batch]
    # perf-only options are read at call time, so one loaded model serves every setting
    for budget, rows, side in [(2048, 1, "right"), (2048, 3, "left"), (200, 1024, "left"),
                               (100000, 1024, "left"), (100000, 1024, "right")]:
        judge.batch_tokens = budget
        judge.options = dataclasses.replace(judge.options, batch_size=rows, padding=side)
        got = values(judge.score_batch(batch))
        assert close(got, alone), (budget, rows, side)
        # reversed order and a different mix of neighbours: same scores, written back in input order
        assert close(values(judge.score_batch(batch[::-1]))[::-1], alone), (budget, rows, side)
    judge.batch_tokens = 2048
    judge.options = dataclasses.replace(judge.options, batch_size=1024, padding="right")


def test_left_padding_without_position_ids_would_change_gpt2_scores(tiny_models, judges):
    """Guards the invariance test above: the case it protects against is real for GPT-2."""
    tok, model = reference_model(tiny_models["gpt2-rm"])
    short, long = items()[0], items()[2]
    a, b = reference_ids(tok, short, short.response)["input_ids"], reference_ids(tok, long, long.response)["input_ids"]
    pad = len(b) - len(a)
    ids = torch.tensor([[tok.pad_token_id] * pad + a, b])
    mask = torch.tensor([[0] * pad + [1] * len(a), [1] * len(b)])
    with torch.no_grad():
        naive = model.transformer(input_ids=ids, attention_mask=mask).last_hidden_state[0, -1]
        naive_score = model.score(naive).item()
    right = values(judges("gpt2-rm,padding=left").score_batch([short, long]))[0]
    assert abs(naive_score - right) > 1e-3
    assert abs(right - reference_forward(model, {"input_ids": a})[0]) <= TOL


def test_missing_pad_token_falls_back_to_eos_without_moving_the_read_position(tiny_models, tmp_path):
    """pad == eos and a response that ends in EOS: the model's own pooling would read one
    token early; the judge reads at the last real token."""
    path = tmp_path / "gpt2-nopad"
    shutil.copytree(tiny_models["gpt2-rm"], path)
    cfg = json.loads((path / "tokenizer_config.json").read_text())
    cfg.pop("pad_token", None)
    (path / "tokenizer_config.json").write_text(json.dumps(cfg))
    judge = load_judge(f"rm:{path},template=pair,padding=left")
    assert judge.tokenizer.pad_token == judge.tokenizer.eos_token
    tok, model = reference_model(tiny_models["gpt2-rm"])
    batch = [Item("Say hi.", "hi there<|eos|>"), Item("Say hi.", "hello to you and everyone here<|eos|>")]
    want = []
    for it in batch:
        ids = tok(it.prompt_text, it.response)["input_ids"]
        assert ids[-1] == tok.eos_token_id
        want.append(reference_forward(model, {"input_ids": ids})[0])
    assert close(values(judge.score_batch(batch)), want)


def test_doubled_bos_is_dropped(tiny_models, judges):
    """A template that starts with BOS plus a tokenizer (or prompt text) adding another would
    feed <bos><bos>: the judge keeps one."""
    tok, _ = reference_model(tiny_models["gpt2-rm"])
    judge = judges("gpt2-rm")
    enc = judge.encode([Item("Hi", "there")], ["there"])[0]
    assert enc.ids[0] == tok.bos_token_id and enc.ids.count(tok.bos_token_id) == 1
    fit = judge._fit([tok.bos_token_id] + enc.ids, None, None)
    assert fit.ids == enc.ids
    pair = judges("gpt2-rm,template=pair")
    doubled = values(pair.score_batch([Item("<|bos|><|bos|>Hi", "there")]))[0]
    single = values(pair.score_batch([Item("<|bos|>Hi", "there")]))[0]
    assert abs(doubled - single) <= TOL


# ----------------------------------------------------------------------------- truncation
def test_truncation_is_counted_and_keeps_the_end_by_default(tiny_models):
    tok, model = reference_model(tiny_models["gpt2-rm"])
    long = Item("Tell me about bread.", "Mix flour and water. " * 20)
    short = Item("Hi", "ok")
    judge = load_judge(f"rm:{tiny_models['gpt2-rm']},max_length=24")
    scores = judge.score_batch([long, short])
    assert [s.details["truncated"] for s in scores] == [True, False]
    assert judge.summary()["truncated"] == 1
    full = reference_ids(tok, long, long.response)["input_ids"]
    head = 2  # <|bos|><|user|> are special and stay; the end of the response is kept
    kept = full[:head] + full[-(24 - head):]
    assert abs(scores[0].value - reference_forward(model, {"input_ids": kept})[0]) <= TOL

    right = load_judge(f"rm:{tiny_models['gpt2-rm']},max_length=24,truncation=right")
    s = right.score_batch([long])[0]
    assert s.details["truncated"] is True
    assert abs(s.value - reference_forward(model, {"input_ids": full[:24]})[0]) <= TOL


def test_kept_positions_keeps_framing_specials():
    specials = {0, 1}
    ids = [1, 1, 5, 6, 7, 8, 9, 0]
    assert kept_positions(ids, 8, "left", specials) is None
    assert kept_positions(ids, 5, "left", specials) == [0, 1, 5, 6, 7]
    assert kept_positions(ids, 5, "right", specials) == [0, 1, 2, 3, 7]


# ----------------------------------------------------------------------------- heads
def test_multi_head_weights_from_spec_and_config(tiny_models, tmp_path):
    path = tiny_models["gpt2-rm-3"]
    with pytest.raises(SpecError, match="3 outputs"):
        load_judge(f"rm:{path}")
    with pytest.raises(SpecError, match="has 2 numbers"):
        load_judge(f"rm:{path},weights=1;2")
    tok, model = reference_model(path)
    batch = items()[:4]
    raw = [reference_forward(model, reference_ids(tok, it, it.response)) for it in batch]
    judge = load_judge(f"rm:{path},weights=0.5;-1;2")
    scores = judge.score_batch(batch)
    assert close(values(scores), [0.5 * a - b + 2 * c for a, b, c in raw])
    attrs = scores[0].details["attributes"]
    assert list(attrs) == ["LABEL_0", "LABEL_1", "LABEL_2"]
    assert close(list(attrs.values()), raw[0])
    named = load_judge(f"rm:{path},weights=LABEL_2:1")
    assert close(values(named.score_batch(batch)), [c for _, _, c in raw])

    own = tmp_path / "rm3-weights"
    shutil.copytree(path, own)
    cfg = json.loads((own / "config.json").read_text())
    cfg["id2label"] = {"0": "helpfulness", "1": "verbosity", "2": "correctness"}
    cfg["label2id"] = {v: int(k) for k, v in cfg["id2label"].items()}
    cfg["reward_weights"] = {"helpfulness": 1.0, "verbosity": -0.5}
    (own / "config.json").write_text(json.dumps(cfg))
    from_config = load_judge(f"rm:{own}")
    got = from_config.score_batch(batch)
    assert close(values(got), [a - 0.5 * b for a, b, _ in raw])
    assert set(got[0].details["attributes"]) == {"helpfulness", "verbosity", "correctness"}


# ----------------------------------------------------------------------------- process scoring
def test_steps_score_each_prefix_and_reduce(tiny_models, judges):
    it = Item("Add 16 and 3, then halve.", "Step 1: 16 + 3 = 19.\n\nStep 2: 19 / 2 = 9.5.\nThe answer is 9.5.")
    ends = step_ends(it.response, "\n")
    assert len(ends) == 3
    prefixes = [values(judges("gpt2-rm").score_batch([Item(it.prompt, it.response[:e])]))[0] for e in ends]
    for how in ["min", "last", "mean", "prod"]:
        s = judges(f"gpt2-rm,steps=true,step_reduce={how}").score_batch([it, Item("Hi", "ok")])[0]
        assert close(s.details["steps"], prefixes)
        assert abs(s.value - reduce_steps(prefixes, how)) <= TOL
    assert abs(reduce_steps([0.0, 0.0], "prod") - 0.25) < 1e-12
    assert reduce_steps([3.0, -1.0, 2.0], "min") == -1.0
    custom = judges("gpt2-rm,steps=true,step_sep=Step").score_batch([it])[0]
    assert len(custom.details["steps"]) == 2  # "Step 1: ...", "Step 2: ... The answer is 9.5."
    first = values(judges("gpt2-rm").score_batch([Item(it.prompt, "Step 1: 16 + 3 = 19.\n\n")]))[0]
    assert abs(custom.details["steps"][0] - first) <= TOL


def test_step_tag_reads_one_score_per_tag_in_one_pass(tiny_models, judges):
    """A decoder attends causally, so the score at each tag equals a separate forward over
    the tokens up to that tag: the one-pass read must match that exactly."""
    tok, model = reference_model(tiny_models["gpt2-rm"])
    judge = judges("gpt2-rm,step_tag=<|unk|>,step_reduce=min")
    it = Item("Add 16 and 3, then halve.", "Step 1: 16 + 3 = 19.\nStep 2: 19 / 2 = 9.5.\nThe answer is 9.5.")
    s = judge.score_batch([it, Item("Hi", "one step only")])
    tag = tok.convert_tokens_to_ids("<|unk|>")
    tagged = "Step 1: 16 + 3 = 19.<|unk|>\nStep 2: 19 / 2 = 9.5.<|unk|>\nThe answer is 9.5.<|unk|>"
    ids = reference_ids(tok, it, tagged)["input_ids"]
    positions = [p for p, t in enumerate(ids) if t == tag]
    assert len(positions) == 3
    want = [reference_forward(model, {"input_ids": ids[: p + 1]})[0] for p in positions]
    assert close(s[0].details["steps"], want)
    assert abs(s[0].value - min(want)) <= TOL
    assert len(s[1].details["steps"]) == 1
    # the template's own markers (here <|end|>) are not mistaken for the response's tags
    end_tag = judges("gpt2-rm,step_tag=<|end|>").score_batch([it])[0]
    assert len(end_tag.details["steps"]) == 3
    with pytest.raises(SpecError, match="CLS"):
        load_judge(f"rm:{tiny_models['bert-rm']},step_tag=<|unk|>")


# ----------------------------------------------------------------------------- errors and identity
def test_bad_model_path_or_no_classification_head_give_clear_errors(tiny_models, tmp_path):
    with pytest.raises(JudgeError, match="not found"):
        load_judge(f"rm:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(JudgeError, match="no config.json"):
        load_judge(f"rm:{tmp_path / 'empty'}")
    with pytest.raises(JudgeError, match="neither a local folder nor a model in the local Hugging Face cache"):
        load_judge("rm:someone/not-a-cached-model")
    for lm in ["gpt2-lm", "llama-lm"]:
        with pytest.raises(JudgeError, match="no trained classification head.*ForCausalLM|no trained classification head.*LMHead"):
            load_judge(f"rm:{tiny_models[lm]}")
    with pytest.raises(SpecError, match="did you mean 'max_length'"):
        load_judge(f"rm:{tiny_models['gpt2-rm']},max_len=5")
    with pytest.raises(SpecError, match="truncation"):
        load_judge(f"rm:{tiny_models['gpt2-rm']},truncation=middle")
    with pytest.raises(SpecError, match="no CUDA"):
        if torch.cuda.is_available():
            raise SpecError("no CUDA (skipped: this machine has one)")
        load_judge(f"rm:{tiny_models['gpt2-rm']},device=cuda")


def test_fingerprint_tracks_weights_and_score_options_only(tiny_models, tmp_path):
    base = tiny_models["gpt2-rm"]
    fp = load_judge(f"rm:{base}").fingerprint
    assert load_judge(f"rm:{base},batch_tokens=64,padding=left,threads=1").fingerprint == fp
    assert load_judge(f"rm:{base},max_length=32").fingerprint != fp
    assert load_judge(f"rm:{base},truncation=right").fingerprint != fp
    copy = tmp_path / "gpt2-rm-copy"
    shutil.copytree(base, copy)
    assert load_judge(f"rm:{copy}").fingerprint == fp  # a copy of the same files is the same model
    from safetensors.torch import load_file, save_file

    weights = load_file(str(copy / "model.safetensors"))
    weights["score.weight"] = weights["score.weight"] + 0.01
    save_file(weights, str(copy / "model.safetensors"), metadata={"format": "pt"})
    assert load_judge(f"rm:{copy}").fingerprint != fp


def test_plan_batches_respects_budget_and_covers_everything():
    lengths = [5, 300, 7, 120, 120, 9, 64, 1, 300, 2]
    batches = plan_batches(lengths, batch_tokens=600, max_rows=4)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 4
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 600
    assert [lengths[b[0]] for b in batches] == sorted((lengths[b[0]] for b in batches), reverse=True)


@pytest.mark.gpu
def test_cuda_scores_match_cpu_and_auto_picks_bf16(tiny_models, judges):
    batch = items()
    cpu = values(judges("llama-rm").score_batch(batch))
    gpu32 = load_judge(f"rm:{tiny_models['llama-rm']},device=cuda,dtype=fp32")
    assert close(values(gpu32.score_batch(batch)), cpu, tol=1e-3)
    auto = load_judge(f"rm:{tiny_models['llama-rm']}")
    assert auto.device.startswith("cuda")
    assert auto.dtype == ("bfloat16" if torch.cuda.is_bf16_supported() else "float32")
    assert close(values(auto.score_batch(batch)), cpu, tol=0.05)


# ----------------------------------------------------------------------------- CLI
def test_cli_score_writes_rm_scores_and_truncation(tiny_models, tmp_path):
    from judge.cli import main

    src = tmp_path / "cands.jsonl"
    with open(src, "w") as fh:
        fh.write(json.dumps({"id": "a", "prompt": "What is 2 + 3?", "candidates": ["5", "It is five. " * 40]}) + "\n")
        fh.write(json.dumps({"prompt": "Bake bread?", "chosen": "Mix and bake.", "rejected": "No."}) + "\n")
    out = tmp_path / "scored.jsonl"
    spec = f"rm:{tiny_models['llama-rm']},max_length=64"
    result = CliRunner().invoke(main, ["score", str(src), "-o", str(out), "--judge", spec, "--quiet"])
    assert result.exit_code == 0, result.output
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [j["truncated"] for j in recs[0]["judgements"]["rm"]] == [False, True]
    judge = load_judge(spec)
    for rec in recs:
        cands = [c if isinstance(c, str) else c["text"] for c in rec["candidates"]]
        want = values(judge.score_batch([Item(rec["prompt"], c) for c in cands]))
        assert close(rec["scores"]["rm"], want)
        assert all(math.isfinite(v) for v in rec["scores"]["rm"])
