"""Transport plumbing shared by the HTTP judges: one background event loop, a client-side
rate limiter, retries with exponential backoff + jitter that honour Retry-After, a circuit
breaker, and key handling (environment only, redacted from every message we produce).

We retry here and build the openai client with max_retries=0: the breaker, the rpm limiter
and --max-requests must see every attempt, and a second retry loop inside the client would
multiply attempts (RewardBench's retry-beside-a-retrying-client mistake)."""

from __future__ import annotations

import asyncio
import email.utils
import math
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlparse

from judge.errors import BudgetError, EndpointError, SpecError

T = TypeVar("T")

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "[::1]"}
DEFAULT_KEY_ENVS = ("NVIDIA_API_KEY", "OPENAI_API_KEY")
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
# Statuses that mean the endpoint (not this item) is wrong: they count towards the breaker.
ENDPOINT_STATUS = {404, 405} | {s for s in RETRY_STATUS}


def is_local(url: str) -> bool:
    """A URL on this machine needs no key (a local `judge serve`, vLLM, OpenRLHF server)."""
    host = (urlparse(url).hostname or "").lower()
    return host in LOCAL_HOSTS or host.endswith(".localhost")


def resolve_api_key(kind: str, url: str, api_key_env: str | None) -> tuple[str | None, str | None]:
    """(key, variable it came from). Keys only ever come from the environment.

    An explicitly named variable must be set; otherwise NVIDIA_API_KEY then OPENAI_API_KEY,
    and a missing key is an error only for a non-local URL."""
    names = (api_key_env,) if api_key_env else DEFAULT_KEY_ENVS
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value, name
    if api_key_env:
        raise SpecError(f"{kind}: environment variable {api_key_env} (api_key_env) is not set; export it with your key")
    if not is_local(url):
        raise SpecError(
            f"{kind}: no API key for {url}: set NVIDIA_API_KEY (or OPENAI_API_KEY), "
            "or name another variable with api_key_env=VAR"
        )
    return None, None


class Redactor:
    """Removes a secret from any text before it is stored, raised or shown."""

    def __init__(self, secret: str | None) -> None:
        self.secret = secret

    def __call__(self, text: str) -> str:
        if self.secret and len(self.secret) >= 4:
            text = text.replace(self.secret, "***")
        return text


def excerpt(text: str, limit: int = 160) -> str:
    """A one-line, bounded excerpt of a response body for error messages."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` (OpenAI's extension) or `Retry-After` (seconds or HTTP date)."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            value = float(ms) / 1000.0
            return value if math.isfinite(value) and value >= 0 else None
        raw = headers.get("retry-after")
    except (TypeError, ValueError, AttributeError):
        return None
    if raw is None:
        return None
    try:
        value = float(raw)
        return value if math.isfinite(value) and value >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


class BackgroundLoop:
    """One event loop in a daemon thread for the judge's lifetime.

    score_batch is synchronous; running its coroutines on a persistent loop keeps one
    AsyncOpenAI client (and its connection pool) across batches, and works even when the
    caller already runs an event loop (Jupyter, `judge serve` hosting an endpoint judge)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="judge-http", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the loop and wait; Ctrl-C cancels it instead of leaving it running."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def close(self, cleanup: Callable[[], Awaitable[Any]] | None = None) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None:
            return
        if cleanup is not None:
            try:
                asyncio.run_coroutine_threadsafe(cleanup(), loop).result(timeout=5)
            except Exception:  # closing is best effort: the process may be exiting
                pass
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        loop.close()


class RateLimiter:
    """Spaces request starts evenly to stay under `rpm` requests per minute (None = no limit).

    Even spacing rather than a burst bucket: hosted APIs count per sliding minute, and a
    burst of 16 at start-up is exactly what earns a 429 there."""

    def __init__(self, rpm: float | None) -> None:
        self.interval = 60.0 / rpm if rpm else 0.0
        self._next = 0.0
        self._paused_until = 0.0

    def pause(self, seconds: float) -> None:
        """A 429 with Retry-After holds back every request, not only the one that got it."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def acquire(self) -> None:
        while True:
            now = time.monotonic()
            if now < self._paused_until:
                await asyncio.sleep(self._paused_until - now)
                continue
            if self.interval <= 0:
                return
            slot = max(now, self._next)
            self._next = slot + self.interval
            if slot > now:
                await asyncio.sleep(slot - now)
            return


class CircuitBreaker:
    """Opens after `threshold` items in a row failed for endpoint reasons (down, 5xx, timeouts).

    Counting final item failures (after retries), not attempts, keeps a flaky endpoint from
    tripping it while a dead one trips it within one batch. Once open, the run stops with an
    EndpointError; after `cooldown` seconds the next call may probe again (half-open)."""

    def __init__(self, threshold: int, cooldown: float = 30.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.consecutive = 0
        self.opened_at: float | None = None
        self.last_error = ""

    @property
    def open(self) -> bool:
        return self.opened_at is not None

    def success(self) -> None:
        self.consecutive = 0
        self.opened_at = None

    def failure(self, error: str) -> None:
        self.consecutive += 1
        self.last_error = error
        if self.threshold > 0 and self.consecutive >= self.threshold and self.opened_at is None:
            self.opened_at = time.monotonic()

    def before_batch(self) -> None:
        """Half-open after the cooldown: one more failure re-opens it at once."""
        if self.opened_at is not None and time.monotonic() - self.opened_at >= self.cooldown:
            self.opened_at = None
            self.consecutive = max(0, self.threshold - 1)


class Fatal(Exception):
    """Raised inside a request when the whole run must stop (bad key, breaker, budget)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class Attempt:
    """What one HTTP attempt came to, as the retry loop needs to see it."""

    ok: bool
    result: Any = None
    error: str = ""
    retry: bool = False
    retry_after: float | None = None
    endpoint_fault: bool = False  # counts towards the breaker
    fatal: Exception | None = None


@dataclass
class RetryPolicy:
    retries: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_wait: float = 120.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with equal jitter, or at least what the server asked for."""
        base = min(self.max_backoff, self.backoff * (2**attempt))
        jittered = base / 2 + random.uniform(0, base / 2)
        if retry_after is not None:
            return max(retry_after, 0.0) + random.uniform(0, min(0.1, self.backoff))
        return jittered


class RequestEngine:
    """Bounded concurrency + rate limit + retries + breaker + request budget around one call.

    `send` performs one attempt and classifies it (never raises for HTTP outcomes);
    `run` returns (result, None) or (None, error text)."""

    def __init__(
        self,
        name: str,
        url: str,
        concurrency: int,
        rpm: float | None,
        policy: RetryPolicy,
        breaker: CircuitBreaker,
        redact: Redactor,
    ) -> None:
        self.name, self.url = name, url
        self.concurrency = max(1, concurrency)
        self.limiter = RateLimiter(rpm)
        self.policy = policy
        self.breaker = breaker
        self.redact = redact
        self.max_requests: int | None = None
        self.requests_sent = 0
        self.retries_done = 0
        self._sem: asyncio.Semaphore | None = None

    def semaphore(self) -> asyncio.Semaphore:
        if self._sem is None:  # created on the loop thread, the only place it is used
            self._sem = asyncio.Semaphore(self.concurrency)
        return self._sem

    def breaker_error(self) -> EndpointError:
        return EndpointError(
            self.redact(
                f"{self.name}: endpoint {self.url} looks down: {self.breaker.consecutive} requests in a row failed "
                f"(last: {self.breaker.last_error}); stopped so the input is not burnt through. Everything scored "
                "so far is kept: rerun the same command to resume"
            )
        )

    async def run(self, send: Callable[[], Awaitable[Attempt]]) -> tuple[Any, str | None]:
        async with self.semaphore():
            attempt_no = 0
            while True:
                if self.breaker.open:
                    raise Fatal(self.breaker_error())
                if self.max_requests is not None and self.requests_sent >= self.max_requests:
                    raise Fatal(
                        BudgetError(
                            f"{self.name}: reached --max-requests {self.max_requests} (retries count); "
                            "raise it and rerun the same command to resume"
                        )
                    )
                await self.limiter.acquire()
                self.requests_sent += 1
                outcome = await send()
                if outcome.fatal is not None:
                    raise Fatal(outcome.fatal)
                if outcome.ok:
                    self.breaker.success()
                    return outcome.result, None
                error = self.redact(outcome.error)
                if outcome.retry and outcome.retry_after is not None and outcome.retry_after > self.policy.max_wait:
                    error += f" (server asked to wait {outcome.retry_after:.0f}s, more than max_wait={self.policy.max_wait:g})"
                    outcome.retry = False
                if outcome.retry and attempt_no < self.policy.retries:
                    wait = self.policy.delay(attempt_no, outcome.retry_after)
                    if outcome.retry_after is not None:
                        self.limiter.pause(outcome.retry_after)
                    attempt_no += 1
                    self.retries_done += 1
                    await asyncio.sleep(wait)
                    continue
                if outcome.endpoint_fault:
                    self.breaker.failure(error)
                if attempt_no:
                    error += f" (after {attempt_no + 1} attempts)"
                return None, error

    async def gather(self, sends: list[Callable[[], Awaitable[Attempt]]]) -> list[tuple[Any, str | None]]:
        """Run all requests; the first fatal outcome cancels the rest and is raised."""
        tasks = [asyncio.ensure_future(self.run(s)) for s in sends]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                if t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
            return [t.result() for t in tasks]
        finally:
            for t in tasks:
                if not t.done():
                    t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
