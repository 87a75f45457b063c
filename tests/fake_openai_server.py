"""A small fault-injecting OpenAI-protocol server for the endpoint tests and benchmark.

Real HTTP on 127.0.0.1 (stdlib ThreadingHTTPServer, HTTP/1.1 keep-alive). Faults are
scripted by markers in the assistant turn, so they stay deterministic under concurrency:
  [429:N]  first N attempts answer 429 with Retry-After (seconds: [429:N:S], default 1)
  [500:N]  first N attempts answer 500          [slow:N]  first N attempts hang for `hang` s
  [garbage] 200 with a non-JSON body             [noshape] 200 JSON without choices
  [list]   the 340b shape with `message` as a list, null model/created and no logprobs
  [401]    401 always                            [echo]  400 echoing the Authorization header
Server-wide: `down=True` answers 503 to everything; `fail_after=N` does so after N requests.
Otherwise it answers in the nemotron-4-340b-reward shape (attributes as logprobs + text),
or with "reward:<float>" when the model name contains "70b". POST /get_reward speaks
OpenRLHF's protocol. Run as a script for the benchmark: `python fake_openai_server.py
--latency 0.05` prints the port."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ATTRS = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
_MARK = re.compile(r"\[(429|500|slow):(\d+)(?::([\d.]+))?\]")


def attributes_for(text: str) -> dict[str, float]:
    """Deterministic fake attributes (multiples of 1/64, exact in binary) for a response."""
    h = hashlib.sha256(text.encode()).digest()
    return {name: h[i] / 64.0 for i, name in enumerate(ATTRS)}


def reward_for(text: str) -> float:
    h = hashlib.sha256(text.encode()).digest()
    return -30.0 + h[7] / 8.0


class FakeState:
    def __init__(self, latency: float = 0.0, hang: float = 2.0, api_key: str | None = None) -> None:
        self.latency = latency
        self.hang = hang
        self.api_key = api_key
        self.lock = threading.Lock()
        self.attempts: Counter[str] = Counter()  # per assistant text
        self.log: list[dict[str, Any]] = []  # every request: text, status, time
        self.bodies: list[str] = []
        self.down = False
        self.fail_after: int | None = None
        self.in_flight = 0
        self.max_in_flight = 0

    def record(self, text: str, status: int) -> None:
        with self.lock:
            self.log.append({"text": text, "status": status, "t": time.monotonic()})


def nemotron_340b(text: str, as_list: bool = False, logprobs: bool = True) -> dict[str, Any]:
    attrs = attributes_for(text)
    content = ",".join(f"{k}:{v!r}" for k, v in attrs.items())
    message = {"role": "assistant", "content": content}
    choice: dict[str, Any] = {"index": 0, "message": [message] if as_list else message, "finish_reason": "length"}
    if logprobs:
        choice["logprobs"] = {"content": [{"token": k, "logprob": v, "top_logprobs": []} for k, v in attrs.items()]}
    else:
        choice["logprobs"] = None
    return {
        "id": "chatcmpl-fake", "object": "chat.completion",
        "created": None if as_list else 1700000000,
        "model": None if as_list else "nvidia/nemotron-4-340b-reward",
        "choices": [choice], "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
    }


def nemotron_70b(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1700000000,
        "model": "nvidia/llama-3.1-nemotron-70b-reward",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": f"reward:{reward_for(text)!r}"},
                     "finish_reason": "length", "logprobs": None}],
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: without this, 40 ms delayed-ACK stalls
    state: FakeState

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes | str | dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if isinstance(body, dict) else body.encode() if isinstance(body, str) else body
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:
        self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

    def do_POST(self) -> None:
        st = self.state
        with st.lock:
            st.in_flight += 1
            st.max_in_flight = max(st.max_in_flight, st.in_flight)
        try:
            self._post()
        finally:
            with st.lock:
                st.in_flight -= 1

    def _post(self) -> None:
        st = self.state
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0)).decode()
        with st.lock:
            st.bodies.append(raw)
            n_requests = len(st.bodies)
        if st.down or (st.fail_after is not None and n_requests > st.fail_after):
            st.record("", 503)
            return self._send(503, {"error": {"message": "service unavailable"}})
        if st.latency:
            time.sleep(st.latency)
        if st.api_key is not None and self.headers.get("Authorization") != f"Bearer {st.api_key}":
            st.record("", 401)
            return self._send(401, {"error": {"message": "bad key", "type": "auth"}})
        body = json.loads(raw)
        if self.path.rstrip("/").endswith("/get_reward"):
            queries = body["query"]
            st.record("|".join(queries), 200)
            return self._send(200, {"rewards": [reward_for(q) for q in queries]})
        text = body["messages"][-1]["content"]
        with st.lock:
            st.attempts[text] += 1
            n = st.attempts[text]
        for kind, count, arg in _MARK.findall(text):
            if n <= int(count):
                if kind == "429":
                    st.record(text, 429)
                    return self._send(429, {"error": {"message": "rate limited"}}, {"Retry-After": arg or "1"})
                if kind == "500":
                    st.record(text, 500)
                    return self._send(500, {"error": {"message": "internal error"}})
                if kind == "slow":
                    st.record(text, 0)
                    time.sleep(st.hang)
                    return self._send(200, nemotron_340b(text))
        if "[echo]" in text:
            st.record(text, 400)
            return self._send(400, {"error": {"message": f"bad request from {self.headers.get('Authorization')}"}})
        if "[401]" in text:
            st.record(text, 401)
            return self._send(401, {"error": {"message": "invalid key"}})
        st.record(text, 200)
        if "[garbage]" in text:
            return self._send(200, "<html>502 Bad Gateway</html> not json")
        if "[noshape]" in text:
            return self._send(200, {"id": "x", "object": "chat.completion", "detail": "nothing here"})
        if "[list]" in text:
            return self._send(200, nemotron_340b(text, as_list=True, logprobs=False))
        if "70b" in str(body.get("model")):
            return self._send(200, nemotron_70b(text))
        return self._send(200, nemotron_340b(text))


class FakeServer:
    """Context manager: a FakeServer on 127.0.0.1 with a free port, in a daemon thread."""

    def __init__(self, **kwargs: Any) -> None:
        self.state = FakeState(**kwargs)
        handler = type("BoundHandler", (Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda *a: None  # type: ignore[method-assign]
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.0)
    args = ap.parse_args()
    with FakeServer(latency=args.latency) as server:
        print(server.port, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
