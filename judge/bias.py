"""Bias diagnostics of judges over labelled prompts: pure, no I/O, no printing.

Length bias (does a judge prefer the longer response?), position bias (does it prefer the
first of two, and does its verdict flip when the same pair is shown in the other order?),
and the judge-vs-judge (and vs human) agreement matrix over within-prompt candidate pairs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from judge.estimates import cohen_kappa, finite
from judge.labels import Labelled, verdict


def length_bias(groups: Sequence[Labelled], judge: str) -> dict[str, Any]:
    """Spearman of score with length (characters) over all candidates, and how often the judge
    prefers the longer of two responses of different length (0.5 = no length preference)."""
    xs, ys, longer, decided = [], [], 0, 0
    for g in groups:
        s = g.scores.get(judge)
        if s is None:
            continue
        for text, v in zip(g.texts, s):
            if v is not None:
                xs.append(len(text))
                ys.append(v)
        for i in range(len(g.texts)):
            for j in range(i + 1, len(g.texts)):
                v = verdict(s[i], s[j])
                li, lj = len(g.texts[i]), len(g.texts[j])
                if v and li != lj:
                    decided += 1
                    longer += int((li > lj) == (v > 0))
    rho = finite(stats.spearmanr(xs, ys).statistic) if len(xs) > 2 and len(set(ys)) > 1 and len(set(xs)) > 1 else None
    return {"spearman_length": rho, "prefers_longer": longer / decided if decided else None, "n": len(xs)}


def position_bias(groups: Sequence[Labelled], judge: str) -> dict[str, Any]:
    """For two-candidate prompts: how often the judge picks the first, and, where the file
    holds the same pair in both orders, how often its verdict flips with the order."""
    first = decided = 0
    seen: dict[tuple[str, str, str], int] = {}
    flips = swapped = 0
    for g in groups:
        s = g.scores.get(judge)
        if s is None or len(g.texts) != 2:
            continue
        v = verdict(s[0], s[1])
        if v is None:
            continue
        if v:
            decided += 1
            first += int(v > 0)
        key = (g.prompt_key, g.texts[0], g.texts[1])
        back = (key[0], g.texts[1], g.texts[0])
        if back in seen:
            swapped += 1
            flips += int(seen.pop(back) != -v)  # same preferred text in both orders = no flip
        else:
            seen[key] = v
    return {
        "prefers_first": first / decided if decided else None,
        "flip_rate": flips / swapped if swapped else None,
        "swapped_pairs": swapped,
    }


def judge_matrix(groups: Sequence[Labelled], judges: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Judge-vs-judge (and vs human) agreement over within-prompt candidate pairs: the share
    of pairs with the same three-way verdict and Cohen's kappa of those verdicts."""
    names = [*judges, "human"]
    out: dict[str, dict[str, dict[str, Any]]] = {a: {} for a in names}
    for x, a in enumerate(names):
        for b in names[x:]:
            table = np.zeros((3, 3))
            for g in groups:
                human = {(i, j): h for i, j, h in g.pairs}
                n = len(g.texts)
                for i in range(n):
                    for j in range(i + 1, n):
                        va = _pair_verdict(g, a, i, j, human)
                        vb = _pair_verdict(g, b, i, j, human)
                        if va is not None and vb is not None:
                            table[va + 1, vb + 1] += 1
            total = int(table.sum())
            cell = {
                "n": total,
                "agreement": float(np.trace(table) / total) if total else None,
                "kappa": finite(float(cohen_kappa(table))) if total else None,
            }
            out[a][b] = cell
            out[b][a] = cell
    return out


def _pair_verdict(g: Labelled, name: str, i: int, j: int, human: dict[tuple[int, int], int]) -> int | None:
    if name == "human":
        return human.get((i, j))
    s = g.scores.get(name)
    return None if s is None else verdict(s[i], s[j])
