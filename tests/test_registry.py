"""Spec parsing, option parsing and the kind registry."""

from __future__ import annotations

import pytest

from judge.errors import SpecError
from judge.registry import available_kinds, describe_kinds, load_judge, parse_spec


@pytest.mark.parametrize(
    "text, kind, target, url, options, name",
    [
        ("verify:gsm8k", "verify", "gsm8k", None, {}, None),
        ("verify", "verify", None, None, {}, None),
        ("rm:./my-rm,batch_tokens=4096,dtype=bf16", "rm", "./my-rm", None, {"batch_tokens": "4096", "dtype": "bf16"}, None),
        ("rm:default", "rm", "default", None, {}, None),
        (
            "nemotron:nvidia/nemotron-4-340b-reward@https://host.example/v1",
            "nemotron", "nvidia/nemotron-4-340b-reward", "https://host.example/v1", {}, None,
        ),
        (
            "big=nemotron:m@http://127.0.0.1:8000/v1,concurrency=4",
            "nemotron", "m", "http://127.0.0.1:8000/v1", {"concurrency": "4"}, "big",
        ),
        ("rubric:rubrics/math-rationale.yaml,model=M@http://x/v1", "rubric", "rubrics/math-rationale.yaml", None,
         {"model": "M@http://x/v1"}, None),
        ("mine=python:my_judges.py:Judge", "python", "my_judges.py:Judge", None, {}, "mine"),
        ("v2 = verify:math , last_number=false", "verify", "math", None, {"last_number": "false"}, "v2"),
    ],
)
def test_parse_spec_table(text, kind, target, url, options, name):
    spec = parse_spec(text)
    assert (spec.kind, spec.target, spec.url, spec.options, spec.name) == (kind, target, url, options, name)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty judge spec"),
        ("verify:gsm8k,last_number", "must be key=value"),
        ("verify:gsm8k,a=1,a=2", "given twice"),
        ("nemotron:m@http://x,api_key=sk-123", "keys never go in a spec"),
        ("=verify", "empty name"),
    ],
)
def test_parse_spec_errors(text, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(text)


def test_unknown_kind_says_did_you_mean_and_lists_kinds():
    with pytest.raises(SpecError) as err:
        load_judge("verfy:gsm8k")
    text = str(err.value)
    assert "did you mean 'verify'" in text
    assert "kinds are:" in text and "rm" in text and "nemotron" in text


def test_unknown_option_says_did_you_mean_and_lists_options():
    with pytest.raises(SpecError, match=r"unknown option 'last_numbr' \(did you mean 'last_number'\?\); options are: last_number"):
        load_judge("verify:gsm8k,last_numbr=false")


def test_bad_option_value_names_the_type():
    with pytest.raises(SpecError, match="not a valid bool"):
        load_judge("verify:gsm8k,last_number=maybe")


def test_bad_preset():
    with pytest.raises(SpecError, match="presets are: gsm8k, math, exact"):
        load_judge("verify:physics")


def test_name_and_fingerprint():
    a = load_judge("strict=verify:gsm8k,last_number=false")
    b = load_judge("verify:gsm8k")
    assert a.name == "strict" and b.name == "verify"
    assert a.fingerprint != b.fingerprint  # options change scores, so they change the identity
    assert load_judge("other=verify:gsm8k").fingerprint == b.fingerprint  # the name does not


def test_registry_lists_builtin_kinds_lazily():
    kinds = available_kinds()
    for kind in ["verify", "rm", "nemotron", "openrlhf", "rubric", "length", "python"]:
        assert kind in kinds
    assert {row[0] for row in describe_kinds()} == set(kinds)


def test_python_kind_loads_a_user_function(tmp_path):
    (tmp_path / "my_judges.py").write_text(
        "def shortest(items):\n    return [-len(i.response) for i in items]\n", encoding="utf-8"
    )
    from judge.records import Item

    judge = load_judge(f"python:{tmp_path / 'my_judges.py'}:shortest")
    scores = judge.score_batch([Item("p", "abc"), Item("p", "a")])
    assert [s.value for s in scores] == [-3.0, -1.0]
    fp = judge.fingerprint
    (tmp_path / "my_judges.py").write_text(
        "def shortest(items):\n    return [-2 * len(i.response) for i in items]\n", encoding="utf-8"
    )
    assert load_judge(f"python:{tmp_path / 'my_judges.py'}:shortest").fingerprint != fp
