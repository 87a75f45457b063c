"""Judge weights fitted on human pair labels: pure, no I/O, no printing.

Each human-decided pair becomes one row of within-prompt z-score differences per judge; an
L2-penalised logistic regression without intercept gives the weights, and k-fold
cross-validation over prompts (not pairs) their held-out accuracy. The weights apply to
`judge rank --method zscore --weights`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from judge.labels import Labelled


def _zscores(values: Sequence[float | None]) -> np.ndarray:
    """Within-prompt z-scores (population std), missing -> 0, constant -> 0: what
    `judge rank --method zscore` combines, so fitted weights transfer to it."""
    x = np.array([np.nan if v is None else v for v in values], dtype=float)
    ok = ~np.isnan(x)
    z = np.zeros_like(x)
    if ok.sum() >= 2:
        sd = x[ok].std()
        if sd > 0:
            z[ok] = (x[ok] - x[ok].mean()) / sd
    return z


def weight_design(groups: Sequence[Labelled], judges: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, prompt index): one row per human-decided pair, X = z-score differences per judge."""
    rows, ys, gid = [], [], []
    for k, g in enumerate(groups):
        if not g.pairs:
            continue
        z = np.stack([_zscores(g.scores.get(name) or [None] * len(g.texts)) for name in judges], axis=1)
        for i, j, h in g.pairs:
            if h == 0:
                continue
            rows.append(z[i] - z[j])
            ys.append(1.0 if h > 0 else 0.0)
            gid.append(k)
    if not rows:
        return np.zeros((0, len(judges))), np.zeros(0), np.zeros(0, dtype=int)
    return np.array(rows), np.array(ys), np.array(gid)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> np.ndarray:
    """Logistic regression without intercept (a difference has no side), L2-penalised."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        m = x @ w
        value = -(y * log_expit(m) + (1 - y) * log_expit(-m)).mean() + l2 * (w @ w)
        grad = x.T @ (expit(m) - y) / len(y) + 2 * l2 * w
        return float(value), grad

    return minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B").x


def fit_weights(groups: Sequence[Labelled], judges: Sequence[str], folds: int = 5, seed: int = 0) -> dict[str, Any] | None:
    """Judge weights learnt from human pair labels, with k-fold held-out accuracy (folds split
    prompts, not pairs). Weights are scaled so the largest is 1 and apply to within-prompt
    z-scores, i.e. to `judge rank --method zscore --weights`."""
    x, y, gid = weight_design(groups, judges)
    if len(y) < 2 or len(set(y.tolist())) < 2:
        return None
    prompts = np.unique(gid)
    order = np.random.default_rng(seed).permutation(prompts)
    k = max(2, min(folds, len(prompts)))
    fold_of = {p: f % k for f, p in enumerate(order)}
    fold = np.array([fold_of[p] for p in gid])
    correct = 0.0
    per_fold = []
    for f in range(k):
        test = fold == f
        if test.all() or not test.any() or len(set(y[~test].tolist())) < 2:
            continue
        w = fit_logistic(x[~test], y[~test])
        m = x[test] @ w
        hits = np.where(m == 0, 0.5, (m > 0) == (y[test] > 0))
        correct += hits.sum()
        per_fold.append(float(hits.mean()))
    w = fit_logistic(x, y)
    scale = np.abs(w).max() or 1.0
    weights = {name: float(f"{v / scale:.4g}") for name, v in zip(judges, w)}
    # judge rank takes weights >= 0: a judge that works against the labels is left out (0).
    return {
        "weights": weights,
        "spec": ",".join(f"{name}={max(v, 0.0):g}" for name, v in weights.items()),
        "method": "zscore",
        "heldout_accuracy": correct / len(y) if per_fold else None,
        "fold_accuracy": per_fold,
        "folds": k,
        "pairs": int(len(y)),
        "note": "logistic regression on within-prompt z-score differences, human ties left out, CV by prompt",
    }
