"""`judge serve`: any judge the registry loads (first of all a local `rm:` reward model)
behind an OpenAI-compatible HTTP API (FastAPI + uvicorn).

POST /v1/chat/completions answers in the nemotron-4-340b-reward shape when the judge gives
attributes, else as "reward:<float>"; POST /get_reward speaks OpenRLHF's protocol; GET
/v1/models and /health. Concurrent requests are batched dynamically: the batcher collects
items for a few ms (or until an item/token budget fills) and makes one score_batch call,
so 64 clients cost a handful of forward passes instead of 64."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
import os
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from judge.errors import JudgeError, SpecError
from judge.judges._reward_formats import HELPSTEER2
from judge.records import Item, Score


@dataclass
class ServeConfig:
    """Configuration of `judge serve`."""

    judge: str
    """Judge spec to host, e.g. rm:./my-rm."""
    host: str = "127.0.0.1"
    """Interface to listen on (0.0.0.0 exposes it to the network)."""
    port: int = 8000
    """Port (0: pick a free one and print it)."""
    api_key_env: str | None = None
    """Require `Authorization: Bearer $VAR` on every route but /health."""
    max_batch_items: int = 64
    """Most items per score_batch call (1 turns dynamic batching off)."""
    max_batch_tokens: int = 32768
    """Rough token budget per batch (4 characters a token, or the judge's own count)."""
    batch_wait_ms: float = 5.0
    """How long the first request of a batch waits for company."""
    max_body_bytes: int = 2_000_000
    """Larger request bodies get 413."""
    model_name: str | None = None
    """Model id reported by /v1/models and in responses (default: the judge's target)."""


class ApiError(Exception):
    """An HTTP error answered in OpenAI's error shape."""

    def __init__(self, status: int, message: str, code: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


# ------------------------------------------------------------------ dynamic batching
class Batcher:
    """Collects concurrent items into batches and scores each batch with one call.

    The judge runs in one worker thread: a model is not re-entrant, and one thread keeps
    the event loop free to accept (and queue) the requests that form the next batch."""

    def __init__(self, judge: Any, max_items: int, max_tokens: int, wait_s: float) -> None:
        self.judge = judge
        self.max_items = max(1, max_items)
        self.max_tokens = max(1, max_tokens)
        self.wait_s = max(0.0, wait_s)
        self.queue: asyncio.Queue[tuple[Item, asyncio.Future[Score]]] | None = None
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="judge-serve")
        self.batches = 0
        self.items = 0
        self._task: asyncio.Task[None] | None = None

    def _tokens(self, item: Item) -> int:
        count = getattr(self.judge, "count_tokens", None)
        if callable(count):
            try:
                return int(count(item))
            except Exception:
                pass
        return max(1, (len(item.prompt_text) + len(item.response)) // 4)

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, items: Sequence[Item]) -> list[Score]:
        assert self.queue is not None, "Batcher.start() was not called"
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Score]] = []
        for item in items:
            fut: asyncio.Future[Score] = loop.create_future()
            futures.append(fut)
            self.queue.put_nowait((item, fut))
        return list(await asyncio.gather(*futures))

    async def _collect(self) -> list[tuple[Item, asyncio.Future[Score]]]:
        assert self.queue is not None
        batch = [await self.queue.get()]
        tokens = self._tokens(batch[0][0])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while len(batch) < self.max_items and tokens < self.max_tokens:
            try:
                if self.queue.qsize():
                    entry = self.queue.get_nowait()
                else:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    entry = await asyncio.wait_for(self.queue.get(), left)
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                break
            batch.append(entry)
            tokens += self._tokens(entry[0])
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            live = [(item, fut) for item, fut in batch if not fut.done()]  # a client that left
            if not live:
                continue
            try:
                scores = await loop.run_in_executor(self.executor, self._score, [item for item, _ in live])
            except Exception as exc:
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(live)
            for (_, fut), score in zip(live, scores):
                if not fut.done():
                    fut.set_result(score)

    def _score(self, items: list[Item]) -> list[Score]:
        scores = self.judge.score_batch(items)
        if len(scores) != len(items):
            raise JudgeError(f"judge returned {len(scores)} scores for {len(items)} items")
        return scores


# ------------------------------------------------------------------ request parsing and response shapes
def _content(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI content parts
        texts = [p.get("text") for p in value if isinstance(p, dict) and isinstance(p.get("text"), str)]
        if len(texts) == len(value):
            return "".join(texts)
    raise ApiError(422, f"{where}.content must be a string or a list of text parts")


def chat_item(body: Any) -> Item:
    """A /chat/completions body -> the Item it asks to score (the last turn is the response)."""
    if not isinstance(body, dict):
        raise ApiError(422, "request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(422, "'messages' must be a non-empty list of {role, content} objects")
    turns = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise ApiError(422, f"messages[{i}] must be an object with a 'role'")
        turns.append({"role": msg["role"], "content": _content(msg.get("content"), f"messages[{i}]")})
    if turns[-1]["role"] != "assistant":
        raise ApiError(
            422, "the last message must be the assistant turn to score (a reward model scores a response, "
            f"it does not write one); got role {turns[-1]['role']!r}", "missing_assistant_turn",
        )
    prompt_turns = turns[:-1]
    # A single user turn is how a string prompt travels; turning it back keeps the Item (and
    # so the local judge's score) identical to what the client had.
    if len(prompt_turns) == 1 and prompt_turns[0]["role"] == "user":
        prompt: Any = prompt_turns[0]["content"]
    else:
        prompt = prompt_turns or ""
    reference = body.get("reference")  # extension: lets `verify` be served too
    return Item(prompt, turns[-1]["content"], str(reference) if reference is not None else None)


def _attributes(score: Score) -> dict[str, float] | None:
    attrs = score.details.get("attributes") if isinstance(score.details, dict) else None
    if isinstance(attrs, dict) and attrs and all(isinstance(v, (int, float)) for v in attrs.values()):
        return {str(k): float(v) for k, v in attrs.items()}
    return None


def chat_response(score: Score, model: str) -> dict[str, Any]:
    """A reward in Nemotron's shapes; floats printed with repr so the client reads them back exactly."""
    attrs = _attributes(score)
    assert score.value is not None
    if attrs is not None:
        pairs = dict(attrs)
        # Not HelpSteer2's five: the client cannot know how to combine them, so the judge's
        # own single score travels as one more `reward` entry (which the client prefers).
        if set(pairs) != set(HELPSTEER2):
            pairs["reward"] = score.value
        content = ",".join(f"{k}:{v!r}" for k, v in pairs.items())
        logprobs = {"content": [{"token": k, "logprob": v, "bytes": None, "top_logprobs": []} for k, v in pairs.items()]}
    else:
        content, logprobs = f"reward:{score.value!r}", None
    return {
        "id": f"chatcmpl-{time.time_ns():x}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "logprobs": logprobs, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 1, "total_tokens": 1},
    }


def reward_items(body: Any) -> list[Item]:
    """OpenRLHF /get_reward body -> Items; `prompts` (optional) split each query back."""
    if not isinstance(body, dict) or not isinstance(body.get("query"), list):
        raise ApiError(422, "body must be {\"query\": [text, ...]} (optionally with \"prompts\": [text, ...])")
    queries = body["query"]
    prompts = body.get("prompts")
    if prompts is not None and (not isinstance(prompts, list) or len(prompts) != len(queries)):
        raise ApiError(422, "'prompts' must be a list as long as 'query'")
    items = []
    for i, q in enumerate(queries):
        if not isinstance(q, str):
            raise ApiError(422, f"query[{i}] must be a string")
        p = prompts[i] if prompts is not None else None
        if isinstance(p, str) and p and q.startswith(p):
            items.append(Item(p.rstrip(), q[len(p) :]))
        else:
            items.append(Item("", q))
    return items


# ------------------------------------------------------------------ the app
def create_app(judge: Any, config: ServeConfig) -> Any:
    """The FastAPI app serving `judge` (which the caller owns and closes)."""
    key: str | None = None
    if config.api_key_env:
        key = os.environ.get(config.api_key_env, "").strip()
        if not key:
            raise SpecError(f"serve: environment variable {config.api_key_env} (--api-key-env) is not set")
    target = getattr(getattr(judge, "spec", None), "target", None)
    model = config.model_name or target or judge.name
    batcher = Batcher(judge, config.max_batch_items, config.max_batch_tokens, config.batch_wait_ms / 1000.0)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="judge serve", lifespan=lifespan)
    app.state.batcher = batcher

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": {"message": exc.message, "type": exc.code, "code": exc.status}},
                            status_code=exc.status, headers=headers)

    def check_auth(request: Request) -> None:
        if key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            raise ApiError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'", "invalid_api_key")

    async def read_json(request: Request) -> Any:
        limit = config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"request body of {declared} bytes is over the {limit}-byte limit")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise ApiError(413, f"request body is over the {limit}-byte limit")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ApiError(400, f"malformed JSON body: {exc}") from None

    async def score(items: list[Item]) -> list[Score]:
        try:
            return await batcher.submit(items)
        except JudgeError as exc:
            raise ApiError(503, f"judge unavailable: {exc}", "judge_error") from None
        except Exception as exc:
            raise ApiError(500, f"judge failed: {type(exc).__name__}: {exc}", "judge_error") from None

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "judge": judge.name, "fingerprint": judge.fingerprint,
                "batches": batcher.batches, "items": batcher.items}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        check_auth(request)
        return {"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": "judge"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        check_auth(request)
        item = chat_item(await read_json(request))
        (result,) = await score([item])
        if result.value is None or not math.isfinite(result.value):
            why = "abstained" if result.abstained else (result.error or "no score")
            raise ApiError(422, f"the judge could not score this response: {why}", "unscorable")
        return chat_response(result, model)

    @app.post("/get_reward")
    async def get_reward(request: Request) -> Any:
        check_auth(request)
        items = reward_items(await read_json(request))
        results = await score(items) if items else []
        # A failed item is null, never a made-up number.
        rewards = [s.value if s.value is not None and math.isfinite(s.value) else None for s in results]
        return {"rewards": rewards, "errors": [s.error for s in results]}

    return app


# ------------------------------------------------------------------ running it
def bind(host: str, port: int) -> socket.socket:
    """Bind first so that port 0 can be reported before uvicorn starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _server(app: Any) -> Any:
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                         timeout_graceful_shutdown=2))


def serving_threads(judge: Any) -> int | None:
    """Give a CPU judge's torch all cores but one, which the HTTP event loop keeps (DESIGN.md §7).

    By default the rm judge takes every core; its intra-op threads then fight the event-loop
    thread for them and spin: on 2 cores with 64 clients a 4-layer 256-wide model served
    2.8 requests/s unbatched with 2 torch threads, 72 with 1. An explicit `threads=` wins.
    Returns the count set (None: left alone, not a CPU torch judge or threads given)."""
    device = str(getattr(judge, "device", ""))
    options = getattr(judge, "options", None)
    if not device.startswith("cpu") or getattr(options, "threads", 0) is not None or "torch" not in sys.modules:
        return None
    import torch

    threads = max(1, (os.cpu_count() or 1) - 1)
    torch.set_num_threads(threads)
    return threads


def serve_forever(app: Any, sock: socket.socket) -> None:
    """Run an app from create_app until interrupted (the CLI's `judge serve`)."""
    threads = serving_threads(app.state.batcher.judge)
    if threads is not None:
        print(f"judge serve: torch uses {threads} CPU thread(s), one core left for HTTP (threads=N overrides)",
              file=sys.stderr, flush=True)
    _server(app).run(sockets=[sock])


@contextlib.contextmanager
def serve_in_thread(judge: Any, config: ServeConfig | None = None) -> Iterator[str]:
    """Serve `judge` on 127.0.0.1 (a free port) in a thread; yields the base URL (for tests, benchmarks)."""
    config = config or ServeConfig(judge="", port=0)
    sock = bind(config.host, 0)
    server = _server(create_app(judge, config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("judge serve did not start")
        time.sleep(0.01)
    try:
        yield f"http://{config.host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
