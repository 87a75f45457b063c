"""Reference agreement run: offline judges against human labels on the shared PandaLM, LLMBar,
hh-rlhf (helpful-base) and MR-GSM8K sets.

Judges: the `length` baseline ("longer is better"), PandaLM's gpt-3.5 verdicts imported with
`field:meta.gpt35`, and `verify:gsm8k` where a reference answer exists (MR-GSM8K: every
solution there is human-judged wrong, so its row says how often STaR's filter lets a wrong
rationale through). Prints the `judge agree` tables and the ratio of each judge's accuracy
to the length baseline measured in the same run. Needs ../shared/data (skips otherwise);
about a minute on 2 CPU cores.

    python benchmarks/bench_agreement.py [--out DIR] [--bootstrap 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
SETS = [  # (format, file, options)
    ("pandalm", "pandalm/testset-v1.json", {"gpt": "pandalm/gpt-3.5-turbo-testset-v1.json"}),
    ("llmbar", "llmbar/LLMBar_Natural.json", {}),
    ("llmbar", "llmbar/Processed_FairEval.json", {}),
    ("llmbar", "llmbar/Processed_LLMEval2.json", {}),
    ("hh-rlhf", "hh-rlhf/helpful-base-test.jsonl.gz", {}),
    ("mr-gsm8k", "mr-gsm8k/mr_gsm8k_incorrect_subset.jsonl", {}),
]
JUDGES = ["length", "gpt35=field:meta.gpt35", "verify:gsm8k"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="Directory for the candidates, scores, JSON and PNG (default: a temp dir).")
    ap.add_argument("--bootstrap", type=int, default=2000, help="Bootstrap resamples of prompts.")
    args = ap.parse_args()
    missing = [rel for _, rel, _ in SETS if not (DATA / rel).exists()]
    if missing:
        print(f"SKIP bench_agreement: shared data not found at {DATA} (missing {', '.join(missing)}); "
              "it is only present in the team's workspace", file=sys.stderr)
        return 0
    from judge.datasets import convert
    from judge.io import JsonlWriter
    from judge.registry import load_judge
    from judge.scoring import ScoreConfig, score_file

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-agreement-"))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cands = out / "candidates.jsonl"
    counts = {}
    with JsonlWriter(cands) as writer:
        for fmt, rel, opts in SETS:
            n = 0
            for rec in convert(fmt, DATA / rel, **{k: DATA / v for k, v in opts.items()}):
                writer.write(rec)
                n += 1
            counts[rel] = n
    t_convert = time.perf_counter() - t0
    scored = out / "scored.jsonl"
    config = ScoreConfig(input=str(cands), output=str(scored), judges=JUDGES, overwrite=True)
    summary = score_file(config, [load_judge(s) for s in JUDGES])
    t_score = time.perf_counter() - t0 - t_convert
    report_path, png = out / "agree.json", out / "agree.png"
    cmd = [sys.executable, "-m", "judge", "agree", str(scored), "--by", "meta.source", "--bootstrap",
           str(args.bootstrap), "--fit-weights", "--weights-out", str(out / "weights.txt"),
           "--json", str(report_path), "--plot", str(png)]
    try:
        import judge.combine  # noqa: F401  (the ensemble row needs the combine issue's module)

        cmd += ["--method", "zscore"]
    except ImportError:
        print("note: judge.combine not importable; no ensemble row", file=sys.stderr)
    env = {**os.environ, "COLUMNS": "170"}
    t1 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    t_agree = time.perf_counter() - t1
    report = json.loads(report_path.read_text())
    print(f"\nconverted {sum(counts.values()):,} records ({', '.join(f'{k}: {v:,}' for k, v in counts.items())})")
    print(f"scored {summary.items:,} candidates with {', '.join(JUDGES)}")
    print(f"time: convert {t_convert:.1f}s, score {t_score:.1f}s, agree {t_agree:.1f}s, total {time.perf_counter() - t0:.1f}s")
    ties = report["config"]["ties"]
    print(f"\naccuracy (ties: {ties}) relative to the length baseline measured in this run:")
    for key, block in sorted(report["slices"].items()):
        base = (((block["results"].get("length") or {}).get("pairwise") or {}).get("accuracy") or {}).get(ties) or {}
        for name, res in block["results"].items():
            acc = ((res.get("pairwise") or {}).get("accuracy") or {}).get(ties) or {}
            if name != "length" and acc.get("value") is not None and base.get("value"):
                print(f"  {key:22s} {name:16s} {acc['value']:.3f} / length {base['value']:.3f} = x{acc['value'] / base['value']:.2f}")
    human = (report["slices"].get("pandalm") or {}).get("human")
    if human:
        print(f"  pandalm human ceiling (LOAO) {human['accuracy'][ties]['value']:.3f}; "
              f"mean pairwise annotator kappa {human['mean_pairwise_kappa']:.3f} (published 0.85-0.88)")
    mr = ((report["slices"].get("mr-gsm8k") or {}).get("results") or {}).get("verify", {}).get("steps", {})
    if mr.get("solution_accuracy"):
        sa = mr["solution_accuracy"]
        print(f"  mr-gsm8k: verify rejects {sa['value']:.1%} of {sa['n']} human-judged wrong solutions "
              f"[{sa['low']:.1%}, {sa['high']:.1%}]")
    print(f"\nwrote {report_path}, {png}, {out / 'weights.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
