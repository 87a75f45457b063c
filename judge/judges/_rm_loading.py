"""Loading for the `rm:` judge: where the model is (local folder or the local hub cache,
never a download), which device and dtype, the tokenizer (with a pad token), and the model
with a check that it really has a trained classification head. Errors are JudgeErrors a
user can act on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from judge.errors import JudgeError, SpecError

_DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
           "fp16": "float16", "float16": "float16"}
_HEADS = ("score", "classifier", "v_head", "value_head", "reward_head")


def resolve_path(target: str) -> Path:
    """A local folder, or a hub id already in the local cache (never downloads)."""
    path = Path(target).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise JudgeError(f"rm: {path} is a folder but has no config.json; point rm: at a saved transformers model")
        return path
    if path.exists():
        raise JudgeError(f"rm: {path} is a file; point rm: at a model folder (with config.json and weights)")
    if target.startswith((".", "/", "~")) or target.count("/") != 1:
        raise JudgeError(f"rm: model folder {target!r} not found")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(target, local_files_only=True))
    except Exception:
        raise JudgeError(
            f"rm: {target!r} is neither a local folder nor a model in the local Hugging Face cache; "
            f"download it first (hf download {target}) or give a path"
        ) from None


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"
        return "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SpecError(f"rm: device={name} but torch sees no CUDA GPU (use device=cpu or auto)")
    if name != "cpu" and not name.startswith(("cuda", "mps", "xpu")):
        raise SpecError(f"rm: device={name!r}; expected auto, cpu, cuda or cuda:N")
    return name


def resolve_dtype(name: str, device: str) -> str:
    import torch

    if name == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return "bfloat16"
        return "float32"
    if name not in _DTYPES:
        raise SpecError(f"rm: dtype={name!r}; expected auto, fp32, bf16 or fp16")
    return _DTYPES[name]


def set_cpu_threads(device: str, threads: int | None) -> None:
    """Give each torchrun rank on a machine its share of the cores (DESIGN.md §7: ranks
    that each take every core thrash); an explicit `threads=` wins."""
    import torch

    if not device.startswith("cpu"):
        return
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if threads is None and local > 1:
        threads = max(1, (os.cpu_count() or 1) // local)
    if threads:
        torch.set_num_threads(threads)


def load_tokenizer(path: Path, trust_remote_code: bool) -> Any:
    """The model's tokenizer, with a pad token set when it has none."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise JudgeError(f"rm: cannot load a tokenizer from {path}: {type(exc).__name__}: {exc}") from None
    if tok.pad_token_id is None:
        # Only fills padded slots: the judge reads the score at the last real token by the
        # attention mask, so reusing EOS here cannot move where the score is read.
        tok.pad_token = tok.eos_token or tok.unk_token or tok.convert_ids_to_tokens(0)
    return tok


def _from_pretrained(path: Path, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report and progress bar are noise here
    hf_logging.disable_progress_bar()
    try:
        return AutoModelForSequenceClassification.from_pretrained(str(path), output_loading_info=True, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def load_model(path: Path, dtype: str, device: str, attn: str | None, trust_remote_code: bool) -> tuple[Any, str, Any]:
    """(model in eval mode on device, pooling, base model).

    pooling "last": a decoder with a linear `score` head, whose score the judge reads itself
    at the last real token (the model's own pooling looks for the last non-pad token id,
    which moves when pad == eos); "model": anything else (CLS-pooling encoders, custom
    heads), whose forward pooling is used with right padding."""
    import torch

    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype), "trust_remote_code": trust_remote_code}
    if attn is not None:
        if attn not in {"sdpa", "eager", "flash_attention_2", "flash_attention_3"}:
            raise SpecError(f"rm: attn={attn!r}; expected sdpa, eager or flash_attention_2")
        kwargs["attn_implementation"] = attn
    try:
        try:
            model, info = _from_pretrained(path, kwargs)
        except ValueError as exc:
            if attn is None and "sdpa" in str(exc).lower():  # an architecture without sdpa
                model, info = _from_pretrained(path, {**kwargs, "attn_implementation": "eager"})
            elif "Unrecognized configuration class" in str(exc):
                raise JudgeError(f"rm: {path} is a model type without a sequence-classification class in "
                                 "transformers, so it cannot be used as a reward model") from None
            else:
                raise
    except JudgeError:
        raise
    except Exception as exc:
        raise JudgeError(f"rm: cannot load a reward model from {path}: {type(exc).__name__}: {exc}") from None
    head = next((name for name in _HEADS if hasattr(model, name)), None)
    missing = sorted(k for k in info.get("missing_keys", ()) if head is None or k.startswith(head))
    if missing:
        arch = ", ".join(getattr(model.config, "architectures", None) or ["unknown"])
        raise JudgeError(
            f"rm: {path} has no trained classification head (missing {', '.join(missing[:3])}; saved as "
            f"{arch}): it is not a reward model; choose a model saved as *ForSequenceClassification"
        )
    model.to(device).eval()
    base = getattr(model, model.base_model_prefix, None)
    pooling = "last" if isinstance(getattr(model, "score", None), torch.nn.Linear) and base is not None else "model"
    return model, pooling, base


def max_positions(config: Any, tokenizer: Any, requested: int | None) -> int:
    """max_length=, else the smaller of the model's positions and the tokenizer's limit."""
    if requested is not None:
        if requested < 2:
            raise SpecError("rm: max_length must be at least 2")
        return requested
    limits = [getattr(config, k, None) for k in ("max_position_embeddings", "n_positions")]
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and tok_max < 1_000_000:
        limits.append(tok_max)
    return min((x for x in limits if isinstance(x, int) and x > 0), default=4096)


def special_ids(tokenizer: Any) -> set[int]:
    """All special token ids, including added specials (role markers) not in all_special_ids."""
    ids = set(tokenizer.all_special_ids)
    for idx, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(added, "special", False):
            ids.add(int(idx))
    return ids
