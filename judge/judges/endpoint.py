"""Reward models behind HTTP: `nemotron:`/`openai-rm:` (OpenAI-compatible /chat/completions)
and `openrlhf:` (OpenRLHF's POST /get_reward).

Both Nemotron response shapes are parsed leniently (DESIGN.md §4): nemotron-4-340b-reward's
five HelpSteer2 attributes (logprobs, else the "helpfulness:4.09,..." text) combined by the
model card's weights, and llama-3.1-nemotron-70b-reward's "reward:-19.875". A response we
cannot read is a recorded error with an excerpt, never a crash and never a zero."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Sequence
from typing import Any, ClassVar

from judge.errors import EndpointError, SpecError
from judge.judges._http import (
    ENDPOINT_STATUS,
    RETRY_STATUS,
    Attempt,
    BackgroundLoop,
    CircuitBreaker,
    Fatal,
    Redactor,
    RequestEngine,
    RetryPolicy,
    excerpt,
    parse_retry_after,
    resolve_api_key,
)
from judge.judges._reward_formats import (
    CARD_WEIGHTS,
    HELPSTEER2,
    estimate_tokens,
    item_messages,
    parse_reward_response,
    parse_weights,
)
from judge.judges.base import BaseJudge, JudgeSpec
from judge.records import Item, Score

__all__ = [
    "CARD_WEIGHTS", "HELPSTEER2", "NemotronJudge", "OpenRLHFJudge", "RequestEstimate", "estimate_run",
    "item_messages", "parse_reward_response", "parse_weights",
]

NVIDIA_URL = "https://integrate.api.nvidia.com/v1"


# ------------------------------------------------------------------ judges
@dataclasses.dataclass
class EndpointOptions:
    concurrency: int = 16
    """Requests in flight at once."""
    rpm: float | None = None
    """Client-side limit in requests per minute (NVIDIA's hosted API: about 40)."""
    timeout: float = 60.0
    """Seconds per request before it is retried."""
    retries: int = 5
    """Retries per item on 429/5xx/timeouts/connection errors."""
    backoff: float = 0.5
    """First backoff in seconds; doubles per retry, with jitter."""
    max_backoff: float = 30.0
    """Longest backoff between retries."""
    max_wait: float = 120.0
    """Longest Retry-After honoured; a longer one fails the item."""
    breaker: int = 5
    """Items failed in a row for endpoint reasons before the run stops (0: never)."""
    api_key_env: str | None = None
    """Variable holding the key (default NVIDIA_API_KEY, then OPENAI_API_KEY)."""


@dataclasses.dataclass
class NemotronOptions(EndpointOptions):
    weights: str | None = None
    """Attribute weights, e.g. helpfulness:1 (default: the 340b model card's)."""


@dataclasses.dataclass
class OpenRLHFOptions(EndpointOptions):
    batch: int = 32
    """Queries per POST /get_reward."""
    sep: str = "\n"
    """Text between prompt and response in each query."""


# Options that change how requests are sent but not the scores: left out of the fingerprint
# so changing concurrency or rpm does not invalidate the store.
_TRANSPORT = {f.name for f in dataclasses.fields(EndpointOptions)}


class _EndpointJudge(BaseJudge):
    version: ClassVar[str] = "1"
    default_url: ClassVar[str | None] = None

    def __init__(self, spec: JudgeSpec) -> None:
        super().__init__(spec)
        opt: EndpointOptions = self.options
        self.url = self._resolve_url(spec)
        key, key_env = resolve_api_key(self.kind, self.url, opt.api_key_env)
        self._key = key
        self.key_env = key_env
        self.redact = Redactor(key)
        self.breaker = CircuitBreaker(opt.breaker)
        policy = RetryPolicy(opt.retries, opt.backoff, opt.max_backoff, opt.max_wait)
        self.engine = RequestEngine(self.name, self.url, opt.concurrency, opt.rpm, policy, self.breaker, self.redact)
        # Big enough that the pause at each batch's end (waiting for its slowest request) is rare.
        self.batch_size = max(256, 8 * opt.concurrency)
        self._loop = BackgroundLoop()
        self._client: Any = None
        self.parse_errors = 0

    def _resolve_url(self, spec: JudgeSpec) -> str:
        url = spec.url or self.default_url
        if not url:
            raise SpecError(f"{self.kind}: needs a URL: {self.kind}:TARGET@http://HOST:PORT")
        if not url.startswith(("http://", "https://")):
            raise SpecError(f"{self.kind}: URL {url!r} must start with http:// or https://")
        return url.rstrip("/")

    @property
    def fingerprint(self) -> str:
        """Kind, target, URL and score-changing options only (not concurrency/rpm/retries)."""
        opts = {k: v for k, v in dataclasses.asdict(self.options).items() if k not in _TRANSPORT}
        ident = {"kind": self.kind, "version": self.version, "target": self.spec.target, "url": self.url, **opts}
        digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return f"{self.kind}:{self.spec.target or ''}:{digest}"

    @property
    def max_requests(self) -> int | None:
        return self.engine.max_requests

    @max_requests.setter
    def max_requests(self, value: int | None) -> None:
        """Hard cap on requests this judge sends (retries included); `--max-requests` sets it."""
        self.engine.max_requests = value

    def client(self) -> Any:
        if self._client is None:
            from openai import AsyncOpenAI

            opt: EndpointOptions = self.options
            self._client = AsyncOpenAI(
                api_key=self._key or "no-key", base_url=self.url, timeout=opt.timeout, max_retries=0
            )
        return self._client

    async def _attempt(self, call: Any) -> Attempt:
        """One HTTP attempt, classified; the openai client's errors never escape."""
        import openai

        try:
            raw = await call()
        except openai.APIStatusError as exc:
            status = exc.status_code
            body = excerpt(getattr(exc.response, "text", "") or str(exc))
            error = f"HTTP {status}: {body}"
            if status in (401, 403):
                hint = f" (key from {self.key_env})" if self.key_env else " (no key sent; set NVIDIA_API_KEY or api_key_env=)"
                return Attempt(False, fatal=EndpointError(self.redact(f"{self.name}: {self.url} refused the key{hint}: {error}")))
            return Attempt(
                False,
                error=error,
                retry=status in RETRY_STATUS or status >= 500,
                retry_after=parse_retry_after(exc.response.headers),
                endpoint_fault=status in ENDPOINT_STATUS or status >= 500,
            )
        except openai.APITimeoutError:
            return Attempt(False, error=f"timed out after {self.options.timeout:g}s", retry=True, endpoint_fault=True)
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            return Attempt(False, error=f"connection failed: {excerpt(str(cause) or type(cause).__name__)}",
                           retry=True, endpoint_fault=True)
        return Attempt(True, result=raw)

    def _score(self, make_coro: Any) -> Any:
        self.breaker.before_batch()
        if self.breaker.open:
            raise self.engine.breaker_error()
        try:
            scores = self._loop.run(make_coro())
        except Fatal as fatal:
            raise fatal.error from None
        if self.breaker.open:
            # Its last items failed because the endpoint is down, not because of them: stop
            # before they are written as errors, so a rerun scores them instead of skipping them.
            raise self.engine.breaker_error()
        return scores

    def close(self) -> None:
        client, self._client = self._client, None
        self._loop.close(client.close if client is not None else None)

    def summary(self) -> dict[str, Any]:
        return {"requests": self.engine.requests_sent, "retries": self.engine.retries_done}

    def estimate(self, items: Sequence[Item]) -> tuple[int, int]:
        """(requests, rough prompt tokens) that scoring these items would send."""
        raise NotImplementedError


class NemotronJudge(_EndpointJudge):
    """`nemotron:MODEL@URL` / `openai-rm:MODEL@URL`: a reward model behind /chat/completions."""

    kind: ClassVar[str] = "nemotron"
    Options: ClassVar[type] = NemotronOptions
    default_url = NVIDIA_URL

    def __init__(self, spec: JudgeSpec) -> None:
        if not spec.target:
            raise SpecError(f"{spec.kind}: needs a model, e.g. {spec.kind}:nvidia/llama-3.1-nemotron-70b-reward@URL")
        super().__init__(spec)
        self.model = spec.target
        self.weights = parse_weights(self.options.weights)
        self.weights_given = self.options.weights is not None

    def _resolve_url(self, spec: JudgeSpec) -> str:
        if spec.kind == "openai-rm" and not spec.url:
            raise SpecError("openai-rm: needs a URL: openai-rm:MODEL@http://HOST:PORT/v1")
        return super()._resolve_url(spec)

    def score_batch(self, items: Sequence[Item]) -> list[Score]:
        return self._score(lambda: self._score_all(list(items)))

    async def _score_all(self, items: list[Item]) -> list[Score]:
        import httpx2

        client = self.client()

        def sender(item: Item) -> Any:
            body = {"model": self.model, "messages": item_messages(item)}

            # client.post (the client's documented way to send a raw body) rather than
            # chat.completions.create: the latter walks every message through its TypedDict
            # transform, a fifth of our CPU per request at 16 in flight, and we want the raw
            # body anyway to parse NVIDIA's non-standard shapes leniently.
            async def call() -> Any:
                return await client.post("/chat/completions", cast_to=httpx2.Response, body=body)

            return lambda: self._attempt(call)

        results = await self.engine.gather([sender(item) for item in items])
        return [self._to_score(raw, err) for raw, err in results]

    def _to_score(self, raw: Any, error: str | None) -> Score:
        if error is not None:
            return Score.failed(error)
        text = raw.text
        try:
            data = json.loads(text)
        except ValueError:
            self.parse_errors += 1
            return Score.failed(f"unparseable response (not JSON): {excerpt(text)}")
        score = parse_reward_response(data, self.weights, self.weights_given)
        if score.error is not None:
            self.parse_errors += 1
            score.error = self.redact(score.error)
        return score

    def estimate(self, items: Sequence[Item]) -> tuple[int, int]:
        tokens = sum(estimate_tokens("".join(m["content"] for m in item_messages(i))) + 4 * len(item_messages(i)) for i in items)
        return len(items), tokens

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "unparseable": self.parse_errors}


class OpenRLHFJudge(_EndpointJudge):
    """`openrlhf:URL` (or `openrlhf:NAME@URL`): OpenRLHF's remote reward server protocol.

    Sends {"query": [prompt+sep+response...], "prompts": [prompt+sep...]} and reads
    {"rewards": [...]}; `query` is what OpenRLHF's serve_rm reads, `prompts` lets a server
    (like `judge serve`) split the query back into prompt and response."""

    kind: ClassVar[str] = "openrlhf"
    Options: ClassVar[type] = OpenRLHFOptions

    def _resolve_url(self, spec: JudgeSpec) -> str:
        url = spec.url or spec.target
        if url and not url.startswith(("http://", "https://")) and spec.url is None:
            raise SpecError(f"openrlhf: {url!r} is not a URL; use openrlhf:http://HOST:PORT")
        if not url:
            raise SpecError("openrlhf: needs a URL: openrlhf:http://HOST:PORT")
        spec_url = url.rstrip("/")
        return spec_url[: -len("/get_reward")] if spec_url.endswith("/get_reward") else spec_url

    def _payload(self, items: Sequence[Item]) -> dict[str, Any]:
        sep = self.options.sep.replace("\\n", "\n")
        prompts = [i.prompt_text + sep for i in items]
        return {"query": [p + i.response for p, i in zip(prompts, items)], "prompts": prompts}

    def score_batch(self, items: Sequence[Item]) -> list[Score]:
        return self._score(lambda: self._score_all(list(items)))

    async def _score_all(self, items: list[Item]) -> list[Score]:
        import httpx2

        client = self.client()
        size = max(1, self.options.batch)
        chunks = [items[i : i + size] for i in range(0, len(items), size)]

        def sender(chunk: list[Item]) -> Any:
            body = self._payload(chunk)

            async def call() -> Any:
                return await client.post("/get_reward", cast_to=httpx2.Response, body=body)

            return lambda: self._attempt(call)

        results = await self.engine.gather([sender(c) for c in chunks])
        out: list[Score] = []
        for chunk, (raw, err) in zip(chunks, results):
            out.extend(self._to_scores(raw, err, len(chunk)))
        return out

    def _to_scores(self, raw: Any, error: str | None, n: int) -> list[Score]:
        if error is not None:
            return [Score.failed(error) for _ in range(n)]
        text = raw.text
        try:
            data = json.loads(text)
            rewards = data["rewards"] if isinstance(data, dict) else None
            if not isinstance(rewards, list) or len(rewards) != n:
                raise ValueError
        except (ValueError, KeyError):
            self.parse_errors += n
            return [Score.failed(f"unparseable response (want {{'rewards': [{n} numbers]}}): {excerpt(text)}")] * n
        out = []
        for r in rewards:
            value = r[0] if isinstance(r, list) and len(r) == 1 else r
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                out.append(Score(float(value)))
            else:
                self.parse_errors += 1
                out.append(Score.failed(f"reward is not a number: {excerpt(json.dumps(value))}"))
        return out

    def estimate(self, items: Sequence[Item]) -> tuple[int, int]:
        size = max(1, self.options.batch)
        queries = self._payload(items)["query"]
        return math.ceil(len(items) / size), sum(estimate_tokens(q) for q in queries)

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "unparseable": self.parse_errors}


# ------------------------------------------------------------------ --dry-run / --max-requests
@dataclasses.dataclass
class RequestEstimate:
    judge: str
    url: str
    items: int
    requests: int
    tokens: int


def estimate_run(input_path: str, judges: Sequence[Any], store_path: str | None) -> list[RequestEstimate]:
    """What a `judge score` run would send to each HTTP judge, skipping what the store holds.

    Reads the input once (valid records only) and never touches the network."""
    from judge import io
    from judge.store import ScoreStore

    http = [j for j in judges if hasattr(j, "estimate")]
    pending: dict[str, dict[str, Item]] = {j.name: {} for j in http}
    store = ScoreStore(store_path) if store_path and os.path.exists(store_path) else None
    try:
        batch: list[Item] = []

        def flush() -> None:
            keys = [i.key for i in batch]
            for j in http:
                known = store.get_many(j.fingerprint, keys) if store is not None else {}
                for item, key in zip(batch, keys):
                    if key not in known:
                        pending[j.name].setdefault(key, item)
            batch.clear()

        for group in io.read_groups(input_path, skip_bad=True):
            if not isinstance(group, io.BadRecord):
                batch.extend(group.items())
            if len(batch) >= 2048:
                flush()
        flush()
    finally:
        if store is not None:
            store.close()
    out = []
    for j in http:
        items = list(pending[j.name].values())
        requests, tokens = j.estimate(items) if items else (0, 0)
        out.append(RequestEstimate(j.name, getattr(j, "url", ""), len(items), requests, tokens))
    return out
