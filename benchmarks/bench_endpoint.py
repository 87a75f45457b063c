"""Endpoint benchmark: each part prints a ratio against a baseline measured in the same run.

(a) client: the nemotron judge (AsyncOpenAI, concurrency 16) vs sequential calls with the
    openai client, against a local fake server that adds 50 ms per request.   target >= 12x
(b) serve: `judge serve` hosting a small reward model on CPU with dynamic batching vs the same
    server with batching off (--max-batch-items 1), 64 concurrent clients: requests/s ratio
    and p50/p99 latency for both.                                              target >= 3x

Servers run in subprocesses so their CPU work does not share this process's GIL.
Usage: python benchmarks/bench_endpoint.py [--part a|b] [--seconds 5] [--rounds 2]
       [--arch llama --layers 4 --hidden 256 --threads 1]"""

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


def _one_arm(spec: str, extra: list[str], seconds: float, clients: int) -> tuple[int, list[float], float]:
    """One server run: (requests measured, their latencies, the load generator's share of one core)."""
    cmd = [sys.executable, "-m", "judge", "serve", "--judge", spec, "--port", "0", *extra]
    proc, line = _start(cmd, "judge serve:")
    url = line.split(" on ", 1)[1].split()[0]
    try:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        _, lat = asyncio.run(_load(url, clients, seconds))
        client_cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    finally:
        _stop(proc)
    return len(lat), lat, client_cpu


def _compare(label: str, spec: str, seconds: float, clients: int, rounds: int) -> float:
    """Both arms on the same spec and clients, alternated (off, on, off, on, ...) so that load
    from elsewhere on the machine drifts over both alike; latencies pooled over the rounds."""
    arms = {"batching off": ["--max-batch-items", "1"], "batching on": []}
    runs: dict[str, list[tuple[int, list[float], float]]] = {mode: [] for mode in arms}
    for _ in range(rounds):
        for mode, extra in arms.items():
            runs[mode].append(_one_arm(spec, extra, seconds, clients))
    rates = {}
    for mode, results in runs.items():
        lat = [x for _, lats, _ in results for x in lats]
        rates[mode] = len(lat) / (seconds * rounds)
        per_round = ", ".join(f"{n / seconds:.0f}" for n, _, _ in results)
        client = statistics.mean(c for _, _, c in results) * 100
        print(f"(b) {label}, {mode:12s}: {rates[mode]:7.1f} req/s (rounds: {per_round}), "
              f"p50 {statistics.median(lat) * 1000:6.1f} ms, p99 {pct(lat, 0.99) * 1000:7.1f} ms "
              f"({len(lat)} requests, {clients} clients; load generator {client:.0f}% of a core)")
    ratio = rates["batching on"] / rates["batching off"]
    print(f"(b) {label}: dynamic batching vs off: {ratio:.2f}x requests/s (target >= 3x)")
    return ratio


def _bench_items(n: int) -> list:
    """The texts _load sends (same lengths), as Items, for timing the judge alone."""
    from judge.records import Item

    return [Item(f"Client {k} asks question {k}: what is {k} plus {k}?", f"The sum of {k} and {k} is {2 * k}. " * (1 + 2 * k % 4))
            for k in range(n)]


def judge_alone(spec: str, n: int = 64) -> tuple[float, float]:
    """ms per item of the judge without HTTP: n single-item calls vs one call of n (best of 3).

    Their ratio bounds what any batching server can gain with this model on this machine."""
    from judge.registry import load_judge

    judge = load_judge(spec)
    items = _bench_items(n)
    judge.score_batch(items)  # warm-up
    single = batched = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for item in items:
            judge.score_batch([item])
        single = min(single, (time.perf_counter() - t0) / n)
        t0 = time.perf_counter()
        judge.score_batch(items)
        batched = min(batched, (time.perf_counter() - t0) / n)
    judge.close()
    return single * 1000, batched * 1000


def part_b(seconds: float = 5.0, clients: int = 64, arch: str = "llama", layers: int = 4, hidden: int = 256,
           threads: int = 1, rounds: int = 2) -> float:
    """Model: a randomly initialised reward model built from a config (no download). Default
    llama-architecture (what current open RMs are), 4 layers x 256 wide, ~3.5M parameters:
    one single-item forward costs several ms on one core, several times the server's HTTP
    work per request (~0.5 ms), so the comparison measures batching of a model, not of
    the HTTP stack. Threads: `threads=1` in the judge spec on 2 cores leaves one core for
    the event loop and this load generator; with more torch threads they spin against
    each other (see judge.serve.serving_threads)."""
    from tiny_models import build_reward_model

    print(f"(b) machine: {os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        model = build_reward_model(Path(tmp) / "rm", arch, layers=layers, hidden=hidden)
        spec = f"rm:{model},threads={threads}"
        single, batched = judge_alone(spec)
        params = sum(f.stat().st_size for f in Path(model).glob("*.safetensors")) / 4 / 1e6
        label = f"rm {arch} {layers}x{hidden} (~{params:.1f}M params, fp32, torch threads={threads})"
        print(f"(b) {label} alone, no HTTP: {single:.2f} ms/item one at a time, {batched:.2f} ms/item in a batch of 64 "
              f"-> at most {single / batched:.2f}x from batching")
        ratio = _compare(label, spec, seconds, clients, rounds)
    _compare("fixed 4 ms/call judge (an accelerator's cost shape)", f"python:{Path(__file__).resolve()}:fixed_cost",
             seconds, clients, 1)
    print(f"(b) load average after {os.getloadavg()[0]:.1f}")
    return ratio


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["a", "b", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=5.0, help="(b) measured seconds per server run")
    ap.add_argument("--rounds", type=int, default=2, help="(b) alternated off/on runs per arm")
    ap.add_argument("--arch", choices=["llama", "gpt2", "bert"], default="llama", help="(b) reward model architecture")
    ap.add_argument("--layers", type=int, default=4, help="(b) reward model layers")
    ap.add_argument("--hidden", type=int, default=256, help="(b) reward model width")
    ap.add_argument("--threads", type=int, default=1, help="(b) torch CPU threads in the server (both arms)")
    args = ap.parse_args()
    if args.part in ("a", "both"):
        part_a()
    if args.part in ("b", "both"):
        part_b(args.seconds, arch=args.arch, layers=args.layers, hidden=args.hidden, threads=args.threads,
               rounds=args.rounds)
