"""Streaming: peak memory of `judge score` must not grow with the input size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_MEASURE = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss_kb(args: list[str]) -> int:
    """Peak resident memory of one child process (ru_maxrss of a fresh parent's children)."""
    out = subprocess.run([sys.executable, "-c", _MEASURE, *args], capture_output=True, text=True, check=True, cwd=ROOT)
    return int(out.stdout.strip())


def make_file(path: Path, n_groups: int) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n_groups):
            cands = [f"Problem {i}, attempt {k}: {'x' * 200}\n#### {i + k % 2}" for k in range(4)]
            fh.write(json.dumps({"id": f"p{i}", "prompt": f"Problem {i}", "reference": str(i), "candidates": cands}) + "\n")
    return path


def test_peak_memory_stays_flat_as_input_grows(tmp_path):
    small = make_file(tmp_path / "small.jsonl", 500)
    large = make_file(tmp_path / "large.jsonl", 10_000)  # 20x the records, ~12 MB of JSON
    base = [sys.executable, "-m", "judge", "score", "--judge", "verify:gsm8k", "-q"]
    small_kb = peak_rss_kb([*base, str(small), "-o", str(tmp_path / "s.jsonl")])
    large_kb = peak_rss_kb([*base, str(large), "-o", str(tmp_path / "l.jsonl")])
    assert (tmp_path / "l.jsonl").read_bytes().count(b"\n") == 10_000
    # Loading the large file whole would add well over 12 MB; streaming adds next to nothing.
    assert large_kb - small_kb < 8 * 1024, (small_kb, large_kb)
