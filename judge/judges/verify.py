"""`verify`: STaR's filter. Extract the final answer from a rationale and compare it with
the group's `reference` after normalisation (commas, `$`, units, `.0`, fractions vs decimals,
LaTeX \\frac/\\dfrac, \\text, degrees, spacing). Scores 1.0 (match) or 0.0 (no match or no
answer found, recorded as such); a missing reference is an error, not a zero.

Presets: verify:gsm8k (`#### 18` first), verify:math (`\\boxed{}` first), verify:exact
(same extraction, strings compared exactly after trimming)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from fractions import Fraction
from typing import ClassVar

from judge.errors import SpecError
from judge.judges.base import BaseJudge, JudgeSpec
from judge.records import Item, Score

_NUMBER = r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+"
_GSM_MARK = re.compile(r"####\s*(.+)")
_ANSWER_IS = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*[:\s]*(.+?)(?:\.\s|\.?$|\n)",
    re.IGNORECASE | re.MULTILINE,
)
_LAST_NUMBER = re.compile(_NUMBER)


def find_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} or \\fbox{...}, nested braces included."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    for start in reversed(starts):
        depth, i = 1, start
        while i < len(text):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i]
            i += 1
    bare = re.findall(r"\\boxed\s+([^\s$]+)", text)  # \boxed 5
    return bare[-1] if bare else None


def _gsm_mark(text: str) -> str | None:
    matches = _GSM_MARK.findall(text)
    return matches[-1].strip() if matches else None


def _answer_is(text: str) -> str | None:
    matches = _ANSWER_IS.findall(text)
    return matches[-1].strip() if matches else None


def _last_number(text: str) -> str | None:
    matches = _LAST_NUMBER.findall(text)
    return matches[-1] if matches else None


EXTRACTORS = {"gsm8k": _gsm_mark, "boxed": find_boxed, "answer_is": _answer_is}
PRESET_ORDER = {
    "gsm8k": ("gsm8k", "answer_is", "boxed"),
    "math": ("boxed", "answer_is", "gsm8k"),
    "exact": ("boxed", "gsm8k", "answer_is"),
}


def extract_answer(text: str, order: Sequence[str], last_number: bool = True) -> tuple[str | None, str | None]:
    """(answer, how it was found) or (None, None) when nothing looks like an answer."""
    for name in order:
        found = EXTRACTORS[name](text)
        if found:
            return found, name
    if last_number:
        found = _last_number(text)
        if found:
            return found, "last_number"
    return None, None


_TEXT_CMDS = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_UNIT_WORDS = re.compile(r"(?<=\d)\s*[a-zA-Z][a-zA-Z\s./²³^]*$")
_FRAC = re.compile(r"\\frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_FRAC_SHORT = re.compile(r"\\frac\s*(\d)\s*(\d)")
_SQRT_SHORT = re.compile(r"\\sqrt\s*(\w)")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")


def normalize(answer: str) -> str:
    """Canonical text form of an answer; numbers are compared separately as values."""
    s = answer.strip()
    if "\\boxed" in s or "\\fbox" in s:
        s = find_boxed(s) or s
    s = s.replace("\\!", "").replace("\\,", "").replace("\\;", "").replace("\\:", "").replace("\\ ", " ")
    s = re.sub(r"\\(?:d|t)frac", r"\\frac", s)
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("\\displaystyle", "")
    for _ in range(3):
        s = _TEXT_CMDS.sub(r"\1", s)
    s = re.sub(r"\^\s*\{?\\circ\}?|°|\\degree", "", s)
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace("\\$", "").replace("$", "")
    s = re.sub(r"^\\\(|\\\)$|^\\\[|\\\]$", "", s)
    s = s.rstrip(".").strip()
    s = re.sub(r"^(?:[a-zA-Z]\s*=|\\?[a-zA-Z]+\s*=)\s*(?=\S)", "", s) if s.count("=") == 1 else s
    if _THOUSANDS.match(s.replace(" ", "")):
        s = s.replace(",", "")
    s = _UNIT_WORDS.sub("", s) if re.match(r"^-?[\d.,]+\s*[a-zA-Z]", s) else s
    s = _FRAC_SHORT.sub(r"\\frac{\1}{\2}", s)
    s = _SQRT_SHORT.sub(r"\\sqrt{\1}", s)
    s = re.sub(r"\s+", "", s)
    s = s.replace("{,}", "")
    return s


def to_number(s: str) -> Fraction | None:
    """A normalised answer as an exact number, when it is one (18, 18.0, 3/4, \\frac{3}{4})."""
    s = s.replace(",", "") if _THOUSANDS.match(s) else s
    m = _FRAC.fullmatch(s) or re.fullmatch(r"(-?\d+)/(\d+)", s)
    neg = False
    if m is None and s.startswith("-"):
        m = _FRAC.fullmatch(s[1:])
        neg = m is not None
    if m:
        try:
            value = Fraction(int(m.group(1)), int(m.group(2)))
        except (ValueError, ZeroDivisionError):
            return None
        return -value if neg else value
    if re.fullmatch(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", s):
        return Fraction(s)
    return None


def answers_match(answer: str, reference: str, exact: bool = False) -> bool:
    if exact:
        return answer.strip() == reference.strip()
    a, r = normalize(answer), normalize(reference)
    if a == r:
        return True
    na, nr = to_number(a), to_number(r)
    if na is not None and nr is not None:
        if na == nr:
            return True
        # A decimal with 3+ places may be a rounding of the reference (0.333 for 1/3):
        # accept it when it is within half a unit of its last place, never otherwise.
        places = len(a.split(".", 1)[1]) if "." in a and a.replace("-", "").replace(".", "").isdigit() else 0
        return places >= 3 and abs(na - nr) <= Fraction(1, 2 * 10**places)
    parts_a, parts_r = _split_top(a), _split_top(r)
    if len(parts_r) > 1 and len(parts_a) == len(parts_r):
        return all(answers_match(x, y) for x, y in zip(parts_a, parts_r))
    return False


def _split_top(s: str) -> list[str]:
    """Split a tuple/list answer on top-level commas, ignoring outer brackets."""
    if len(s) >= 2 and s[0] in "([{" and s[-1] in ")]}":
        s = s[1:-1]
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


@dataclasses.dataclass
class VerifyOptions:
    last_number: bool | None = None
    """Fall back to the last number in the text when no marked answer is found (default: on for gsm8k/math)."""
    reference_format: str | None = None
    """How to read `reference`: 'answer' (as is) or 'solution' (extract its answer first); default: auto."""


class VerifyJudge(BaseJudge):
    kind: ClassVar[str] = "verify"
    Options: ClassVar[type] = VerifyOptions
    batch_size = 1024

    def __init__(self, spec: JudgeSpec) -> None:
        super().__init__(spec)
        self.preset = spec.target or "gsm8k"
        if self.preset not in PRESET_ORDER:
            raise SpecError(f"verify: unknown preset {self.preset!r}; presets are: {', '.join(PRESET_ORDER)}")
        self.order = PRESET_ORDER[self.preset]
        opt = self.options.last_number
        self.last_number = (self.preset != "exact") if opt is None else opt
        if self.options.reference_format not in (None, "answer", "solution"):
            raise SpecError("verify: reference_format must be 'answer' or 'solution'")

    def _reference_answer(self, reference: str) -> str:
        fmt = self.options.reference_format
        if fmt == "answer" or (fmt is None and "\n" not in reference and len(reference) < 80):
            return reference
        found, _ = extract_answer(reference, self.order, last_number=True)
        return found if found is not None else reference

    def score_item(self, item: Item) -> Score:
        if item.reference is None or str(item.reference).strip() == "":
            return Score.failed("no reference to verify against")
        answer, how = extract_answer(item.response, self.order, self.last_number)
        if answer is None:
            return Score(0.0, details={"answer": None, "no_answer": True})
        ok = answers_match(answer, self._reference_answer(str(item.reference)), exact=self.preset == "exact")
        return Score(1.0 if ok else 0.0, details={"answer": answer, "via": how})

    def score_batch(self, items: Sequence[Item]) -> list[Score]:
        return [self.score_item(item) for item in items]
