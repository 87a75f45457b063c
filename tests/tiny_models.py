"""Tiny real transformers models and tokenizers, built from configs with no download.

Used by the tests (through conftest fixtures) and by benchmarks. The tokenizer is a
byte-level BPE trained here on a small corpus, so any text round-trips; models are
randomly initialised with a fixed seed, so scores are deterministic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_CORPUS = [
    "Janet has 16 eggs and eats 3 of them, so she has 13 left. The answer is 13.",
    "Step 1: add the numbers. Step 2: multiply by 2. #### 42",
    "Human: how do I bake bread? Assistant: Mix flour, water, salt and yeast, then bake.",
    "The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9 + - * / = $ % .",
    "\\boxed{\\frac{1}{2}} is one half; \\sqrt{2} is irrational.",
    "You are a helpful assistant. Please answer the question carefully and show your work.",
]


def build_tokenizer(out_dir: str | Path | None = None, vocab_size: int = 400, chat_template: bool = True) -> Any:
    """A fast byte-level BPE tokenizer with bos/eos/pad and (optionally) a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|pad|>", "<|bos|>", "<|eos|>", "<|unk|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    tok = Tokenizer(models.BPE(unk_token="<|unk|>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|bos|>",
        eos_token="<|eos|>",
        pad_token="<|pad|>",
        unk_token="<|unk|>",
    )
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    if out_dir is not None:
        fast.save_pretrained(str(out_dir))
    return fast


def _config(arch: str, vocab_size: int, num_labels: int, layers: int, hidden: int) -> Any:
    from transformers import BertConfig, GPT2Config, LlamaConfig

    common = {"vocab_size": vocab_size, "num_labels": num_labels, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    if arch == "gpt2":
        return GPT2Config(n_layer=layers, n_embd=hidden, n_head=4, n_positions=512, **common)
    if arch == "llama":
        return LlamaConfig(
            num_hidden_layers=layers, hidden_size=hidden, intermediate_size=hidden * 2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512, **common,
        )
    if arch == "bert":
        return BertConfig(
            num_hidden_layers=layers, hidden_size=hidden, intermediate_size=hidden * 2, num_attention_heads=4,
            max_position_embeddings=512, **common,
        )
    raise ValueError(f"unknown arch {arch!r}")


def build_reward_model(
    out_dir: str | Path, arch: str = "gpt2", num_labels: int = 1, layers: int = 2, hidden: int = 64,
    chat_template: bool = True, seed: int = 0,
) -> Path:
    """Save a tiny AutoModelForSequenceClassification + tokenizer to out_dir and return it."""
    import torch
    from transformers import AutoModelForSequenceClassification

    out = Path(out_dir)
    tok = build_tokenizer(out, chat_template=chat_template and arch != "bert")
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(_config(arch, len(tok), num_labels, layers, hidden))
    model.eval()
    model.save_pretrained(str(out))
    return out


def build_causal_lm(out_dir: str | Path, arch: str = "gpt2", layers: int = 2, hidden: int = 64, seed: int = 0) -> Path:
    """Save a tiny AutoModelForCausalLM + tokenizer (with chat template) to out_dir."""
    import torch
    from transformers import AutoModelForCausalLM

    out = Path(out_dir)
    tok = build_tokenizer(out)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(_config(arch, len(tok), 1, layers, hidden))
    model.save_pretrained(str(out))
    return out
