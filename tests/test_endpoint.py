"""HTTP judges (nemotron/openai-rm/openrlhf) against a real fault-injecting server on 127.0.0.1.

No patching of the openai client: faults are scripted in the fake server (tests/fake_openai_server.py)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_openai_server import ATTRS, FakeServer, attributes_for, reward_for

from judge.cli import main
from judge.errors import EndpointError, SpecError
from judge.judges.endpoint import CARD_WEIGHTS, parse_reward_response, parse_weights
from judge.records import Item
from judge.registry import load_judge

FAST = "backoff=0.01,max_backoff=0.05"

# A real nemotron-4-340b-reward answer (values from NVIDIA's NeMo Curator docs example).
NVIDIA_340B = {
    "id": "1234", "object": "chat.completion", "created": 1718000000, "model": "nvidia/nemotron-4-340b-reward",
    "choices": [{
        "index": 0,
        "message": {"role": "assistant", "content": "helpfulness:1.6171875,correctness:1.6484375,coherence:3.3125,"
                                                     "complexity:0.546875,verbosity:0.515625"},
        "logprobs": {"content": [
            {"token": "helpfulness", "logprob": 1.6171875, "top_logprobs": []},
            {"token": "correctness", "logprob": 1.6484375, "top_logprobs": []},
            {"token": "coherence", "logprob": 3.3125, "top_logprobs": []},
            {"token": "complexity", "logprob": 0.546875, "top_logprobs": []},
            {"token": "verbosity", "logprob": 0.515625, "top_logprobs": []},
        ]},
        "finish_reason": "length",
    }],
    "usage": {"completion_tokens": 1, "prompt_tokens": 52, "total_tokens": 53},
}
CARD_SCORE = 0.3 * 1.6171875 + 0.74 * 1.6484375 + 0.46 * 3.3125 + 0.47 * 0.546875 - 0.33 * 0.515625


def card(attrs: dict[str, float]) -> float:
    return sum(CARD_WEIGHTS[k] * attrs[k] for k in ATTRS)


def write_groups(path: Path, texts: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for i, cands in enumerate(texts):
            fh.write(json.dumps({"id": f"g{i}", "prompt": f"Question {i}?", "candidates": cands}) + "\n")
    return path


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ------------------------------------------------------------------ parsing
def test_340b_attributes_from_logprobs_use_the_model_card_weights():
    score = parse_reward_response(NVIDIA_340B, parse_weights(None))
    assert score.value == pytest.approx(CARD_SCORE)
    assert score.details["attributes"]["coherence"] == 3.3125 and score.details["source"] == "logprobs"


def test_340b_list_message_with_null_model_falls_back_to_the_text():
    body = json.loads(json.dumps(NVIDIA_340B))
    choice = body["choices"][0]
    choice["message"] = [choice["message"]]
    choice["logprobs"] = None
    body["model"] = body["created"] = None
    score = parse_reward_response(body, parse_weights(None))
    assert score.value == pytest.approx(CARD_SCORE) and score.details["source"] == "text"


def test_70b_reward_text_is_the_score():
    body = {"choices": [{"message": {"role": "assistant", "content": "reward:-19.875"}}], "model": None}
    score = parse_reward_response(body, parse_weights(None))
    assert score.value == -19.875 and score.error is None


@pytest.mark.parametrize("body", [
    {}, [], "reward", {"choices": []}, {"choices": [{"message": {"content": "I think it is good"}}]},
    {"choices": [{"message": {"content": "helpfulness:3.0"}}]},  # weighted attributes missing
    {"choices": [{"message": {"content": "reward:nan"}}]},
])
def test_unparseable_response_is_an_error_with_excerpt_never_a_zero(body):
    score = parse_reward_response(body, parse_weights(None))
    assert score.value is None and score.error
    assert len(score.error) < 400


def test_weights_option_forms():
    assert parse_weights("helpfulness") == {"helpfulness": 1.0}
    assert parse_weights("0.3/0.74/0.46/0.47/-0.33") == CARD_WEIGHTS
    assert parse_weights("helpfulness:2;correctness:-1") == {"helpfulness": 2.0, "correctness": -1.0}
    with pytest.raises(SpecError, match="weights"):
        parse_weights("1/2")
    only_help = parse_reward_response(NVIDIA_340B, parse_weights("helpfulness"), weights_given=True)
    assert only_help.value == 1.6171875


# ------------------------------------------------------------------ keys
def test_missing_key_for_a_remote_url_names_the_variable(monkeypatch):
    with pytest.raises(SpecError, match="NVIDIA_API_KEY"):
        load_judge("nemotron:nvidia/nemotron-4-340b-reward@https://integrate.api.nvidia.com/v1")
    with pytest.raises(SpecError, match="MY_RM_KEY"):
        load_judge("nemotron:m@http://127.0.0.1:9/v1,api_key_env=MY_RM_KEY")
    load_judge("nemotron:m@http://127.0.0.1:9/v1").close()  # local: no key needed
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-fallback")
    j = load_judge("nemotron:m@https://example.invalid/v1")
    assert j.key_env == "OPENAI_API_KEY"
    j.close()


def test_fingerprint_ignores_transport_options_but_not_weights():
    a = load_judge("nemotron:m@http://127.0.0.1:9/v1")
    b = load_judge("nemotron:m@http://127.0.0.1:9/v1,concurrency=2,rpm=40,retries=1")
    c = load_judge("nemotron:m@http://127.0.0.1:9/v1,weights=helpfulness")
    assert a.fingerprint == b.fingerprint != c.fingerprint
    for j in (a, b, c):
        j.close()


# ------------------------------------------------------------------ faults, end to end
def test_faults_every_item_ends_scored_or_recorded_once(tmp_path):
    texts = [
        ["plain good answer", "[429:1] rate limited once", "[500:2] two server errors"],
        ["[slow:1] hangs once", "[garbage] html body", "[noshape] json without choices"],
        ["[list] 340b list-shaped message", "[500:99] always failing", "another good answer"],
    ]
    inp = write_groups(tmp_path / "c.jsonl", texts)
    out = tmp_path / "o.jsonl"
    with FakeServer(hang=5.0) as server:
        spec = f"nemotron:nvidia/nemotron-4-340b-reward@{server.url},{FAST},retries=3,timeout=2"
        result = CliRunner().invoke(main, ["score", str(inp), "-o", str(out), "--judge", spec, "-q"])
        log = list(server.state.log)
    assert result.exit_code == 0, result.output
    recs = read_lines(out)
    assert [r["id"] for r in recs] == ["g0", "g1", "g2"]  # none lost, none duplicated
    for rec, cands in zip(recs, texts):
        assert rec["candidates"] == cands
        for text, value, judgement in zip(cands, rec["scores"]["nemotron"], rec["judgements"]["nemotron"]):
            bad = any(m in text for m in ("[garbage]", "[noshape]", "[500:99]"))
            if bad:
                assert value is None and judgement["error"], text
            else:
                assert value == pytest.approx(card(attributes_for(text))), text
                assert judgement["attributes"] == attributes_for(text)
    errors = {t: j["error"] for r, cands in zip(recs, texts) for t, j in zip(cands, r["judgements"]["nemotron"]) if "error" in j}
    assert "<html>502 Bad Gateway" in errors["[garbage] html body"]
    assert "HTTP 500" in errors["[500:99] always failing"] and "4 attempts" in errors["[500:99] always failing"]
    # Each good item reached the server exactly as often as its script says (no duplicate requests).
    sent = {t: sum(1 for e in log if e["text"] == t) for cands in texts for t in cands}
    assert sent["plain good answer"] == 1 and sent["[429:1] rate limited once"] == 2
    assert sent["[500:2] two server errors"] == 3 and sent["[500:99] always failing"] == 4
    # Retry-After: 1 was honoured.
    times = [e["t"] for e in log if e["text"] == "[429:1] rate limited once"]
    assert times[1] - times[0] >= 0.95


def test_circuit_breaker_fires_on_a_dead_port(tmp_path):
    inp = write_groups(tmp_path / "c.jsonl", [[f"answer {i}-{k}" for k in range(4)] for i in range(50)])
    out = tmp_path / "o.jsonl"
    spec = f"nemotron:m@http://127.0.0.1:{closed_port()}/v1,{FAST},retries=2,breaker=3"
    start = time.monotonic()
    result = CliRunner().invoke(main, ["score", str(inp), "-o", str(out), "--judge", spec, "-q"])
    assert result.exit_code == 1
    assert "looks down" in result.output and "connection failed" in result.output
    assert "rerun the same command to resume" in result.output
    assert time.monotonic() - start < 30  # bounded: it did not grind through 200 items


def test_breaker_stops_midway_and_a_rerun_resumes_without_rescoring(tmp_path):
    texts = [[f"answer {i}-{k}" for k in range(4)] for i in range(12)]
    inp = write_groups(tmp_path / "c.jsonl", texts)
    out = tmp_path / "o.jsonl"
    with FakeServer() as server:
        spec = f"nemotron:m@{server.url},{FAST},retries=1,breaker=3,concurrency=4"
        args = ["score", str(inp), "-o", str(out), "--judge", spec, "-q", "--chunk-items", "8"]
        server.state.fail_after = 20  # the endpoint goes down after 20 requests
        first = CliRunner().invoke(main, args)
        assert first.exit_code == 1 and "looks down" in first.output
        kept = read_lines(out)
        assert 1 <= len(kept) < 12 and all(v is not None for r in kept for v in r["scores"]["nemotron"])
        server.state.fail_after = None
        before = len(server.state.bodies)
        second = CliRunner().invoke(main, args)
        assert second.exit_code == 0, second.output
        resent = [json.loads(b)["messages"][-1]["content"] for b in server.state.bodies[before:]]
    recs = read_lines(out)
    assert [r["id"] for r in recs] == [f"g{i}" for i in range(12)]
    assert all(v is not None for r in recs for v in r["scores"]["nemotron"])
    done_first = {t for r in kept for t in r["candidates"]}
    assert not done_first & set(resent)  # what the first run wrote was not requested again
    assert len(resent) == len(set(resent))


def test_api_key_never_reaches_any_file_or_output(tmp_path, monkeypatch):
    key = "nvapi-SECRET-0123456789abcdef"
    monkeypatch.setenv("NVIDIA_API_KEY", key)
    inp = write_groups(tmp_path / "c.jsonl", [["fine", "[echo] server echoes the header", "[garbage]", "[500:99] x"]])
    out = tmp_path / "o.jsonl"
    with FakeServer(api_key=key) as server:
        spec = f"nemotron:m@{server.url},{FAST},retries=1"
        result = CliRunner().invoke(main, ["score", str(inp), "-o", str(out), "--judge", spec])
        assert result.exit_code == 0, result.output
        echoed = read_lines(out)[0]["judgements"]["nemotron"][1]["error"]
        assert "Bearer ***" in echoed  # the server did send it back; we redacted it
        bad = CliRunner().invoke(main, ["score", str(inp), "-o", str(tmp_path / "o2.jsonl"), "--judge",
                                        f"{spec},api_key_env=WRONG_KEY"])
        monkeypatch.setenv("WRONG_KEY", "nvapi-wrong-key-0000")
        refused = CliRunner().invoke(main, ["score", str(inp), "-o", str(tmp_path / "o3.jsonl"), "--judge",
                                            f"{spec},api_key_env=WRONG_KEY"])
    assert bad.exit_code == 2 and "WRONG_KEY" in bad.output
    assert refused.exit_code == 1 and "refused the key" in refused.output and "WRONG_KEY" in refused.output
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 4
    for path in written:
        assert key.encode() not in path.read_bytes(), path
    for r in (result, bad, refused):
        assert key not in r.output and "nvapi-wrong-key-0000" not in r.output


def test_concurrency_is_bounded_and_rpm_spaces_requests():
    with FakeServer(latency=0.05) as server:
        judge = load_judge(f"nemotron:m@{server.url},concurrency=4")
        scores = judge.score_batch([Item("q", f"a{i}") for i in range(24)])
        judge.close()
        assert all(s.ok for s in scores)
        assert 2 <= server.state.max_in_flight <= 4
    with FakeServer() as server:
        judge = load_judge(f"nemotron:m@{server.url},rpm=600")  # one request start per 0.1 s
        judge.client()
        start = time.monotonic()
        judge.score_batch([Item("q", f"b{i}") for i in range(6)])
        elapsed = time.monotonic() - start
        judge.close()
        assert elapsed >= 0.5 and len(server.state.log) == 6  # 5 gaps of 0.1 s at least


def test_unauthorised_stops_the_run_at_once():
    with FakeServer() as server:
        judge = load_judge(f"nemotron:m@{server.url},{FAST}")
        with pytest.raises(EndpointError, match="refused the key"):
            judge.score_batch([Item("q", "[401] nope")] + [Item("q", f"ok {i}") for i in range(3)])
        judge.close()


def test_70b_shape_end_to_end():
    with FakeServer() as server:
        judge = load_judge(f"nemotron:nvidia/llama-3.1-nemotron-70b-reward@{server.url}")
        items = [Item([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}], "hello")]
        (score,) = judge.score_batch(items)
        judge.close()
        sent = json.loads(server.state.bodies[0])
    assert score.value == reward_for("hello")
    assert sent["model"] == "nvidia/llama-3.1-nemotron-70b-reward"
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant"]


def test_openrlhf_protocol_batches_queries():
    with FakeServer() as server:
        judge = load_judge(f"openrlhf:http://127.0.0.1:{server.port},batch=3")
        items = [Item("Q", f"r{i}") for i in range(7)]
        scores = judge.score_batch(items)
        judge.close()
        bodies = [json.loads(b) for b in server.state.bodies]
    assert [s.value for s in scores] == [reward_for(f"Q\nr{i}") for i in range(7)]
    assert sorted(len(b["query"]) for b in bodies) == [1, 3, 3]
    assert all(q.startswith(p) for b in bodies for q, p in zip(b["query"], b["prompts"]))


def test_dry_run_and_max_requests(tmp_path):
    texts = [[f"answer {i}-{k}" for k in range(3)] for i in range(4)]
    inp = write_groups(tmp_path / "c.jsonl", texts)
    out = tmp_path / "o.jsonl"
    with FakeServer() as server:
        spec = f"nemotron:m@{server.url},{FAST},retries=3"
        dry = CliRunner().invoke(main, ["score", str(inp), "-o", str(out), "--judge", spec, "--dry-run"])
        assert dry.exit_code == 0 and "12 requests" in dry.output and "tokens" in dry.output
        assert server.state.bodies == [] and not out.exists()
        over = CliRunner().invoke(main, ["score", str(inp), "-o", str(out), "--judge", spec, "--max-requests", "11", "-q"])
        assert over.exit_code == 1 and "more than --max-requests 11" in over.output
        assert server.state.bodies == []
        ok = CliRunner().invoke(main, ["score", str(inp), "-o", str(out), "--judge", spec, "--max-requests", "12", "-q"])
        assert ok.exit_code == 0, ok.output
        again = CliRunner().invoke(main, ["score", str(inp), "-o", str(tmp_path / "p.jsonl"), "--judge", spec,
                                          "--store", str(out) + ".store.sqlite", "--dry-run"])
        assert "0 requests" in again.output  # everything is in the store now


def test_max_requests_counts_retries_and_stops_resumably(tmp_path):
    texts = [[f"[500:2] flaky {i}-{k}" for k in range(2)] for i in range(4)]
    inp = write_groups(tmp_path / "c.jsonl", texts)
    out = tmp_path / "o.jsonl"
    with FakeServer() as server:
        spec = f"nemotron:m@{server.url},{FAST},concurrency=1"
        args = ["score", str(inp), "-o", str(out), "--judge", spec, "--max-requests", "10", "-q", "--chunk-items", "2"]
        first = CliRunner().invoke(main, args)
        assert first.exit_code == 1 and "--max-requests 10" in first.output
        assert len(server.state.bodies) == 10
        assert len(read_lines(out)) == 1  # 3 requests per item: the first group's 2 items fit in 10


def test_retry_after_forms():
    from email.utils import formatdate

    from judge.judges._http import parse_retry_after

    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert 8 <= parse_retry_after({"retry-after": formatdate(time.time() + 10, usegmt=True)}) <= 10.5
    assert parse_retry_after({"retry-after": "soon"}) is None and parse_retry_after({}) is None


def test_a_retry_after_longer_than_max_wait_fails_the_item_instead_of_sleeping():
    with FakeServer() as server:
        judge = load_judge(f"nemotron:m@{server.url},{FAST},max_wait=0.5")
        start = time.monotonic()
        (score,) = judge.score_batch([Item("q", "[429:5:30] come back in 30 s")])
        judge.close()
    assert score.value is None and "asked to wait 30s" in score.error
    assert time.monotonic() - start < 10
