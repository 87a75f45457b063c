"""Judge kinds: a lazy table of "module:Class" plus the `judge.judges` entry-point group.

Nothing is imported until a kind is used, so `judge score --judge verify` never imports torch.
parse_spec() reads `[NAME=]KIND:TARGET[@URL][,key=value...]`; errors say "did you mean"."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from importlib.metadata import entry_points

from judge.errors import SpecError
from judge.judges.base import Judge, JudgeSpec

KINDS: dict[str, str] = {
    "verify": "judge.judges.verify:VerifyJudge",
    "length": "judge.judges.length:LengthJudge",
    "field": "judge.judges.field:FieldJudge",
    "rm": "judge.judges.reward_model:RewardModelJudge",
    "nemotron": "judge.judges.endpoint:NemotronJudge",
    "openai-rm": "judge.judges.endpoint:NemotronJudge",
    "openrlhf": "judge.judges.endpoint:OpenRLHFJudge",
    "rubric": "judge.judges.rubric:RubricJudge",
    "python": "judge.judges.python:PythonJudge",
}


def available_kinds() -> dict[str, str]:
    """Built-in kinds plus third-party ones registered under the `judge.judges` entry points."""
    kinds = dict(KINDS)
    for ep in entry_points(group="judge.judges"):
        kinds.setdefault(ep.name, ep.value)
    return kinds


def _module_exists(path: str) -> bool:
    module = path.split(":", 1)[0]
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def load_class(kind: str) -> type:
    kinds = available_kinds()
    if kind not in kinds:
        close = difflib.get_close_matches(kind, list(kinds), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SpecError(f"unknown judge kind {kind!r}{hint}; kinds are: {', '.join(sorted(kinds))}")
    module_name, _, attr = kinds[kind].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise SpecError(f"judge kind {kind!r} needs a module that is not installed: {exc.name}") from exc
    return getattr(module, attr)


def parse_spec(text: str) -> JudgeSpec:
    """Parse `[NAME=]KIND[:TARGET][@URL][,key=value...]`."""
    raw = text.strip()
    if not raw:
        raise SpecError("empty judge spec; expected KIND:TARGET, e.g. verify:gsm8k")
    name = None
    head = raw.split(":", 1)[0].split(",", 1)[0]
    if "=" in head:
        name, raw = raw.split("=", 1)
        name = name.strip()
        if not name:
            raise SpecError(f"judge spec {text!r}: empty name before '='")
    first, *rest = raw.split(",")
    kind, _, target_url = first.partition(":")
    kind = kind.strip()
    target, url = target_url, None
    if "@" in target_url:
        target, url = target_url.split("@", 1)
    options: dict[str, str] = {}
    for part in rest:
        if not part.strip():
            continue
        if "=" not in part:
            raise SpecError(f"judge spec {text!r}: option {part!r} must be key=value")
        key, value = part.split("=", 1)
        key = key.strip()
        if key in options:
            raise SpecError(f"judge spec {text!r}: option {key!r} given twice")
        if key in {"api_key", "key", "token"}:
            raise SpecError(
                f"judge spec {text!r}: keys never go in a spec; set an environment variable "
                "and name it with api_key_env=VAR"
            )
        options[key] = value.strip()
    return JudgeSpec(kind=kind, target=target.strip() or None, url=url or None, options=options, name=name, text=text)


def load_judge(spec: str | JudgeSpec) -> Judge:
    """Build a judge from a spec string, e.g. load_judge("verify:gsm8k")."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    cls = load_class(parsed.kind)
    return cls(parsed)


def describe_kinds() -> list[tuple[str, str, str]]:
    """(kind, "module:Class", one-line description) for `judge judges`; no heavy imports."""
    rows = []
    for kind, path in sorted(available_kinds().items()):
        desc = _DESCRIPTIONS.get(kind, "")
        if not _module_exists(path):
            desc = (desc + " (not available in this install)").strip()
        rows.append((kind, path, desc))
    return rows


_DESCRIPTIONS = {
    "verify": "final-answer check against `reference` (presets: gsm8k, math, exact)",
    "length": "baseline: longer response scores higher (characters; length:words for words)",
    "field": "import scores already in the input, e.g. field:meta.gpt_score",
    "rm": "local transformers reward model (CPU or GPU), e.g. rm:./my-rm,dtype=bf16",
    "nemotron": "Nemotron reward model behind an OpenAI-compatible endpoint: nemotron:MODEL@URL",
    "openai-rm": "alias of nemotron: any reward model served via /chat/completions",
    "openrlhf": "OpenRLHF remote reward server (POST /get_reward): openrlhf:NAME@URL",
    "rubric": "LLM judge with a rubric: rubric:rubrics/FILE.yaml,model=M@URL",
    "python": "your own judge class or reward function: python:my_judges.py:MyJudge",
}
