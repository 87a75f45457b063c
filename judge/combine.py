"""Combine several judges' scores into one score and one ranking per prompt (DESIGN.md §5).

Pure numpy over padded arrays: scores[P, N, J] (prompts x candidates x judges) with NaN for
a score a judge failed to give (and for padding past a prompt's last candidate), plus
valid[P, N] marking real candidates. No I/O, no printing: cli.py and ranking.py own files.

Missing scores never count as zero. With missing="skip" (default) a judge that failed on a
candidate is left out of that candidate: score and rank methods average over the judges it
has, and in pairwise methods (copeland, lexicographic, bradley-terry) that judge abstains
on every pair the candidate is in. With missing="last" the judge ranks the candidate below
every candidate it did score (score methods: the judge's worst normalised value in the
prompt). A candidate with no usable judge gets no combined value (NaN) and ranks last.

Ties are broken deterministically, in this order: passes every gate, has a combined value,
higher combined value, scored by more judges, lower candidate index (input order). Combined
values are rounded (12 decimals; Bradley-Terry 6) so values equal on paper tie exactly."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from judge.errors import SpecError

METHODS = ("zscore", "minmax", "global-z", "borda", "rrf", "copeland", "bradley-terry", "lexicographic")
MISSING = ("skip", "last")


@dataclass(frozen=True)
class Gate:
    """A pass/fail condition on one judge: the candidate passes when score >= threshold."""

    judge: str
    """Name of the judge in `scores`."""
    threshold: float = 0.5
    """Pass mark; 0.5 makes a 0/1 judge such as verify pass on 1. A missing score never passes."""

    @classmethod
    def parse(cls, text: str) -> Gate:
        """`verify` or `verify>=1` or `rm>=0.2`."""
        name, sep, value = text.partition(">=")
        name = name.strip()
        if not name:
            raise SpecError(f"gate {text!r}: expected JUDGE or JUDGE>=THRESHOLD")
        if not sep:
            return cls(name)
        try:
            return cls(name, float(value))
        except ValueError:
            raise SpecError(f"gate {text!r}: threshold {value!r} is not a number") from None


def parse_weights(text: str | None) -> dict[str, float]:
    """`rm=2,verify=1` -> {"rm": 2.0, "verify": 1.0}."""
    out: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise SpecError(f"--weights: {part!r} is not NAME=NUMBER (e.g. rm=2,verify=1)") from None
    return out


@dataclass
class CombineConfig:
    """How to turn several judges' scores into one ranking (flags of `judge rank` map 1:1)."""

    method: str = "zscore"
    """One of zscore, minmax, global-z, borda, rrf, copeland, bradley-terry, lexicographic."""
    weights: dict[str, float] = field(default_factory=dict)
    """Per-judge weights (default 1; 0 leaves a judge out). Lexicographic ignores the values."""
    judges: list[str] | None = None
    """Judges to use, in order (the lexicographic order too); default: every judge in the file."""
    gates: list[Gate] = field(default_factory=list)
    """Candidates failing a gate rank below all that pass; gate judges are then left out of the combination."""
    missing: str = "skip"
    """'skip': a failed judge is left out for that candidate; 'last': it ranks the candidate last."""
    rrf_k: float = 60.0
    """Reciprocal rank fusion constant: 1 / (k + rank)."""
    bt_prior: float = 0.1
    """Bradley-Terry L2 prior strength (a N(0, 1/prior) prior on log-strengths); keeps fits finite."""

    def validate(self) -> None:
        if self.method not in METHODS:
            close = difflib.get_close_matches(self.method, METHODS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpecError(f"unknown method {self.method!r}{hint}; methods are: {', '.join(METHODS)}")
        if self.missing not in MISSING:
            raise SpecError(f"missing must be 'skip' or 'last', not {self.missing!r}")
        for name, w in self.weights.items():
            if not np.isfinite(w) or w < 0:
                raise SpecError(f"weight of {name!r} must be a finite number >= 0, got {w}")
        if self.rrf_k < 0 or self.bt_prior <= 0:
            raise SpecError("rrf_k must be >= 0 and bt_prior > 0")

    def plan(self, available: Sequence[str]) -> tuple[list[str], np.ndarray, list[Gate]]:
        """(judges combined, their weights, gates) after checking every name against the file's judges."""
        self.validate()
        avail = list(available)

        def check(name: str, what: str) -> None:
            if name not in avail:
                close = difflib.get_close_matches(name, avail, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise SpecError(f"{what} names judge {name!r}{hint}, but the scores hold: {', '.join(avail) or 'none'}")

        for name in self.judges or []:
            check(name, "--judges")
        for name in self.weights:
            check(name, "--weights")
        for gate in self.gates:
            check(gate.judge, "--gate")
        chosen = list(self.judges or avail)
        gated = {g.judge for g in self.gates}
        combined = [j for j in chosen if j not in gated] or chosen
        combined = [j for j in combined if self.weights.get(j, 1.0) > 0]
        if not combined:
            raise SpecError("no judge left to combine (every weight is 0)")
        return combined, np.array([self.weights.get(j, 1.0) for j in combined], dtype=float), list(self.gates)


@dataclass
class Moments:
    """Running per-judge count, mean and M2 (Chan's parallel update) for global-z over a whole file."""

    count: np.ndarray
    """Scores seen per judge."""
    mean: np.ndarray
    """Their running mean."""
    m2: np.ndarray
    """Running sum of squared deviations from the mean."""

    @classmethod
    def empty(cls, n_judges: int) -> Moments:
        return cls(np.zeros(n_judges), np.zeros(n_judges), np.zeros(n_judges))

    def update(self, scores: np.ndarray) -> None:
        """Fold in a chunk scores[P, N, J] (NaN ignored)."""
        flat = scores.reshape(-1, scores.shape[-1])
        ok = ~np.isnan(flat)
        n = ok.sum(0).astype(float)
        mean = np.divide(np.where(ok, flat, 0).sum(0), n, out=np.zeros_like(n), where=n > 0)
        m2 = np.where(ok, (flat - mean) ** 2, 0).sum(0)
        total = self.count + n
        delta = mean - self.mean
        with np.errstate(invalid="ignore", divide="ignore"):
            self.mean = np.where(total > 0, self.mean + delta * n / total, 0.0)
            self.m2 = np.where(total > 0, self.m2 + m2 + delta**2 * self.count * n / total, 0.0)
        self.count = total

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.divide(self.m2, self.count, out=np.zeros_like(self.m2), where=self.count > 0))


@dataclass
class Combined:
    """The result for a block of prompts."""

    combined: np.ndarray
    """[P, N] combined score, NaN where a candidate has no usable judge (and for padding)."""
    order: np.ndarray
    """[P, N] candidate indices best to worst; a prompt's ranking is order[p, :n_p]."""
    gate_pass: np.ndarray | None
    """[P, N] True where the candidate passes every gate (None without gates)."""
    failed_everywhere: np.ndarray
    """[P, J] True where a judge (of all J columns given) scored no candidate of the prompt."""


# --------------------------------------------------------------------------- per-judge normalisations
def _scored(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return ~np.isnan(scores) & valid[:, :, None]


def _fill_missing_last(values: np.ndarray, scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """missing='last' for score methods: a failed candidate gets the judge's worst value in the prompt."""
    ok = ~np.isnan(values)
    worst = np.min(values, axis=1, initial=np.inf, where=ok, keepdims=True)
    worst = np.where(np.isinf(worst), np.nan, worst)
    fill = valid[:, :, None] & np.isnan(scores)
    return np.where(fill, np.broadcast_to(worst, values.shape), values)


def zscore(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Within-prompt z-score per judge (population std); a judge that gave every candidate the same score gives 0."""
    ok = _scored(scores, valid)
    n = ok.sum(1, keepdims=True)
    x = np.where(ok, scores, 0.0)
    mean = np.divide(x.sum(1, keepdims=True), n, out=np.zeros(n.shape), where=n > 0)
    dev = np.where(ok, scores - mean, 0.0)
    std = np.sqrt(np.divide((dev**2).sum(1, keepdims=True), n, out=np.zeros(n.shape), where=n > 0))
    # Compare max and min, not std > 0: the mean of [0.1, 0.1, 0.1] is not exactly 0.1.
    constant = np.max(scores, 1, initial=-np.inf, where=ok, keepdims=True) == np.min(
        scores, 1, initial=np.inf, where=ok, keepdims=True
    )
    z = np.divide(dev, std, out=np.zeros_like(dev), where=~constant & (std > 0))
    return np.where(ok, z, np.nan)


def minmax(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Within-prompt rescale to [0, 1] per judge; a constant judge gives 0.5."""
    ok = _scored(scores, valid)
    lo = np.min(scores, 1, initial=np.inf, where=ok, keepdims=True)
    hi = np.max(scores, 1, initial=-np.inf, where=ok, keepdims=True)
    span = hi - lo
    with np.errstate(invalid="ignore"):
        out = np.divide(scores - lo, span, out=np.full(scores.shape, 0.5), where=ok & (span > 0))
    return np.where(ok, out, np.nan)


def global_z(scores: np.ndarray, valid: np.ndarray, moments: Moments) -> np.ndarray:
    """z-score per judge against the whole file's mean and std (for judges comparable across prompts)."""
    ok = _scored(scores, valid)
    std = moments.std
    z = np.divide(scores - moments.mean, std, out=np.zeros(scores.shape), where=ok & (std > 0))
    return np.where(ok, z, np.nan)


def ascending_ranks(scores: np.ndarray, valid: np.ndarray, missing: str) -> np.ndarray:
    """Average ranks (1 = worst) per judge within each prompt, NaN where the judge abstains."""
    x = scores
    if missing == "last":
        x = np.where(valid[:, :, None] & np.isnan(scores), -np.inf, scores)
    x = np.where(valid[:, :, None], x, np.nan)
    from scipy import stats  # imported here: it costs half a second at startup

    moved = np.moveaxis(x, 1, -1)  # rank along candidates
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ranks = stats.rankdata(moved, method="average", axis=-1, nan_policy="omit")
    return np.moveaxis(ranks, -1, 1)


def borda(scores: np.ndarray, valid: np.ndarray, missing: str = "skip") -> np.ndarray:
    """Borda points per judge, (candidates beaten + half the ties) / (n - 1), in [0, 1].

    Divided by n - 1 (n = candidates the judge ranked) so that under missing='skip' a judge
    that ranked fewer candidates speaks on the same scale as the others; one candidate: 0.5."""
    asc = ascending_ranks(scores, valid, missing)
    n = (~np.isnan(asc)).sum(1, keepdims=True)
    points = np.divide(asc - 1.0, n - 1, out=np.full(asc.shape, 0.5), where=n > 1)
    return np.where(np.isnan(asc), np.nan, points)


def rrf(scores: np.ndarray, valid: np.ndarray, missing: str = "skip", k: float = 60.0) -> np.ndarray:
    """Reciprocal rank fusion terms 1 / (k + rank), rank 1 = best (ties share their average rank)."""
    asc = ascending_ranks(scores, valid, missing)
    n = (~np.isnan(asc)).sum(1, keepdims=True)
    return 1.0 / (k + (n + 1 - asc))


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean over the judges a candidate has (skip policy); NaN when it has none."""
    ok = ~np.isnan(values)
    w = np.where(ok, weights, 0.0)
    num = np.where(ok, values, 0.0) @ weights if ok.all() else (np.where(ok, values, 0.0) * w).sum(-1)
    den = w.sum(-1)
    return np.divide(num, den, out=np.full(den.shape, np.nan), where=den > 0)


# --------------------------------------------------------------------------- pairwise methods
def pairwise_signs(scores: np.ndarray, valid: np.ndarray, missing: str) -> np.ndarray:
    """[P, N, N, J]: +1 when the judge prefers a to b, -1 the reverse, 0 a tie, NaN when it abstains."""
    x = scores
    if missing == "last":
        x = np.where(valid[:, :, None] & np.isnan(scores), -np.inf, scores)
    x = np.where(valid[:, :, None], x, np.nan)
    with np.errstate(invalid="ignore"):
        d = np.sign(x[:, :, None, :] - x[:, None, :, :])  # -inf - -inf is NaN: two failures abstain
    n = x.shape[1]
    d[:, np.arange(n), np.arange(n), :] = np.nan
    return d


def copeland(signs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Share of pairwise weighted-majority contests won (a draw counts half), over pairs some judge compared."""
    ok = ~np.isnan(signs)
    margin = np.where(ok, signs, 0.0) @ weights
    compared = (ok & (weights > 0)).any(-1)
    eps = 1e-12 * weights.sum()
    wins = (margin > eps) & compared
    draws = (np.abs(margin) <= eps) & compared
    return _share(wins.sum(-1) + 0.5 * draws.sum(-1), compared.sum(-1))


def _share(points: np.ndarray, contests: np.ndarray) -> np.ndarray:
    """Points per contest in [0, 1], NaN for a candidate no judge could compare with anyone."""
    return np.divide(points, contests, out=np.full(points.shape, np.nan), where=contests > 0)


def lexicographic(signs: np.ndarray) -> np.ndarray:
    """Pairs decided by the first judge (in order) that separates them; share won, a draw counting half."""
    ok = ~np.isnan(signs)
    decisive = ok & (signs != 0)
    first = decisive.argmax(-1)
    decision = np.take_along_axis(np.where(decisive, signs, 0.0), first[..., None], -1)[..., 0]
    compared = ok.any(-1)
    return _share((decision > 0).sum(-1) + 0.5 * ((decision == 0) & compared).sum(-1), compared.sum(-1))


def bt_wins(signs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[P, N, N] weighted count of judges preferring a to b, a tie counting half to each."""
    won = np.where(signs > 0, 1.0, 0.0) + np.where(signs == 0, 0.5, 0.0)
    return won @ weights


def bradley_terry(wins: np.ndarray, prior: float = 0.1, xtol: float = 1e-8) -> np.ndarray:
    """MAP log-strengths [P, N] from wins[p, a, b] (a beat b) under a N(0, 1/prior) prior.

    All prompts are one Newton-CG problem: the objective is a sum of independent per-prompt
    terms, so its Hessian is block-diagonal and a Hessian-vector product costs one batched
    matmul. Newton-CG, not L-BFGS: with 10^5 terms in one sum, L-BFGS's line search runs out
    of float precision near 1e-5 in strength, Newton-CG reaches gradients near 1e-8."""
    from scipy import optimize

    p, n, _ = wins.shape
    both = wins + wins.transpose(0, 2, 1)
    won = wins.sum(-1)
    cache: dict[str, np.ndarray] = {}

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        theta = x.reshape(p, n)
        d = theta[:, :, None] - theta[:, None, :]
        e = special.expit(d)
        # log(expit) from e, not log_expit (3x slower): |d| stays far from where e underflows.
        nll = -(wins * np.log(np.maximum(e, 1e-300))).sum() + 0.5 * prior * (theta**2).sum()
        # sum_b W_ba e_ab - W_ab (1 - e_ab) = sum_b (W_ab + W_ba) e_ab - sum_b W_ab
        grad = (both * e).sum(-1) - won + prior * theta
        curv = both * e * (1.0 - e)  # the Hessian at x, kept for hessp
        cache.update(x=x.copy(), curv=curv, diag=curv.sum(-1) + prior)
        return float(nll), grad.ravel()

    def hessp(x: np.ndarray, v: np.ndarray) -> np.ndarray:
        if "x" not in cache or not np.array_equal(cache["x"], x):
            objective(x)
        v = v.reshape(p, n)
        return (cache["diag"] * v - np.einsum("pab,pb->pa", cache["curv"], v)).ravel()

    res = optimize.minimize(objective, np.zeros(p * n), jac=True, hessp=hessp, method="Newton-CG", options={"xtol": xtol})
    return res.x.reshape(p, n)


# --------------------------------------------------------------------------- ranking
def gate_mask(scores: np.ndarray, gate_columns: Sequence[int], thresholds: Sequence[float]) -> np.ndarray:
    """[P, N] True where every gate judge gave a score >= its threshold (NaN fails)."""
    out = np.ones(scores.shape[:2], dtype=bool)
    for col, t in zip(gate_columns, thresholds):
        with np.errstate(invalid="ignore"):
            out &= scores[:, :, col] >= t
    return out


def order_candidates(
    combined: np.ndarray, valid: np.ndarray, n_judges: np.ndarray, gate_pass: np.ndarray | None = None
) -> np.ndarray:
    """[P, N] indices best to worst, with the documented tie-break; padding goes last."""
    p, n = combined.shape
    has = ~np.isnan(combined)
    keys = [np.broadcast_to(np.arange(n), (p, n)), -n_judges, -np.where(has, combined, 0.0), ~has]
    if gate_pass is not None:
        keys.append(~gate_pass)
    keys.append(~valid)
    return np.lexsort(keys, axis=-1)


def per_judge_values(
    scores: np.ndarray, valid: np.ndarray, method: str, missing: str, rrf_k: float, moments: Moments | None
) -> np.ndarray:
    """The per-judge quantity the score and rank methods average: z, minmax, Borda points or RRF terms."""
    if method == "zscore":
        values = zscore(scores, valid)
    elif method == "minmax":
        values = minmax(scores, valid)
    elif method == "global-z":
        assert moments is not None
        values = global_z(scores, valid, moments)
    elif method == "borda":
        return borda(scores, valid, missing)
    elif method == "rrf":
        return rrf(scores, valid, missing, rrf_k)
    else:
        raise ValueError(method)
    return _fill_missing_last(values, scores, valid) if missing == "last" else values


def combine(
    scores: np.ndarray,
    valid: np.ndarray,
    judges: Sequence[str],
    config: CombineConfig,
    moments: Moments | None = None,
) -> Combined:
    """Combined score and ranking for a block of prompts; `judges` names the J columns of scores.

    For global-z, `moments` holds the per-judge statistics of the whole input, gathered with
    Moments.update over every block first; without it the block itself is the whole input."""
    use, weights, gates = config.plan(judges)
    cols = [list(judges).index(j) for j in use]
    sub = scores[:, :, cols]
    method = config.method
    if method in ("copeland", "lexicographic", "bradley-terry"):
        signs = pairwise_signs(sub, valid, config.missing)
        if method == "copeland":
            combined = copeland(signs, weights).astype(float)
        elif method == "lexicographic":
            combined = lexicographic(signs).astype(float)
        else:
            # Round: symmetric candidates must tie exactly, and the fit is accurate well past 1e-6.
            combined = np.round(bradley_terry(bt_wins(signs, weights), config.bt_prior), 6)
    else:
        sub_moments = None
        if method == "global-z":
            if moments is None:
                moments = Moments.empty(len(judges))
                moments.update(np.where(valid[:, :, None], scores, np.nan))
            sub_moments = Moments(moments.count[cols], moments.mean[cols], moments.m2[cols])
        values = per_judge_values(sub, valid, method, config.missing, config.rrf_k, sub_moments)
        # Round: values equal on paper (1/61 + 1/62 vs 1/62 + 1/61) must tie exactly.
        combined = np.round(weighted_mean(values, weights), 12)
    usable = _scored(sub, valid) & (weights > 0)
    n_judges = usable.sum(-1)
    combined = np.where(valid & (n_judges > 0), combined, np.nan)
    gate_pass = None
    if gates:
        gate_pass = gate_mask(scores, [list(judges).index(g.judge) for g in gates], [g.threshold for g in gates])
        gate_pass &= valid
    order = order_candidates(combined, valid, n_judges, gate_pass)
    failed = valid.any(1, keepdims=True) & ~_scored(scores, valid).any(1)
    return Combined(combined, order, gate_pass, failed)


def combine_one(
    scores: dict[str, Sequence[float | None]], config: CombineConfig, moments: Moments | None = None
) -> tuple[list[float | None], list[int]]:
    """One prompt from a `scores` dict (as in scored records): (combined, ranking). Handy in tests and loops."""
    names = list(scores)
    n = len(next(iter(scores.values()))) if scores else 0
    arr = np.array([[np.nan if v is None else float(v) for v in scores[j]] for j in names], dtype=float).T
    result = combine(arr.reshape(1, n, len(names)), np.ones((1, n), dtype=bool), names, config, moments)
    comb = [None if np.isnan(v) else float(v) for v in result.combined[0]]
    return comb, [int(i) for i in result.order[0]]
