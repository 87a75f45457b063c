"""Agreement of judges with human labels (DESIGN.md §6): pure statistics, no I/O, no printing.

Every label kind becomes within-prompt candidate pairs (a choice: chosen beats each other; a
tie: all pairs tied; ratings/rankings: by their order), so pairwise accuracy, kappa and the
judge-vs-judge matrix share one code path. Step labels get AUROC and first-error accuracy.
Confidence intervals resample prompts, not pairs: pairs of one prompt are not independent.
Each per-prompt statistic is a vector of counts; a metric is a function of their sum, which
lets scipy.stats.bootstrap run vectorised."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from judge.errors import InputError

TIE_RULES = ("drop", "half", "count")


# --------------------------------------------------------------------------- labelled prompts
@dataclass
class Labelled:
    """One scored record reduced to what agreement needs."""

    id: str
    texts: list[str]
    scores: dict[str, list[float | None]]
    pairs: list[tuple[int, int, int]]  # (i, j, h) with i < j; h = +1 if i better, -1 if j, 0 tie
    choice: int | None = None  # consensus choice, for best-of-N
    has_choice: bool = False
    ratings: list[float] | None = None
    annotators: list[int | None] | None = None  # per-annotator choices (several annotators)
    steps: list[list[int | None]] | None = None
    step_scores: dict[str, list[list[float] | None]] = field(default_factory=dict)
    step_keys: list[list[Any]] | None = None  # identity of each step, to count shared prefixes once
    slice: str | None = None
    prompt_key: str = ""  # the prompt as canonical JSON: finds the same pair shown in both orders


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def consensus(choices: Sequence[int | None]) -> int | None:
    """Strict-majority vote of annotators; no majority (or a majority for tie) is a tie."""
    counts: dict[int | None, int] = {}
    for c in choices:
        counts[c] = counts.get(c, 0) + 1
    best, n = max(counts.items(), key=lambda kv: kv[1])
    return best if n * 2 > len(choices) else None


def choice_pairs(choice: int | None, n: int) -> list[tuple[int, int, int]]:
    """A chosen candidate beats every other; a tie ties every pair."""
    if choice is None:
        return [(i, j, 0) for i in range(n) for j in range(i + 1, n)]
    return [(min(choice, j), max(choice, j), 1 if choice < j else -1) for j in range(n) if j != choice]


def rating_pairs(ratings: Sequence[float]) -> list[tuple[int, int, int]]:
    n = len(ratings)
    return [(i, j, _sign(ratings[i] - ratings[j])) for i in range(n) for j in range(i + 1, n)]


def _get(record: dict[str, Any], path: str) -> Any:
    value: Any = record
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def labelled_from_record(record: dict[str, Any], source: str, line: int, by: str | None = None) -> Labelled | None:
    """Parse one scored record (DESIGN.md §3.1-3.2); None when it carries no human label."""

    def bad(fld: str, msg: str) -> InputError:
        return InputError(source, line, fld, msg)

    cands = record.get("candidates")
    if not isinstance(cands, list) or not cands:
        raise bad("candidates", "missing or empty")
    texts = [c if isinstance(c, str) else (c or {}).get("text", "") if isinstance(c, dict) else "" for c in cands]
    n = len(texts)
    scores = record.get("scores") or {}
    if not isinstance(scores, dict):
        raise bad("scores", "must be an object {judge: [score per candidate]}")
    for name, vals in scores.items():
        if not isinstance(vals, list) or len(vals) != n:
            raise bad(f"scores.{name}", f"expected a list of {n} scores (one per candidate)")
        for k, v in enumerate(vals):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise bad(f"scores.{name}[{k}]", f"must be a number or null, got {v!r}")
    human = record.get("human")
    if human is None:
        return None
    group = Labelled(id=str(record.get("id", line)), texts=texts, scores=scores, pairs=[],
                     prompt_key=json.dumps(record.get("prompt"), sort_keys=True, ensure_ascii=False))
    if by is not None:
        value = _get(record, by)
        group.slice = None if value is None else str(value)
    labels = human if isinstance(human, list) else [human]
    if not labels or not all(isinstance(h, dict) for h in labels):
        raise bad("human", "must be an object or a list of objects (one per annotator)")
    kinds = {k for h in labels for k in ("choice", "ratings", "ranking", "steps") if k in h}
    if len(kinds) != 1:
        raise bad("human", f"expected exactly one of choice/ratings/ranking/steps, got {sorted(kinds) or 'none'}")
    kind = kinds.pop()
    if kind == "choice":
        choices = []
        for a, h in enumerate(labels):
            c = h.get("choice")
            if c is not None and (isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < n):
                raise bad(f"human[{a}].choice" if isinstance(human, list) else "human.choice", f"expected 0..{n - 1} or null, got {c!r}")
            choices.append(c)
        group.choice = consensus(choices)
        group.has_choice = True
        group.pairs = choice_pairs(group.choice, n)
        if len(choices) > 1:
            group.annotators = choices
    elif kind in ("ratings", "ranking"):
        per = []
        for h in labels:
            v = h.get(kind)
            if not isinstance(v, list) or len(v) != n:
                raise bad(f"human.{kind}", f"expected a list of {n} entries")
            if kind == "ranking":
                if sorted(v) != list(range(n)):
                    raise bad("human.ranking", "must be a permutation of candidate indices, best first")
                v = [float(n - v.index(i)) for i in range(n)]
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
                raise bad(f"human.{kind}", "entries must be numbers")
            per.append([float(x) for x in v])
        group.ratings = [float(np.mean(col)) for col in zip(*per)]
        group.pairs = rating_pairs(group.ratings)
    else:
        steps = labels[0].get("steps")
        if not isinstance(steps, list) or len(steps) != n or not all(isinstance(s, list) for s in steps):
            raise bad("human.steps", f"expected one list of step labels per candidate ({n})")
        group.steps = steps
        keys = []
        for c in cands:
            cs = (c.get("meta") or {}).get("steps") if isinstance(c, dict) else None
            keys.append([tuple(cs[: k + 1]) for k in range(len(cs))] if isinstance(cs, list) else None)
        group.step_keys = keys
        for name, js in (record.get("judgements") or {}).items():
            if isinstance(js, list) and len(js) == n:
                per_c = [j.get("step_scores") if isinstance(j, dict) else None for j in js]
                if any(isinstance(s, list) for s in per_c):
                    group.step_scores[name] = per_c
    return group


# --------------------------------------------------------------------------- estimates and CIs
@dataclass
class Estimate:
    """A point estimate, its 95% bootstrap CI over prompts, and how many units it rests on."""

    value: float | None
    low: float | None = None
    high: float | None = None
    n: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _rng(seed: int) -> dict[str, Any]:
    """scipy >= 1.15 takes `rng`; older releases (pyproject allows 1.11) take `random_state`."""
    import inspect

    key = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    return {key: np.random.default_rng(seed)}


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
    est = _finite(float(statistic(counts.sum(axis=0))))
    if est is None or counts.shape[0] < 2 or n_resamples <= 0:
        return est, None, None

    def stat(*cols: np.ndarray, axis: int = -1) -> np.ndarray:
        return statistic(np.stack([c.sum(axis=axis) for c in cols], axis=-1))

    data = tuple(counts.T)
    for method in ("BCa", "percentile"):
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = stats.bootstrap(
                    data, stat, n_resamples=n_resamples, paired=True, vectorized=True, axis=0,
                    confidence_level=confidence, method=method, batch=256, **_rng(seed),
                )
        low, high = _finite(res.confidence_interval.low), _finite(res.confidence_interval.high)
        if low is not None and high is not None:
            return est, min(low, est), max(high, est)
    return est, est, est  # every resample gives the same value


def bootstrap_indices(
    n: int, statistic: Callable[[np.ndarray], float], n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float | None, float | None, float | None]:
    """Percentile CI of a statistic that is not a sum of counts (AUROC): resample prompt indices."""
    if n == 0:
        return None, None, None
    est = _finite(statistic(np.arange(n)))
    if est is None or n < 2 or n_resamples <= 0:
        return est, None, None
    import warnings

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        res = stats.bootstrap(
            (np.arange(n),), lambda idx: statistic(idx.astype(int)), n_resamples=n_resamples, vectorized=False,
            confidence_level=confidence, method="percentile", **_rng(seed),
        )
    low, high = _finite(res.confidence_interval.low), _finite(res.confidence_interval.high)
    if low is None or high is None:
        return est, None, None
    return est, min(low, est), max(high, est)


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


# --------------------------------------------------------------------------- metric building blocks
def verdict(a: float | None, b: float | None) -> int | None:
    """+1 if a scores higher, -1 if lower, 0 tie, None if either is missing."""
    if a is None or b is None:
        return None
    return _sign(a - b)


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


def _kappa3(s: np.ndarray) -> np.ndarray:
    return cohen_kappa(s.reshape(*s.shape[:-1], 3, 3))


def auroc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """P(score of a good step > score of a bad one), ties half: Mann-Whitney U / (n+ n-)."""
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    u = stats.mannwhitneyu(positive, negative, alternative="two-sided").statistic
    return float(u) / (len(positive) * len(negative))


# --------------------------------------------------------------------------- per-judge metrics
@dataclass
class AgreeConfig:
    """Options of `judge agree` that change numbers (the CLI maps flags 1:1)."""

    ties: str = "drop"
    """How ties count in pairwise accuracy: drop, half or count (all three are reported)."""
    bootstrap: int = 2000
    """Bootstrap resamples of prompts for 95% CIs (0 = no CIs)."""
    seed: int = 0
    """Seed of the bootstrap and of the cross-validation folds."""
    neutral: str = "positive"
    """PRM800K neutral steps (label 0): positive, negative or drop."""
    step_threshold: float = 0.5
    """A step (or solution) score below this is judged an error."""


@dataclass
class AgreeRunConfig:
    """Configuration of one `judge agree` run (written beside the JSON as OUT.config.json)."""

    scored: str
    """Scored (or ranked) JSONL with `human` labels and `scores`."""
    judges: list[str] | None = None
    """Judges to report (default: every judge in the file)."""
    by: str | None = None
    """Record field for per-slice tables, e.g. meta.source."""
    methods: list[str] = field(default_factory=list)
    """Combined rankings (judge rank --method) reported as extra rows named ensemble:METHOD."""
    weights: str | None = None
    """Weights for --method, as judge rank takes them: rm=2,verify=1."""
    fit_weights: bool = False
    """Learn judge weights from the labels (cross-validated logistic regression)."""
    stats: AgreeConfig = field(default_factory=AgreeConfig)
    """Tie rule, bootstrap resamples, seed, step options."""


def add_ensemble(groups: Sequence[Labelled], judges: Sequence[str], method: str,
                 weights: dict[str, float] | None = None) -> str:
    """Add the combined score of `judge rank --method` (judge.combine) to every group as one
    more judge, named ensemble:METHOD, so it gets every metric a judge gets."""
    from judge.combine import CombineConfig, combine

    name = f"ensemble:{method}"
    cfg = CombineConfig(method=method, weights=dict(weights or {}), judges=list(judges))
    if not groups:
        return name
    width = max(len(g.texts) for g in groups)
    scores = np.full((len(groups), width, len(judges)), np.nan)
    valid = np.zeros((len(groups), width), dtype=bool)
    for p, g in enumerate(groups):
        valid[p, : len(g.texts)] = True
        for j, judge in enumerate(judges):
            for c, v in enumerate(g.scores.get(judge) or []):
                if v is not None:
                    scores[p, c, j] = v
    result = combine(scores, valid, list(judges), cfg)
    for p, g in enumerate(groups):
        g.scores[name] = [None if np.isnan(v) else float(v) for v in result.combined[p, : len(g.texts)]]
    return name


def pairwise_counts(groups: Sequence[Labelled], judge: str) -> dict[str, Any]:
    """Per-prompt count rows for accuracy (3 tie rules), 3x3 kappa table and best-of-N."""
    acc = {t: [] for t in TIE_RULES}
    kappa, bon, missing, total = [], [], 0, 0
    for g in groups:
        s = g.scores.get(judge)
        if not g.pairs:
            continue
        rows = {t: [0.0, 0.0] for t in TIE_RULES}
        table = np.zeros((3, 3))
        for i, j, h in g.pairs:
            total += 1
            v = None if s is None else verdict(s[i], s[j])
            if v is None:
                missing += 1
                continue
            for t in TIE_RULES:
                c, w = pair_credit(h, v, t)
                rows[t][0] += c
                rows[t][1] += w
            table[h + 1, v + 1] += 1
        for t in TIE_RULES:
            acc[t].append(rows[t])
        kappa.append(table.ravel())
        if g.has_choice and g.choice is not None and s is not None and all(x is not None for x in s):
            best = s[g.choice]
            bon.append([float(all(best > x for k, x in enumerate(s) if k != g.choice)), 1.0])
    return {"acc": acc, "kappa": kappa, "best_of_n": bon, "missing": missing, "pairs": total}


def pairwise_metrics(groups: Sequence[Labelled], judge: str, cfg: AgreeConfig) -> dict[str, Any] | None:
    c = pairwise_counts(groups, judge)
    if c["pairs"] == 0:
        return None
    out: dict[str, Any] = {"pairs": c["pairs"], "missing": c["missing"], "prompts": len(c["kappa"])}
    out["accuracy"] = {t: estimate(c["acc"][t], n_resamples=cfg.bootstrap, seed=cfg.seed).to_dict() for t in TIE_RULES}
    kap = np.array(c["kappa"]).reshape(-1, 9)
    value, low, high = bootstrap_ci(kap, _kappa3, cfg.bootstrap, seed=cfg.seed)
    out["kappa"] = Estimate(value, low, high, int(kap.sum())).to_dict()
    out["best_of_n"] = estimate(c["best_of_n"], n_resamples=cfg.bootstrap, seed=cfg.seed).to_dict()
    return out


def rating_metrics(groups: Sequence[Labelled], judge: str, cfg: AgreeConfig) -> dict[str, Any] | None:
    """Within-prompt Kendall tau-b / Spearman (mean over prompts, CI over prompts), pooled
    tau-b / Spearman / Pearson over all candidates, and quadratic weighted kappa when the
    judge scores on the human rating scale."""
    rated = [g for g in groups if g.ratings is not None and g.scores.get(judge) is not None]
    if not rated:
        return None
    within: dict[str, list[list[float]]] = {"kendall_tau_b": [], "spearman": []}
    hx, jx = [], []
    for g in rated:
        pts = [(h, s) for h, s in zip(g.ratings or [], g.scores[judge]) if s is not None]
        hx += [p[0] for p in pts]
        jx += [p[1] for p in pts]
        if len(pts) < 2 or len({p[0] for p in pts}) < 2 or len({p[1] for p in pts}) < 2:
            continue
        h, s = zip(*pts)
        within["kendall_tau_b"].append([stats.kendalltau(h, s, variant="b").statistic, 1.0])
        within["spearman"].append([stats.spearmanr(h, s).statistic, 1.0])
    out: dict[str, Any] = {
        "within_prompt": {k: estimate(v, n_resamples=cfg.bootstrap, seed=cfg.seed).to_dict() for k, v in within.items()}
    }
    pooled: dict[str, Any] = {"n": len(hx)}
    if len(hx) >= 2 and len(set(hx)) > 1 and len(set(jx)) > 1:
        pooled["kendall_tau_b"] = _finite(stats.kendalltau(hx, jx, variant="b").statistic)
        pooled["spearman"] = _finite(stats.spearmanr(hx, jx).statistic)
        pooled["pearson"] = _finite(stats.pearsonr(hx, jx).statistic)
    scale = sorted(set(hx))
    if scale and all(float(x).is_integer() for x in scale) and set(jx) <= set(scale):
        idx = {v: k for k, v in enumerate(scale)}
        table = np.zeros((len(scale), len(scale)))
        for h, s in zip(hx, jx):
            table[idx[h], idx[s]] += 1
        pooled["weighted_kappa"] = _finite(float(cohen_kappa(table, "quadratic")))
    else:
        pooled["weighted_kappa"] = None  # a score off the rating scale has no kappa
    out["pooled"] = pooled
    return out


def _step_good(label: int | None, neutral: str) -> bool | None:
    if label is None:
        return None
    if label == 0:
        return {"positive": True, "negative": False, "drop": None}[neutral]
    return label > 0


def _first_error(flags: Sequence[bool | None]) -> int | None | str:
    """1-based first bad step; None when all good; 'unknown' when unlabelled before any error."""
    for k, f in enumerate(flags):
        if f is False:
            return k + 1
        if f is None:
            return "unknown"
    return None


def step_metrics(groups: Sequence[Labelled], judge: str, cfg: AgreeConfig) -> dict[str, Any] | None:
    """Step-level AUROC and first-error-step accuracy (from judgements[].step_scores), and
    solution-level accuracy of the judge's candidate score (>= threshold = correct)."""
    stepped = [g for g in groups if g.steps is not None]
    if not stepped:
        return None
    out: dict[str, Any] = {}
    per_prompt: list[tuple[list[float], list[float]]] = []
    first, solution = [], []
    for g in stepped:
        pos: list[float] = []
        neg: list[float] = []
        seen: set[Any] = set()
        f_rows, s_rows = [0.0, 0.0], [0.0, 0.0]
        scores = g.scores.get(judge)
        for c, labels in enumerate(g.steps or []):
            flags = [_step_good(lab, cfg.neutral) for lab in labels]
            truth = _first_error(flags)
            if scores is not None and scores[c] is not None and truth != "unknown":
                s_rows[0] += float((scores[c] >= cfg.step_threshold) == (truth is None))
                s_rows[1] += 1
            sc = (g.step_scores.get(judge) or [None] * len(g.steps or []))[c]
            if not isinstance(sc, list):
                continue
            keys = (g.step_keys or [None] * (c + 1))[c]
            for k, (flag, value) in enumerate(zip(flags, sc)):
                key = keys[k] if keys is not None and k < len(keys) else (c, k)
                if flag is None or value is None or key in seen:
                    continue
                seen.add(key)
                (pos if flag else neg).append(float(value))
            if truth != "unknown":
                pred = _first_error([v is None or v >= cfg.step_threshold for v in sc[: len(flags)]])
                f_rows[0] += float(pred == truth)
                f_rows[1] += 1
        per_prompt.append((pos, neg))
        first.append(f_rows)
        solution.append(s_rows)
    if any(p or n for p, n in per_prompt):

        def stat(idx: np.ndarray) -> float:
            pos = [x for i in idx for x in per_prompt[i][0]]
            neg = [x for i in idx for x in per_prompt[i][1]]
            return auroc(pos, neg)

        v, lo, hi = bootstrap_indices(len(per_prompt), stat, cfg.bootstrap, seed=cfg.seed)
        out["step_auroc"] = Estimate(v, lo, hi, sum(len(p) + len(n) for p, n in per_prompt)).to_dict()
        out["first_error_accuracy"] = estimate(first, n_resamples=cfg.bootstrap, seed=cfg.seed).to_dict()
    # A threshold means something only on a probability / verdict scale (verify, a PRM), not on
    # lengths or z-scores: elsewhere no solution-level accuracy is reported.
    values = [v for g in stepped for v in (g.scores.get(judge) or []) if v is not None]
    if sum(r[1] for r in solution) > 0 and values and min(values) >= 0.0 and max(values) <= 1.0:
        out["solution_accuracy"] = estimate(solution, n_resamples=cfg.bootstrap, seed=cfg.seed).to_dict()
    return out or None


# --------------------------------------------------------------------------- humans
def human_ceiling(groups: Sequence[Labelled], cfg: AgreeConfig) -> dict[str, Any] | None:
    """Leave-one-annotator-out: each annotator against the majority of the others, pooled
    over annotators, under each tie rule; plus the mean pairwise Cohen's kappa between
    annotators (the figure papers publish). This is the accuracy a judge cannot beat by much."""
    multi = [g for g in groups if g.annotators is not None and len(g.annotators) >= 2]
    if not multi:
        return None
    m = max(len(g.annotators or []) for g in multi)
    acc = {t: [] for t in TIE_RULES}
    kap = []
    pair_tables: dict[tuple[int, int], np.ndarray] = {}
    for g in multi:
        votes = g.annotators or []
        n = len(g.texts)
        rows = {t: [0.0, 0.0] for t in TIE_RULES}
        table = np.zeros((3, 3))
        for a, mine in enumerate(votes):
            others = consensus([v for b, v in enumerate(votes) if b != a])
            theirs = {(i, j): h for i, j, h in choice_pairs(others, n)}
            for i, j, h in choice_pairs(mine, n):
                if (i, j) not in theirs:
                    continue
                for t in TIE_RULES:
                    c, w = pair_credit(theirs[(i, j)], h, t)
                    rows[t][0] += c
                    rows[t][1] += w
                table[theirs[(i, j)] + 1, h + 1] += 1
        for t in TIE_RULES:
            acc[t].append(rows[t])
        kap.append(table.ravel())
        if n == 2:
            for a in range(len(votes)):
                for b in range(a + 1, len(votes)):
                    t2 = pair_tables.setdefault((a, b), np.zeros((3, 3)))
                    t2[_choice_code(votes[a]), _choice_code(votes[b])] += 1
    out: dict[str, Any] = {"annotators": m, "prompts": len(multi), "method": "leave-one-annotator-out vs majority of the rest"}
    out["accuracy"] = {t: estimate(acc[t], n_resamples=cfg.bootstrap, seed=cfg.seed).to_dict() for t in TIE_RULES}
    k = np.array(kap)
    v, lo, hi = bootstrap_ci(k, _kappa3, cfg.bootstrap, seed=cfg.seed)
    out["kappa"] = Estimate(v, lo, hi, int(k.sum())).to_dict()
    if pair_tables:
        kappas = {f"{a + 1}-{b + 1}": _finite(float(cohen_kappa(t))) for (a, b), t in sorted(pair_tables.items())}
        out["pairwise_kappa"] = kappas
        vals = [x for x in kappas.values() if x is not None]
        out["mean_pairwise_kappa"] = float(np.mean(vals)) if vals else None
    return out


def _choice_code(c: int | None) -> int:
    """Two-candidate verdict as a table index: 0 = first better, 1 = tie, 2 = second better."""
    return 1 if c is None else (0 if c == 0 else 2)


def label_summary(groups: Sequence[Labelled]) -> dict[str, Any]:
    """What the labels look like: how many of each kind, tie rate, and how often humans pick
    the longer or the first response (the length and position baselines in one line)."""
    pairs = [(g, i, j, h) for g in groups for i, j, h in g.pairs]
    ties = sum(1 for *_, h in pairs if h == 0)
    decided = [(g, i, j, h) for g, i, j, h in pairs if h != 0 and len(g.texts[i]) != len(g.texts[j])]
    longer = sum(1 for g, i, j, h in decided if (len(g.texts[i]) > len(g.texts[j])) == (h > 0))
    two = [(g, h) for g in groups for i, j, h in g.pairs if len(g.texts) == 2 and h != 0]
    return {
        "prompts": len(groups),
        "choice": sum(1 for g in groups if g.has_choice),
        "ratings": sum(1 for g in groups if g.ratings is not None),
        "steps": sum(1 for g in groups if g.steps is not None),
        "several_annotators": sum(1 for g in groups if g.annotators),
        "pairs": len(pairs),
        "tie_rate": ties / len(pairs) if pairs else None,
        "prefers_longer": longer / len(decided) if decided else None,
        "prefers_first": sum(1 for _, h in two if h > 0) / len(two) if two else None,
    }


# --------------------------------------------------------------------------- bias diagnostics
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
    rho = _finite(stats.spearmanr(xs, ys).statistic) if len(xs) > 2 and len(set(ys)) > 1 and len(set(xs)) > 1 else None
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
                "kappa": _finite(float(cohen_kappa(table))) if total else None,
            }
            out[a][b] = cell
            out[b][a] = cell
    return out


def _pair_verdict(g: Labelled, name: str, i: int, j: int, human: dict[tuple[int, int], int]) -> int | None:
    if name == "human":
        return human.get((i, j))
    s = g.scores.get(name)
    return None if s is None else verdict(s[i], s[j])


# --------------------------------------------------------------------------- fitted weights
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


# --------------------------------------------------------------------------- the whole report
def judge_report(groups: Sequence[Labelled], judge: str, cfg: AgreeConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, fn in (("pairwise", pairwise_metrics), ("ratings", rating_metrics), ("steps", step_metrics)):
        if key == "steps" and judge.startswith("ensemble:"):
            continue  # a within-prompt combination has no per-solution scale (one candidate: always 0)
        value = fn(groups, judge, cfg)
        if value is not None:
            out[key] = value
    out["length_bias"] = length_bias(groups, judge)
    out["position"] = position_bias(groups, judge)
    return out


def agree(
    groups: Sequence[Labelled],
    judges: Sequence[str] | None = None,
    cfg: AgreeConfig | None = None,
    by: bool = False,
    fit: bool = False,
) -> dict[str, Any]:
    """Every number of `judge agree` for labelled groups: per judge, humans, the judge matrix,
    per slice (groups carry .slice when `by` is set) and fitted weights. JSON-ready."""
    cfg = cfg or AgreeConfig()
    if cfg.ties not in TIE_RULES:
        raise ValueError(f"ties must be one of {TIE_RULES}, got {cfg.ties!r}")
    names = list(judges) if judges else sorted({n for g in groups for n in g.scores})
    report: dict[str, Any] = {
        "config": asdict(cfg),
        "judges": names,
        "labels": label_summary(groups),
        "results": {name: judge_report(groups, name, cfg) for name in names},
        "human": human_ceiling(groups, cfg),
        "matrix": judge_matrix(groups, names),
    }
    if by:
        slices: dict[str, list[Labelled]] = {}
        for g in groups:
            slices.setdefault(g.slice if g.slice is not None else "(none)", []).append(g)
        report["slices"] = {
            key: {
                "labels": label_summary(sub),
                "results": {name: judge_report(sub, name, cfg) for name in names},
                "human": human_ceiling(sub, cfg),
            }
            for key, sub in sorted(slices.items())
        }
    base = [n for n in names if not n.startswith("ensemble:")]  # weights are for judges, not their combinations
    if fit and base:
        report["fit"] = fit_weights(groups, base, seed=cfg.seed)
    return report


def labelled_groups(records: Iterable[tuple[int, dict[str, Any]]], source: str, by: str | None = None) -> list[Labelled]:
    """Labelled groups of (line, record) pairs; unlabelled records are skipped."""
    out = []
    for line, rec in records:
        g = labelled_from_record(rec, source, line, by)
        if g is not None:
            out.append(g)
    return out


def agree_records(
    records: Iterable[dict[str, Any]],
    judges: Sequence[str] | None = None,
    by: str | None = None,
    ties: str = "drop",
    bootstrap: int = 2000,
    seed: int = 0,
    fit_weights: bool = False,
) -> dict[str, Any]:
    """The Python face of `judge agree`: scored records in, every number out (a dict).

    `judge.agree(judge.io.read_jsonl("scored.jsonl"), by="meta.source")`"""
    groups = labelled_groups(enumerate(records, start=1), "<records>", by)
    cfg = AgreeConfig(ties=ties, bootstrap=bootstrap, seed=seed)
    return agree(groups, judges, cfg, by=by is not None, fit=fit_weights)
