"""`judge serve`: real HTTP on 127.0.0.1 (uvicorn in a thread, or the CLI in a subprocess),
the endpoint judges as its clients, and the HTTP errors it owes (401/413/400/422)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from judge.records import Item, Score
from judge.registry import load_judge
from judge.serve import ServeConfig, serve_in_thread

ROOT = Path(__file__).resolve().parent.parent
HAVE_RM = importlib.util.find_spec("judge.judges.reward_model") is not None

ITEMS = [
    Item("What is 2 + 2?", "4"),
    Item("What is 2 + 2?", "It is four, because two and two make four."),
    Item([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}], "Blue."),
    Item([{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "u2"}],
         "a2, a longer answer with more tokens in it"),
]


def config(**kw) -> ServeConfig:
    return ServeConfig(judge="", port=0, **kw)


class AttributeJudge:
    """A stand-in multi-attribute judge: HelpSteer2's five attributes from the text."""

    name = "attrs"
    fingerprint = "attrs:v1"

    def __init__(self, helpsteer: bool = True) -> None:
        self.names = ("helpfulness", "correctness", "coherence", "complexity", "verbosity") if helpsteer else ("x", "y")

    def score_batch(self, items: Sequence[Item]) -> list[Score]:
        out = []
        for it in items:
            attrs = {n: (len(it.response) * (i + 1)) % 7 / 2 for i, n in enumerate(self.names)}
            out.append(Score(sum(attrs.values()), details={"attributes": attrs}))
        return out


@pytest.mark.skipif(not HAVE_RM, reason="judge.judges.reward_model (the rm: judge) is not in this checkout yet")
@pytest.mark.parametrize("model", ["gpt2-rm", "llama-rm"])
def test_client_scores_equal_the_local_rm_judge(tiny_models, model):
    local = load_judge(f"rm:{tiny_models[model]}")
    expected = local.score_batch(ITEMS)
    hosted = load_judge(f"rm:{tiny_models[model]}")
    with serve_in_thread(hosted, config(batch_wait_ms=20)) as url:
        client = load_judge(f"nemotron:{model}@{url}/v1,concurrency=4")
        got = client.score_batch(ITEMS * 3)  # concurrent, so the server batches them together
        rlhf = load_judge(f"openrlhf:{url},batch=2")
        got_rlhf = rlhf.score_batch(ITEMS[:2])
        client.close()
        rlhf.close()
    assert all(s.ok for s in expected)
    for e, g in zip(expected * 3, got):
        assert g.value == pytest.approx(e.value, abs=1e-5), g
    for e, g in zip(expected[:2], got_rlhf):
        assert g.value == pytest.approx(e.value, abs=1e-5), g


@pytest.mark.skipif(not HAVE_RM, reason="judge.judges.reward_model (the rm: judge) is not in this checkout yet")
def test_multi_head_rm_travels_as_attributes_plus_its_reward(tiny_models):
    spec = f"rm:{tiny_models['gpt2-rm-3']},weights=1;0.5;0"
    expected = load_judge(spec).score_batch(ITEMS[:2])
    with serve_in_thread(load_judge(spec), config()) as url:
        client = load_judge(f"nemotron:rm3@{url}/v1")
        got = client.score_batch(ITEMS[:2])
        client.close()
    for e, g in zip(expected, got):
        assert g.value == pytest.approx(e.value, abs=1e-5)
        assert set(g.details["attributes"]) == {"LABEL_0", "LABEL_1", "LABEL_2", "reward"}


def test_length_judge_round_trips_exactly_through_both_protocols():
    judge = load_judge("length")
    expected = [s.value for s in judge.score_batch(ITEMS)]
    with serve_in_thread(load_judge("length"), config()) as url:
        chat = load_judge(f"openai-rm:length@{url}/v1")
        rlhf = load_judge(f"openrlhf:{url}")
        assert [s.value for s in chat.score_batch(ITEMS)] == expected
        assert [s.value for s in rlhf.score_batch(ITEMS[:2])] == expected[:2]
        chat.close()
        rlhf.close()
        raw = httpx.post(f"{url}/v1/chat/completions", json={
            "model": "length", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
    body = raw.json()
    assert raw.status_code == 200 and body["choices"][0]["message"]["content"] == "reward:5.0"


def test_attribute_judge_answers_in_the_340b_shape():
    with serve_in_thread(AttributeJudge(), config()) as url:
        r = httpx.post(f"{url}/v1/chat/completions", json={
            "model": "x", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "abc"}]})
        client = load_judge(f"nemotron:nemotron-4-340b-reward@{url}/v1,weights=helpfulness")
        (score,) = client.score_batch([Item("q", "abc")])
        client.close()
    choice = r.json()["choices"][0]
    expected = AttributeJudge().score_batch([Item("q", "abc")])[0].details["attributes"]
    assert [e["token"] for e in choice["logprobs"]["content"]] == list(expected)
    assert [e["logprob"] for e in choice["logprobs"]["content"]] == list(expected.values())
    assert choice["message"]["content"] == ",".join(f"{k}:{v!r}" for k, v in expected.items())
    assert score.value == expected["helpfulness"]


def test_non_helpsteer_attributes_carry_the_judges_own_reward():
    judge = AttributeJudge(helpsteer=False)
    (expected,) = judge.score_batch([Item("q", "abcd")])
    with serve_in_thread(judge, config()) as url:
        client = load_judge(f"nemotron:m@{url}/v1")
        (score,) = client.score_batch([Item("q", "abcd")])
        client.close()
    assert score.value == expected.value and set(score.details["attributes"]) == {"x", "y", "reward"}


def test_concurrent_requests_are_batched_dynamically():
    judge = load_judge("length")
    calls: list[int] = []
    real = judge.score_batch

    def counting(items):
        calls.append(len(items))
        time.sleep(0.02)  # a forward pass takes time; requests pile up meanwhile
        return real(items)

    judge.score_batch = counting
    with serve_in_thread(judge, config(batch_wait_ms=20)) as url:
        client = load_judge(f"nemotron:m@{url}/v1,concurrency=32")
        scores = client.score_batch([Item("q", "x" * i) for i in range(1, 65)])
        client.close()
        health = httpx.get(f"{url}/health").json()
    assert [s.value for s in scores] == [float(i) for i in range(1, 65)]
    assert sum(calls) == 64 and len(calls) < 32 and max(calls) > 1
    assert health["items"] == 64 and health["batches"] == len(calls)


def test_batching_off_scores_one_item_per_call():
    judge = load_judge("length")
    calls: list[int] = []
    real = judge.score_batch
    judge.score_batch = lambda items: calls.append(len(items)) or real(items)
    with serve_in_thread(judge, config(max_batch_items=1)) as url:
        client = load_judge(f"nemotron:m@{url}/v1,concurrency=8")
        client.score_batch([Item("q", "x" * i) for i in range(1, 17)])
        client.close()
    assert calls == [1] * 16


def test_auth_size_json_and_shape_errors(monkeypatch):
    monkeypatch.setenv("SERVE_TEST_KEY", "serve-secret-123")
    chat = {"model": "m", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    with serve_in_thread(load_judge("length"), config(api_key_env="SERVE_TEST_KEY", max_body_bytes=2000)) as url:
        ok = {"Authorization": "Bearer serve-secret-123"}
        assert httpx.post(f"{url}/v1/chat/completions", json=chat).status_code == 401
        wrong = httpx.post(f"{url}/v1/chat/completions", json=chat, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "serve-secret-123" not in wrong.text
        assert httpx.get(f"{url}/v1/models").status_code == 401
        assert httpx.get(f"{url}/health").status_code == 200  # liveness probes need no key
        assert httpx.post(f"{url}/v1/chat/completions", json=chat, headers=ok).status_code == 200
        assert httpx.get(f"{url}/v1/models", headers=ok).json()["data"][0]["object"] == "model"
        big = {**chat, "messages": [{"role": "user", "content": "x" * 5000}, {"role": "assistant", "content": "a"}]}
        r413 = httpx.post(f"{url}/v1/chat/completions", json=big, headers=ok)
        assert r413.status_code == 413 and "limit" in r413.json()["error"]["message"]
        r400 = httpx.post(f"{url}/v1/chat/completions", content=b'{"messages": [', headers=ok)
        assert r400.status_code == 400 and "malformed JSON" in r400.json()["error"]["message"]
        no_assistant = {**chat, "messages": [{"role": "user", "content": "q"}]}
        r422 = httpx.post(f"{url}/v1/chat/completions", json=no_assistant, headers=ok)
        assert r422.status_code == 422 and "assistant" in r422.json()["error"]["message"]
        for bad in ({"messages": "hi"}, {"messages": [{"content": "x"}]}, [1, 2]):
            assert httpx.post(f"{url}/v1/chat/completions", json=bad, headers=ok).status_code == 422
        assert httpx.post(f"{url}/get_reward", json={"queries": []}, headers=ok).status_code == 422
        # The endpoint judge sends the key from the environment and gets scores.
        monkeypatch.setenv("NVIDIA_API_KEY", "serve-secret-123")
        client = load_judge(f"nemotron:m@{url}/v1")
        assert client.score_batch([Item("q", "abc")])[0].value == 3.0
        client.close()


def test_missing_server_key_variable_is_a_clear_error():
    from judge.errors import SpecError
    from judge.serve import create_app

    with pytest.raises(SpecError, match="NO_SUCH_VAR"):
        create_app(load_judge("length"), config(api_key_env="NO_SUCH_VAR"))


def test_failed_item_is_null_in_get_reward_and_422_in_chat():
    verify = load_judge("verify:gsm8k")  # without a reference it records an error
    with serve_in_thread(verify, config()) as url:
        r = httpx.post(f"{url}/get_reward", json={"query": ["The answer is 4."]})
        assert r.status_code == 200 and r.json()["rewards"] == [None] and r.json()["errors"][0]
        c = httpx.post(f"{url}/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "The answer is 4."}]})
        assert c.status_code == 422 and "reference" in c.json()["error"]["message"]
        with_ref = httpx.post(f"{url}/v1/chat/completions", json={
            "reference": "4",
            "messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "The answer is 4."}]})
        assert with_ref.json()["choices"][0]["message"]["content"] == "reward:1.0"


def test_a_crashing_judge_answers_500_and_the_server_stays_up():
    class Boom:
        name, fingerprint = "boom", "boom:1"

        def score_batch(self, items):
            if any("boom" in i.response for i in items):
                raise RuntimeError("kaput")
            return [Score(1.0) for _ in items]

    with serve_in_thread(Boom(), config(max_batch_items=1)) as url:
        chat = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "boom"}]}
        r = httpx.post(f"{url}/v1/chat/completions", json=chat)
        assert r.status_code == 500 and "kaput" in r.json()["error"]["message"]
        chat["messages"][-1]["content"] = "fine"
        assert httpx.post(f"{url}/v1/chat/completions", json=chat).status_code == 200


def test_cli_serve_on_a_free_port():
    proc = subprocess.Popen([sys.executable, "-m", "judge", "serve", "--judge", "length", "--port", "0"],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(proc.stderr.readline()), daemon=True)
        reader.start()
        reader.join(timeout=60)
        assert line and "http://127.0.0.1:" in line[0], line
        url = line[0].split(" on ", 1)[1].split()[0]
        for _ in range(100):  # uvicorn starts just after the line is printed
            try:
                health = httpx.get(f"{url}/health")
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert health.json()["judge"] == "length"
        r = httpx.post(f"{url}/get_reward", json={"query": ["Q\nhello"], "prompts": ["Q\n"]})
        assert r.json()["rewards"] == [5.0]
    finally:
        proc.terminate()
        proc.wait(timeout=20)

