"""Estimates with bootstrap CIs over prompts, and the statistics they are built from: pure.

Confidence intervals resample prompts, not pairs: pairs of one prompt are not independent.
Each per-prompt statistic is a vector of counts; a metric is a function of their sum, which
lets scipy.stats.bootstrap run vectorised. Also: tie-rule credit of a pair, Cohen's kappa
(plain and weighted) and AUROC, all checked against hand-worked and textbook values."""

from __future__ import annotations

import contextlib
import inspect
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

TIE_RULES = ("drop", "half", "count")


@dataclass
class Estimate:
    """A point estimate, its 95% bootstrap CI over prompts, and how many units it rests on."""

    value: float | None
    low: float | None = None
    high: float | None = None
    n: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def finite(x: float) -> float | None:
    """x as a float, or None where it is missing, nan or infinite (JSON has no nan)."""
    return float(x) if x is not None and math.isfinite(x) else None


def _rng(seed: int) -> dict[str, Any]:
    """scipy >= 1.15 takes `rng`; older releases (pyproject allows 1.11) take `random_state`."""
    key = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    return {key: np.random.default_rng(seed)}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Degenerate resamples (0/0, constant data) are expected: no warnings from them."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _interval(ci: Any, est: float) -> tuple[float, float] | None:
    """A finite CI widened, if need be, to hold the point estimate; None if either end is not finite."""
    low, high = finite(ci.low), finite(ci.high)
    if low is None or high is None:
        return None
    return min(low, est), max(high, est)


def bootstrap_ci(
    counts: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float | None, float | None, float | None]:
    """(estimate, low, high) of statistic(sum of per-prompt count rows), resampling prompts.

    counts: (n_prompts, k). statistic maps (..., k) summed counts to (...). BCa where it is
    defined; percentile where the data are degenerate (e.g. every prompt right)."""
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2 or counts.shape[0] == 0:
        return None, None, None
    est = finite(float(statistic(counts.sum(axis=0))))
    if est is None or counts.shape[0] < 2 or n_resamples <= 0:
        return est, None, None

    def stat(*cols: np.ndarray, axis: int = -1) -> np.ndarray:
        return statistic(np.stack([c.sum(axis=axis) for c in cols], axis=-1))

    data = tuple(counts.T)
    for method in ("BCa", "percentile"):
        with _quiet():
            res = stats.bootstrap(
                data, stat, n_resamples=n_resamples, paired=True, vectorized=True, axis=0,
                confidence_level=confidence, method=method, batch=256, **_rng(seed),
            )
        ci = _interval(res.confidence_interval, est)
        if ci is not None:
            return est, *ci
    return est, est, est  # every resample gives the same value


def bootstrap_indices(
    n: int, statistic: Callable[[np.ndarray], float], n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float | None, float | None, float | None]:
    """Percentile CI of a statistic that is not a sum of counts (AUROC): resample prompt indices."""
    if n == 0:
        return None, None, None
    est = finite(statistic(np.arange(n)))
    if est is None or n < 2 or n_resamples <= 0:
        return est, None, None
    with _quiet():
        res = stats.bootstrap(
            (np.arange(n),), lambda idx: statistic(idx.astype(int)), n_resamples=n_resamples, vectorized=False,
            confidence_level=confidence, method="percentile", **_rng(seed),
        )
    ci = _interval(res.confidence_interval, est)
    return (est, None, None) if ci is None else (est, *ci)


def _ratio(s: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return s[..., 0] / s[..., 1]


def estimate(counts: Any, statistic: Callable[[np.ndarray], np.ndarray] = _ratio, *, n: int | None = None,
             n_resamples: int = 2000, seed: int = 0) -> Estimate:
    """Estimate + CI from per-prompt count rows; n defaults to the summed denominators."""
    arr = np.asarray(counts, dtype=float)
    if arr.size == 0:
        return Estimate(None, n=0)
    arr = arr.reshape(arr.shape[0], -1)
    value, low, high = bootstrap_ci(arr, statistic, n_resamples=n_resamples, seed=seed)
    return Estimate(value, low, high, int(round(arr[:, -1].sum())) if n is None else n)


def pair_credit(human: int, judge: int, ties: str) -> tuple[float, float]:
    """(credit, weight) of one pair under a tie rule.

    drop: pairs where human or judge says tie are left out (MT-Bench "without ties");
    count: ties are a third verdict that must match (MT-Bench "with ties");
    half: a tie on exactly one side earns half a point."""
    if ties == "drop":
        return (float(human == judge), 1.0) if human != 0 and judge != 0 else (0.0, 0.0)
    if ties == "count":
        return float(human == judge), 1.0
    if ties == "half":
        if human == judge:
            return 1.0, 1.0
        return (0.5 if human == 0 or judge == 0 else 0.0), 1.0
    raise ValueError(f"ties must be one of {TIE_RULES}, got {ties!r}")


def tally(verdicts: Iterable[tuple[int, int]]) -> tuple[dict[str, list[float]], np.ndarray]:
    """One prompt's (reference, rated) pair verdicts as count rows: [credit, weight] per tie
    rule, and the 3x3 table of the two verdicts (-1, 0, +1) that kappa is computed from."""
    rows = {t: [0.0, 0.0] for t in TIE_RULES}
    table = np.zeros((3, 3))
    for ref, v in verdicts:
        for t in TIE_RULES:
            c, w = pair_credit(ref, v, t)
            rows[t][0] += c
            rows[t][1] += w
        table[ref + 1, v + 1] += 1
    return rows, table


def cohen_kappa(table: np.ndarray, weights: str | None = None) -> float:
    """Cohen's kappa of a square confusion table (rows: rater 1, cols: rater 2); weights
    'linear' or 'quadratic' for ordered categories. nan when chance agreement is total."""
    t = np.asarray(table, dtype=float)
    total = t.sum(axis=(-2, -1), keepdims=True)
    with np.errstate(all="ignore"):
        p = t / total
        expected = p.sum(axis=-1, keepdims=True) * p.sum(axis=-2, keepdims=True)
        k = t.shape[-1]
        i, j = np.indices((k, k))
        if weights is None:
            w = (i != j).astype(float)
        elif weights == "linear":
            w = np.abs(i - j) / max(k - 1, 1)
        elif weights == "quadratic":
            w = ((i - j) / max(k - 1, 1)) ** 2
        else:
            raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
        return 1.0 - (w * p).sum(axis=(-2, -1)) / (w * expected).sum(axis=(-2, -1))


def auroc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """P(score of a good step > score of a bad one), ties half: Mann-Whitney U / (n+ n-)."""
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    u = stats.mannwhitneyu(positive, negative, alternative="two-sided").statistic
    return float(u) / (len(positive) * len(negative))
