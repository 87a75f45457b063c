"""Benchmark `judge rank` against a straightforward pandas groupby(...).apply(python function).

Generates a scored file (100,000 prompts x 16 candidates x 3 judges by default, 1% of the rm
scores failed), then times, each in a fresh process (start to exit, so reading and writing the
file count too; wall and CPU time, since the machine may be shared) with its peak RSS:
  - `judge rank --method zscore | rrf | bradley-terry` (the real command);
  - the baseline: json.loads every line, one pandas row per candidate, groupby("id").apply of
    a per-prompt Python function (scipy.optimize per prompt for Bradley-Terry), json.dumps out.
Both outputs are compared (combined values and rankings) before a ratio is printed. The
Bradley-Terry baseline needs minutes per 10^5 prompts, so it and a matching `judge rank` run
use the first --bt-prompts prompts. Usage: python benchmarks/bench_combine.py [--prompts N]"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

JUDGES = ["rm", "verify", "length"]
WORDS = "the answer is so we add multiply then total each left step first".split()


def generate(path: Path, prompts: int, n: int, seed: int = 0) -> None:
    """A scored file shaped like `judge score` output: text, reference, meta, scores, judgements."""
    from judge.io import dumps

    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for p in range(prompts):
            words = rng.choice(WORDS, size=(n, 14))
            answers = rng.integers(0, 30, size=n)
            cands = [" ".join(w) + f". The answer is {a}." for w, a in zip(words, answers)]
            rm = np.round(rng.normal(size=n) + 0.5 * (answers == 7), 4).tolist()
            failed = rng.random(n) < 0.01
            rm = [None if f else v for v, f in zip(rm, failed)]
            verify = (answers == 7).astype(float).tolist()
            length = [float(len(c)) for c in cands]
            rec = {
                "id": f"p{p}", "prompt": f"Question {p}: how many apples are left?", "reference": "7",
                "candidates": cands, "meta": {"source": "bench"},
                "scores": {"rm": rm, "verify": verify, "length": length},
                "judgements": {
                    "rm": [{"error": "timeout"} if f else {} for f in failed],
                    "verify": [{"answer": str(a), "via": "answer_is"} for a in answers],
                    "length": [{} for _ in cands],
                },
            }
            fh.write(dumps(rec) + "\n")


# --------------------------------------------------------------------------- the baseline
def _bt_prompt(values: np.ndarray, prior: float = 0.1) -> np.ndarray:
    """One prompt's Bradley-Terry fit with scipy.optimize, as a per-prompt script would do it."""
    from scipy import optimize, special

    n = len(values)
    wins = np.zeros((n, n))
    for a in range(n):
        for b in range(n):
            if a == b:
                continue
            for j in range(values.shape[1]):
                x, y = values[a, j], values[b, j]
                if np.isnan(x) or np.isnan(y):
                    continue
                wins[a, b] += 1.0 if x > y else 0.5 if x == y else 0.0

    def f(theta: np.ndarray) -> tuple[float, np.ndarray]:
        d = theta[:, None] - theta[None, :]
        e = special.expit(d)
        grad = (wins.T * e - wins * (1 - e)).sum(1) + prior * theta
        return -(wins * special.log_expit(d)).sum() + 0.5 * prior * theta @ theta, grad

    return optimize.minimize(f, np.zeros(n), jac=True, method="L-BFGS-B", options={"gtol": 1e-10, "ftol": 1e-15}).x


def baseline(inp: str, out: str, method: str, limit: int | None) -> None:
    import pandas as pd

    records = []
    with open(inp, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if limit is not None and i >= limit:
                break
            records.append(json.loads(line))
    rows = [(r["id"], i, *(r["scores"][j][i] for j in JUDGES)) for r in records for i in range(len(r["candidates"]))]
    df = pd.DataFrame(rows, columns=["id", "cand", *JUDGES])

    def rank_prompt(g: pd.DataFrame) -> pd.Series:
        x = g[JUDGES].astype(float)
        if method == "zscore":
            z = pd.DataFrame(index=x.index)
            for j in JUDGES:
                col, std = x[j], x[j].std(ddof=0)
                z[j] = col * 0.0 if col.max() == col.min() or not std > 0 else (col - col.mean()) / std
            combined = z.mean(axis=1)
        elif method == "rrf":
            combined = (1.0 / (60 + x.rank(ascending=False, method="average"))).mean(axis=1)
        else:
            combined = pd.Series(np.round(_bt_prompt(x.to_numpy()), 6), index=x.index)
        combined = combined.round(12 if method != "bradley-terry" else 6).tolist()
        n_judges = x.notna().sum(axis=1).tolist()
        ranking = sorted(range(len(g)), key=lambda i: (combined[i] != combined[i], -combined[i], -n_judges[i], i))
        return pd.Series({"combined": [None if c != c else c for c in combined], "ranking": ranking})

    result = df.groupby("id", sort=False).apply(rank_prompt)
    with open(out, "w", encoding="utf-8") as fh:
        for rec in records:
            rec["combined"] = result.at[rec["id"], "combined"]
            rec["ranking"] = result.at[rec["id"], "ranking"]
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------- measuring
def run(cmd: list[str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in MiB) of a fresh process.

    CPU time (user + system) is reported beside wall time because the machine may be shared:
    other processes stretch wall time, much less the CPU time a process itself uses."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def head(src: Path, dst: Path, n: int) -> None:
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        for i, line in enumerate(fi):
            if i >= n:
                break
            fo.write(line)


def compare(ours: Path, theirs: Path, tol: float) -> tuple[int, int]:
    """(prompts whose ranking differs, prompts) after checking combined values agree."""
    differ = total = 0
    with open(ours, encoding="utf-8") as a, open(theirs, encoding="utf-8") as b:
        for la, lb in zip(a, b, strict=True):
            ra, rb = json.loads(la), json.loads(lb)
            ca = np.array([np.nan if v is None else v for v in ra["combined"]])
            cb = np.array([np.nan if v is None else v for v in rb["combined"]])
            if not np.allclose(ca, cb, atol=tol, equal_nan=True):
                raise SystemExit(f"combined differs for {ra['id']}: {ca} vs {cb}")
            differ += ra["ranking"] != rb["ranking"]
            total += 1
    return differ, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=100_000)
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--bt-prompts", type=int, default=5_000, help="prompts for the Bradley-Terry comparison")
    ap.add_argument("--workdir", help="keep files here (default: a temp dir, removed)")
    ap.add_argument("--baseline", nargs=4, metavar=("METHOD", "IN", "OUT", "LIMIT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline:
        method, inp, out, limit = args.baseline
        baseline(inp, out, method, int(limit) if limit != "all" else None)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        scored = work / "scored.jsonl"
        t = time.perf_counter()
        generate(scored, args.prompts, args.candidates)
        size = scored.stat().st_size / 2**20
        print(f"generated {args.prompts:,} prompts x {args.candidates} candidates x {len(JUDGES)} judges "
              f"({size:,.0f} MiB) in {time.perf_counter() - t:.1f}s", flush=True)
        small = work / "scored-small.jsonl"
        head(scored, small, args.bt_prompts)
        judge_cmd = [sys.executable, "-m", "judge", "rank"]
        me = [sys.executable, __file__, "--baseline"]
        rows = []
        for method, src, limit in [("zscore", scored, "all"), ("rrf", scored, "all"),
                                   ("bradley-terry", small, str(args.bt_prompts))]:
            ours_out, base_out = work / f"ours-{method}.jsonl", work / f"base-{method}.jsonl"
            ours = run([*judge_cmd, str(src), "-o", str(ours_out), "--method", method, "-q"])
            base = run([*me, method, str(scored), str(base_out), limit])
            differ, total = compare(ours_out, base_out, 1e-5 if method == "bradley-terry" else 1e-9)
            rows.append((method, total, ours, base, differ))
            print(f"{method:>14} on {total:>7,} prompts: judge rank {ours[0]:6.1f}s wall {ours[1]:6.1f}s CPU "
                  f"{ours[2]:5.0f} MiB peak | pandas groupby.apply {base[0]:6.1f}s wall {base[1]:6.1f}s CPU "
                  f"{base[2]:5.0f} MiB peak | {base[0] / ours[0]:5.1f}x wall, {base[1] / ours[1]:5.1f}x CPU | "
                  f"rankings differing: {differ}", flush=True)
        if args.bt_prompts < args.prompts:
            full = run([*judge_cmd, str(scored), "-o", str(work / "ours-bt-full.jsonl"), "--method", "bradley-terry", "-q"])
            print(f"{'bradley-terry':>14} on {args.prompts:>7,} prompts: judge rank {full[0]:6.1f}s wall "
                  f"{full[1]:6.1f}s CPU {full[2]:5.0f} MiB peak (baseline not run at this size)")
        for method, _, ours, base, _ in rows:
            if method in ("zscore", "rrf") and min(base[0] / ours[0], base[1] / ours[1]) < 10:
                print(f"below target: {method} is {base[0] / ours[0]:.1f}x wall, {base[1] / ours[1]:.1f}x CPU "
                      "(target >= 10x)")


if __name__ == "__main__":
    main()
