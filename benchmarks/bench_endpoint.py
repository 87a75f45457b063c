"""Endpoint benchmark: each part prints a ratio against a baseline measured in the same run.

(a) client: the nemotron judge (AsyncOpenAI, concurrency 16) vs sequential calls with the
    openai client, against a local fake server that adds 50 ms per request.   target >= 12x
(b) serve: `judge serve` hosting a small reward model on CPU with dynamic batching vs the same
    server with batching off (--max-batch-items 1), 64 concurrent clients: requests/s ratio
    and p50/p99 latency for both.                                              target >= 3x

Servers run in subprocesses so their CPU work does not share this process's GIL.
Usage: python benchmarks/bench_endpoint.py [--part a|b] [--seconds 6]"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def _start(cmd: list[str], marker: str) -> tuple[subprocess.Popen, str]:
    """Start a server subprocess and return it with the first stdout/stderr line containing marker."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    line: list[str] = []

    def read() -> None:
        for raw in proc.stdout:  # type: ignore[union-attr]
            if marker in raw or raw.strip().isdigit():
                line.append(raw.strip())
                return

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout=120)
    if not line:
        proc.kill()
        raise RuntimeError(f"server did not start: {' '.join(cmd)}")
    return proc, line[0]


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# ------------------------------------------------------------------ (a) client throughput
def part_a(n_fast: int = 480, n_seq: int = 40, latency: float = 0.05) -> float:
    from openai import OpenAI

    from judge.judges.endpoint import item_messages
    from judge.records import Item
    from judge.registry import load_judge

    proc, port = _start([sys.executable, str(ROOT / "tests" / "fake_openai_server.py"), "--latency", str(latency)], "")
    url = f"http://127.0.0.1:{port}/v1"
    try:
        items = [Item(f"Question {i}?", f"Answer number {i}.") for i in range(n_fast)]
        # Baseline: what a plain script does, one request after another with the same client library.
        sync = OpenAI(api_key="no-key", base_url=url, max_retries=0)
        sync.chat.completions.with_raw_response.create(model="m", messages=item_messages(items[0]))  # warm-up
        start = time.perf_counter()
        for item in items[:n_seq]:
            json.loads(sync.chat.completions.with_raw_response.create(model="m", messages=item_messages(item)).text)
        seq_rate = n_seq / (time.perf_counter() - start)
        sync.close()

        judge = load_judge(f"nemotron:nvidia/nemotron-4-340b-reward@{url},concurrency=16")
        judge.score_batch(items[:16])  # warm-up: client start, connections
        start = time.perf_counter()
        scores = judge.score_batch(items)
        ours_rate = n_fast / (time.perf_counter() - start)
        judge.close()
        assert all(s.ok for s in scores), [s.error for s in scores if not s.ok][:3]
    finally:
        _stop(proc)
    ratio = ours_rate / seq_rate
    print(f"(a) client vs sequential, {latency * 1000:.0f} ms server latency: sequential {seq_rate:.1f} req/s, "
          f"nemotron judge (concurrency 16) {ours_rate:.1f} req/s -> {ratio:.1f}x (target >= 12x)")
    return ratio


# ------------------------------------------------------------------ (b) serve batching
async def _load(url: str, clients: int, seconds: float) -> tuple[float, list[float]]:
    """`clients` keep-alive connections, each sending its next request when the last is answered.

    A deliberately thin HTTP/1.1 client on asyncio streams: httpx's pool costs more CPU per
    request than the server under test, and on 2 cores it would measure itself."""
    from urllib.parse import urlparse

    host, port = urlparse(url).hostname, urlparse(url).port
    latencies: list[float] = []
    # One continuous run; only requests started after the warm-up second count.
    measure_from = time.perf_counter() + 1.0
    stop_at = measure_from + seconds

    async def one(k: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        i = 0
        try:
            while time.perf_counter() < stop_at:
                body = json.dumps({"model": "rm", "messages": [
                    {"role": "user", "content": f"Client {k} asks question {i}: what is {k} plus {i}?"},
                    {"role": "assistant", "content": f"The sum of {k} and {i} is {k + i}. " * (1 + (k + i) % 4)}]}).encode()
                head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n").encode()
                t0 = time.perf_counter()
                writer.write(head + body)
                status = (await reader.readline()).split()[1]
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                payload = await reader.readexactly(length)
                if status != b"200":
                    raise RuntimeError(f"HTTP {status.decode()}: {payload[:200]!r}")
                if t0 >= measure_from:
                    latencies.append(time.perf_counter() - t0)
                i += 1
        finally:
            writer.close()

    await asyncio.gather(*(one(k) for k in range(clients)))
    return len(latencies) / seconds, latencies


def fixed_cost(items: list) -> list[float]:
    """A stand-in for a model on an accelerator: 4 ms per forward pass whatever the batch
    (sleeping releases the GIL as a GPU wait does). Loaded by the server as python:FILE:fixed_cost."""
    time.sleep(0.004)
    return [float(len(i.response)) for i in items]


def _compare(label: str, spec: str, seconds: float, clients: int) -> float:
    results = {}
    for mode, extra in (("batching off", ["--max-batch-items", "1"]), ("batching on", [])):
        cmd = [sys.executable, "-m", "judge", "serve", "--judge", spec, "--port", "0", *extra]
        proc, line = _start(cmd, "judge serve:")
        url = line.split(" on ", 1)[1].split()[0]
        try:
            rate, lat = asyncio.run(_load(url, clients, seconds))
        finally:
            _stop(proc)
        results[mode] = rate
        print(f"(b) {label}, {mode:12s}: {rate:7.1f} req/s, p50 {statistics.median(lat) * 1000:6.1f} ms, "
              f"p99 {pct(lat, 0.99) * 1000:7.1f} ms ({len(lat)} requests, {clients} concurrent clients)")
    ratio = results["batching on"] / results["batching off"]
    print(f"(b) {label}: dynamic batching vs off: {ratio:.1f}x requests/s (target >= 3x)")
    return ratio


def part_b(seconds: float = 6.0, clients: int = 64, layers: int = 2, hidden: int = 64) -> float:
    from tiny_models import build_reward_model

    with tempfile.TemporaryDirectory() as tmp:
        # Default: the test suite's tiny GPT-2 reward model (2 layers, 64 wide), threads=1.
        model = build_reward_model(Path(tmp) / "rm", "gpt2", layers=layers, hidden=hidden)
        ratio = _compare(f"rm {layers}x{hidden} on CPU", f"rm:{model},threads=1", seconds, clients)
    _compare("fixed 4 ms/call judge", f"python:{Path(__file__).resolve()}:fixed_cost", seconds, clients)
    return ratio


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["a", "b", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=6.0, help="measured seconds per server in (b)")
    ap.add_argument("--layers", type=int, default=2, help="(b) reward model layers")
    ap.add_argument("--hidden", type=int, default=64, help="(b) reward model width")
    args = ap.parse_args()
    if args.part in ("a", "both"):
        part_a()
    if args.part in ("b", "both"):
        part_b(args.seconds, layers=args.layers, hidden=args.hidden)
