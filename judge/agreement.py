"""Agreement of judges with human labels (DESIGN.md §6): pure statistics, no I/O, no printing.

Per judge: pairwise accuracy under each tie rule, Cohen's kappa and best-of-N on label pairs
(judge.labels), rating correlations, and step AUROC / first-error accuracy; the human
ceiling; and `agree`, which assembles these with the bias diagnostics (judge.bias) and fitted
weights (judge.weights) into one JSON-ready report. CIs come from judge.estimates."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from judge.bias import judge_matrix, length_bias, position_bias
from judge.estimates import (
    TIE_RULES,
    Estimate,
    _ratio,  # noqa: F401  re-exported: tests reach it as judge.agreement._ratio
    auroc,
    bootstrap_ci,
    bootstrap_indices,
    cohen_kappa,
    estimate,
    finite,
    pair_credit,  # noqa: F401  re-exported: tests reach it as judge.agreement.pair_credit
    tally,
)
from judge.labels import Labelled, choice_pairs, consensus, label_summary, labelled_groups, verdict
from judge.weights import fit_weights


# --------------------------------------------------------------------------- configuration
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


# --------------------------------------------------------------------------- per-judge metrics
def _est(rows: Any, cfg: AgreeConfig) -> dict[str, Any]:
    return estimate(rows, n_resamples=cfg.bootstrap, seed=cfg.seed).to_dict()


def _kappa3(s: np.ndarray) -> np.ndarray:
    return cohen_kappa(s.reshape(*s.shape[:-1], 3, 3))


def _accuracy_and_kappa(acc: dict[str, list[list[float]]], tables: list[np.ndarray], cfg: AgreeConfig) -> dict[str, Any]:
    """Accuracy under each tie rule and Cohen's kappa, from per-prompt rows of estimates.tally."""
    kap = np.array(tables).reshape(-1, 9)
    value, low, high = bootstrap_ci(kap, _kappa3, cfg.bootstrap, seed=cfg.seed)
    return {"accuracy": {t: _est(acc[t], cfg) for t in TIE_RULES},
            "kappa": Estimate(value, low, high, int(kap.sum())).to_dict()}


def pairwise_counts(groups: Sequence[Labelled], judge: str) -> dict[str, Any]:
    """Per-prompt count rows for accuracy (3 tie rules), 3x3 kappa table and best-of-N."""
    acc = {t: [] for t in TIE_RULES}
    kappa, bon, missing, total = [], [], 0, 0
    for g in groups:
        s = g.scores.get(judge)
        if not g.pairs:
            continue
        verdicts = [(h, None if s is None else verdict(s[i], s[j])) for i, j, h in g.pairs]
        total += len(verdicts)
        missing += sum(v is None for _, v in verdicts)
        rows, table = tally((h, v) for h, v in verdicts if v is not None)
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
    out.update(_accuracy_and_kappa(c["acc"], c["kappa"], cfg))
    out["best_of_n"] = _est(c["best_of_n"], cfg)
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
        "within_prompt": {k: _est(v, cfg) for k, v in within.items()}
    }
    pooled: dict[str, Any] = {"n": len(hx)}
    if len(hx) >= 2 and len(set(hx)) > 1 and len(set(jx)) > 1:
        pooled["kendall_tau_b"] = finite(stats.kendalltau(hx, jx, variant="b").statistic)
        pooled["spearman"] = finite(stats.spearmanr(hx, jx).statistic)
        pooled["pearson"] = finite(stats.pearsonr(hx, jx).statistic)
    scale = sorted(set(hx))
    if scale and all(float(x).is_integer() for x in scale) and set(jx) <= set(scale):
        idx = {v: k for k, v in enumerate(scale)}
        table = np.zeros((len(scale), len(scale)))
        for h, s in zip(hx, jx):
            table[idx[h], idx[s]] += 1
        pooled["weighted_kappa"] = finite(float(cohen_kappa(table, "quadratic")))
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
        out["first_error_accuracy"] = _est(first, cfg)
    # A threshold means something only on a probability / verdict scale (verify, a PRM), not on
    # lengths or z-scores: elsewhere no solution-level accuracy is reported.
    values = [v for g in stepped for v in (g.scores.get(judge) or []) if v is not None]
    if sum(r[1] for r in solution) > 0 and values and min(values) >= 0.0 and max(values) <= 1.0:
        out["solution_accuracy"] = _est(solution, cfg)
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
        verdicts = []
        for a, mine in enumerate(votes):
            others = consensus([v for b, v in enumerate(votes) if b != a])
            theirs = {(i, j): h for i, j, h in choice_pairs(others, n)}
            verdicts += [(theirs[(i, j)], h) for i, j, h in choice_pairs(mine, n) if (i, j) in theirs]
        rows, table = tally(verdicts)
        for t in TIE_RULES:
            acc[t].append(rows[t])
        kap.append(table.ravel())
        if n == 2:
            for a in range(len(votes)):
                for b in range(a + 1, len(votes)):
                    t2 = pair_tables.setdefault((a, b), np.zeros((3, 3)))
                    t2[_choice_code(votes[a]), _choice_code(votes[b])] += 1
    out: dict[str, Any] = {"annotators": m, "prompts": len(multi), "method": "leave-one-annotator-out vs majority of the rest"}
    out.update(_accuracy_and_kappa(acc, kap, cfg))
    if pair_tables:
        kappas = {f"{a + 1}-{b + 1}": finite(float(cohen_kappa(t))) for (a, b), t in sorted(pair_tables.items())}
        out["pairwise_kappa"] = kappas
        vals = [x for x in kappas.values() if x is not None]
        out["mean_pairwise_kappa"] = float(np.mean(vals)) if vals else None
    return out


def _choice_code(c: int | None) -> int:
    """Two-candidate verdict as a table index: 0 = first better, 1 = tie, 2 = second better."""
    return 1 if c is None else (0 if c == 0 else 2)


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


def _labels_results_human(groups: Sequence[Labelled], names: Sequence[str], cfg: AgreeConfig) -> dict[str, Any]:
    """The part of the report that is computed for all prompts and again for each slice."""
    return {
        "labels": label_summary(groups),
        "results": {name: judge_report(groups, name, cfg) for name in names},
        "human": human_ceiling(groups, cfg),
    }


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
        **_labels_results_human(groups, names, cfg),
        "matrix": judge_matrix(groups, names),
    }
    if by:
        slices: dict[str, list[Labelled]] = {}
        for g in groups:
            slices.setdefault(g.slice if g.slice is not None else "(none)", []).append(g)
        report["slices"] = {key: _labels_results_human(sub, names, cfg) for key, sub in sorted(slices.items())}
    base = [n for n in names if not n.startswith("ensemble:")]  # weights are for judges, not their combinations
    if fit and base:
        report["fit"] = fit_weights(groups, base, seed=cfg.seed)
    return report


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
