"""Every input format of DESIGN.md §3.1 and every bad-input case, with its message."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from judge.errors import InputError
from judge.io import BadRecord, complete_lines, read_groups
from judge.records import Group


def write(path, lines):
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines), encoding="utf-8")
    return path


def groups(path):
    return [g for g in read_groups(path)]


def test_grouped_rows_with_string_and_object_candidates(tmp_path):
    path = write(tmp_path / "c.jsonl", [
        {"id": "g1", "prompt": "2+2?", "reference": "4", "candidates": ["4", {"id": "c2", "text": "5", "meta": {"t": 1}}],
         "meta": {"source": "x"}, "human": {"choice": 0}, "custom": [1, 2]},
    ])
    (g,) = groups(path)
    assert g.id == "g1" and g.prompt == "2+2?" and g.reference == "4"
    assert [c.text for c in g.candidates] == ["4", "5"] and g.candidates[1].id == "c2"
    assert g.human == {"choice": 0} and g.meta == {"source": "x"}
    rec = g.to_record()
    assert rec["candidates"] == ["4", {"text": "5", "id": "c2", "meta": {"t": 1}}]
    assert rec["custom"] == [1, 2]  # unknown fields are carried through


def test_chat_prompt_and_numeric_reference(tmp_path):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    (g,) = groups(write(tmp_path / "c.jsonl", [{"prompt": msgs, "reference": 4, "candidates": ["4"]}]))
    assert g.prompt == msgs and g.reference == "4" and g.id == "1"
    assert g.items()[0].prompt_text == "Be brief.\n\n2+2?"


def test_flat_rows_are_grouped_by_consecutive_id(tmp_path):
    path = write(tmp_path / "flat.jsonl", [
        {"id": "a", "prompt": "p", "response": "r1"},
        {"id": "a", "prompt": "p", "response": "r2"},
        {"id": "b", "prompt": "q", "response": "s1", "reference": "1"},
    ])
    a, b = groups(path)
    assert (a.id, [c.text for c in a.candidates]) == ("a", ["r1", "r2"])
    assert (b.id, [c.text for c in b.candidates], b.reference) == ("b", ["s1"], "1")
    assert "response" not in a.to_record()


def test_preference_rows_become_two_candidates_with_human_choice(tmp_path):
    path = write(tmp_path / "pref.jsonl", [{"prompt": "p", "chosen": "good", "rejected": "bad"}])
    (g,) = groups(path)
    assert [c.text for c in g.candidates] == ["good", "bad"] and g.human == {"choice": 0}


def test_trl_conversational_preference_rows(tmp_path):
    path = write(tmp_path / "pref.jsonl", [{
        "prompt": [{"role": "user", "content": "hi"}],
        "chosen": [{"role": "assistant", "content": "hello!"}],
        "rejected": [{"role": "assistant", "content": "go away"}],
    }])
    (g,) = groups(path)
    assert [c.text for c in g.candidates] == ["hello!", "go away"]


def test_gzip_jsonl(tmp_path):
    import gzip

    path = tmp_path / "c.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"prompt": "p", "candidates": ["a"]}) + "\n")
    assert [g.prompt for g in groups(path)] == ["p"]


def test_parquet_and_csv_through_pandas(tmp_path):
    frame = pd.DataFrame({"id": ["a", "a", "b"], "prompt": ["p", "p", "q"], "response": ["r1", "r2", "s"]})
    frame.to_parquet(tmp_path / "flat.parquet")
    frame.to_csv(tmp_path / "flat.csv", index=False)
    for name in ["flat.parquet", "flat.csv"]:
        got = [(g.id, [c.text for c in g.candidates]) for g in groups(tmp_path / name)]
        assert got == [("a", ["r1", "r2"]), ("b", ["s"])], name
    grouped = pd.DataFrame({"id": ["g"], "prompt": ["p"], "candidates": [json.dumps(["x", "y"])], "reference": ["1"]})
    grouped.to_csv(tmp_path / "grouped.csv", index=False)
    (g,) = groups(tmp_path / "grouped.csv")
    assert [c.text for c in g.candidates] == ["x", "y"] and g.reference == "1"


BAD_CASES = [
    ('{"prompt": "p", "candidates": ["a"]', 1, "invalid JSON"),
    (b'{"prompt": "p\xff", "candidates": ["a"]}', 1, "invalid UTF-8"),
    ({"candidates": ["a"]}, 1, "prompt: missing"),
    ({"prompt": "p"}, 1, "candidates: missing"),
    ({"prompt": "p", "candidates": []}, 1, "candidates: empty list"),
    ({"prompt": "p", "candidates": "abc"}, 1, "candidates: must be a list"),
    ({"prompt": 5, "candidates": ["a"]}, 1, "prompt: must be a string or a list of chat messages"),
    ({"prompt": "p", "candidates": [3]}, 1, "candidates[0]: must be a string or an object"),
    ({"prompt": "p", "candidates": [{"id": "x"}]}, 1, "candidates[0].text: missing or not a string"),
    ({"prompt": [{"role": "bot", "content": "x"}], "candidates": ["a"]}, 1, "prompt[0].role"),
    ({"prompt": "p", "candidates": ["a"], "reference": ["x"]}, 1, "reference: must be a string"),
    ({"prompt": "p", "candidates": ["a"], "meta": "x"}, 1, "meta: must be an object"),
    ("[1, 2]", 1, "expected a JSON object"),
    ({"prompt": "p", "response": "r"}, 1, "id: missing"),
]


@pytest.mark.parametrize("bad, line, message", BAD_CASES)
def test_bad_record_names_file_line_and_field(tmp_path, bad, line, message):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"prompt": "ok", "candidates": ["a"]}).encode() + b"\n"
    raw = bad if isinstance(bad, bytes) else (bad if isinstance(bad, str) else json.dumps(bad)).encode()
    path.write_bytes(good + raw + b"\n" + good)
    with pytest.raises(InputError) as err:
        groups(path)
    assert str(err.value).startswith(f"{path}:{line + 1}: ")
    assert message in str(err.value)
    units = list(read_groups(path, skip_bad=True))
    assert [type(u) for u in units] == [Group, BadRecord, Group]
    assert units[1].error.line == line + 1


def test_missing_file():
    with pytest.raises(InputError, match="file not found"):
        groups("/nonexistent/c.jsonl")


def test_complete_lines_cuts_a_torn_last_line(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a": ')
    assert complete_lines(path) == 2
    assert path.read_bytes() == b'{"a": 1}\n{"a": 2}\n'
