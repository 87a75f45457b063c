"""Rich tables (and, later, matplotlib figures) for the CLI. An edge like cli.py: it builds
renderables from results and never computes statistics itself."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def score_summary_table(summary: Any) -> Table:
    """Per judge: scored, failed, abstained, from store, mean score, and judge extras."""
    extras = sorted({k for t in summary.tallies.values() for k in t.extra})
    title = f"{summary.groups:,} prompts, {summary.items:,} candidates scored this run"
    if summary.resumed_from:
        title += f" (resumed after {summary.resumed_from:,} records)"
    table = Table(title=title)
    for col in ["judge", "scored", "failed", "abstained", "from store", "mean score", *extras]:
        table.add_column(col, justify="left" if col == "judge" else "right")
    for t in summary.tallies.values():
        row = [t.name, _fmt(t.scored), _fmt(t.failed), _fmt(t.abstained), _fmt(t.cached), _fmt(t.mean)]
        row += [_fmt(t.extra.get(k)) for k in extras]
        table.add_row(*row, style="red" if t.failed else None)
    return table


# --------------------------------------------------------------------------- agreement (judge agree)
def _ci(est: dict[str, Any] | None, pct: bool = True) -> str:
    """`0.851 [0.822, 0.879]` (or as percentages) from an Estimate dict; '-' when absent."""
    if not est or est.get("value") is None:
        return "-"
    f = (lambda v: f"{100 * v:.1f}") if pct else (lambda v: f"{v:.3f}")
    text = f(est["value"])
    if est.get("low") is not None and est.get("high") is not None:
        text += f" [{f(est['low'])}, {f(est['high'])}]"
    return text


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _pairwise_row(name: str, res: dict[str, Any], ties: str) -> list[str]:
    pw = res.get("pairwise") or {}
    acc = pw.get("accuracy") or {}
    lb, pos = res.get("length_bias") or {}, res.get("position") or {}
    flip = pos.get("flip_rate")
    return [
        name,
        _fmt(pw.get("pairs")),
        _fmt(pw.get("missing")),
        _ci(acc.get(ties)),
        _ci(acc.get("drop")) if ties != "drop" else _fmt((acc.get("drop") or {}).get("n")),
        _ci(acc.get("count")),
        _ci(pw.get("kappa"), pct=False),
        _ci(pw.get("best_of_n")),
        "-" if lb.get("spearman_length") is None else f"{lb['spearman_length']:+.2f}",
        _pct(lb.get("prefers_longer")),
        _pct(pos.get("prefers_first")),
        "-" if flip is None else f"{_pct(flip)} of {pos.get('swapped_pairs')}",
    ]


def _pairwise_table(title: str, block: dict[str, Any], ties: str) -> Table:
    second = "acc w/o ties (drop)" if ties != "drop" else "pairs kept (drop)"
    table = Table(title=title)
    for col in ["judge", "pairs", "missing", f"acc % ({ties}) [95% CI]", second, "acc % with ties (count)",
                "kappa (3-way)", "best-of-N %", "ρ(score, len)", "prefers longer", "prefers 1st", "order flips"]:
        table.add_column(col, justify="left" if col == "judge" else "right")
    for name, res in block["results"].items():
        pw = res.get("pairwise")
        if pw and pw["missing"] < pw["pairs"]:  # a judge that scored none of these pairs has no row
            table.add_row(*_pairwise_row(name, res, ties))
    human = block.get("human")
    if human:
        acc = human["accuracy"]
        table.add_row(f"human ceiling (LOAO, {human['prompts']:,} prompts x {human['annotators']} annotators)",
                      _fmt(acc["count"]["n"]), "-",
                      _ci(acc.get(ties)), _ci(acc["drop"]) if ties != "drop" else _fmt(acc["drop"]["n"]),
                      _ci(acc["count"]), _ci(human["kappa"], pct=False), "-", "-", "-", "-", "-", style="bold cyan")
    labels = block.get("labels") or {}
    if labels.get("pairs"):
        table.caption = (f"{labels['prompts']:,} prompts, {labels['pairs']:,} labelled pairs; human ties "
                         f"{_pct(labels.get('tie_rate'))}; humans prefer the longer response "
                         f"{_pct(labels.get('prefers_longer'))} and the first {_pct(labels.get('prefers_first'))}. "
                         "CIs: bootstrap over prompts.")
    return table


def agreement_tables(report: dict[str, Any]) -> list[Table]:
    """Rich tables for `judge agree`: pairwise (overall, per slice), ratings, steps, the
    judge-vs-judge matrix and fitted weights. Only tables that have numbers are returned."""
    ties = report["config"]["ties"]
    tables = []
    if any(r.get("pairwise") for r in report["results"].values()):
        tables.append(_pairwise_table("agreement with human labels (all prompts)", report, ties))
    for key, block in (report.get("slices") or {}).items():
        if any(r.get("pairwise") for r in block["results"].values()):
            tables.append(_pairwise_table(f"slice {key}", block, ties))
    rated = {n: r["ratings"] for n, r in report["results"].items() if r.get("ratings")}
    if rated:
        t = Table(title="ratings / rankings")
        for col in ["judge", "tau-b within prompt", "spearman within prompt", "tau-b pooled", "spearman pooled",
                    "pearson pooled", "weighted kappa"]:
            t.add_column(col, justify="left" if col == "judge" else "right")
        for name, r in rated.items():
            w, p = r["within_prompt"], r["pooled"]
            t.add_row(name, _ci(w.get("kendall_tau_b"), pct=False), _ci(w.get("spearman"), pct=False),
                      _fmt(p.get("kendall_tau_b")), _fmt(p.get("spearman")), _fmt(p.get("pearson")),
                      _fmt(p.get("weighted_kappa")))
        tables.append(t)
    stepped = {n: r["steps"] for n, r in report["results"].items() if r.get("steps")}
    if stepped:
        t = Table(title=f"step labels (neutral = {report['config']['neutral']}, threshold {report['config']['step_threshold']})")
        for col in ["judge", "step AUROC", "first-error-step acc %", "solution acc %"]:
            t.add_column(col, justify="left" if col == "judge" else "right")
        for name, r in stepped.items():
            t.add_row(name, _ci(r.get("step_auroc"), pct=False), _ci(r.get("first_error_accuracy")),
                      _ci(r.get("solution_accuracy")))
        tables.append(t)
    matrix = report.get("matrix") or {}
    names = [n for n in matrix if any(cell["n"] for other, cell in matrix[n].items() if other != n)]
    if len(names) > 2:
        t = Table(title="judge vs judge: same verdict on a pair % (kappa)")
        t.add_column("")
        for n in names:
            t.add_column(n, justify="right")
        for a in names:
            t.add_row(a, *[("-" if matrix[a][b]["agreement"] is None else
                            f"{100 * matrix[a][b]['agreement']:.1f} ({_fmt(matrix[a][b]['kappa'])})") for b in names])
        tables.append(t)
    fit = report.get("fit")
    if fit:
        t = Table(title=f"fitted weights ({fit['folds']}-fold CV by prompt, {fit['pairs']:,} pairs)", min_width=90)
        t.add_column("judge")
        t.add_column("weight", justify="right")
        for name, w in fit["weights"].items():
            t.add_row(name, f"{w:.4g}")
        t.caption = f"held-out accuracy {_pct(fit.get('heldout_accuracy'))}; judge rank --method zscore --weights {fit['spec']}"
        tables.append(t)
    return tables


def agreement_figure(report: dict[str, Any], path: str) -> None:
    """PNG: headline accuracy with 95% CI bars per judge (and per slice), the human ceiling
    as a dashed line; and accuracy against how often each judge prefers the longer response."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ties = report["config"]["ties"]

    def scored(block: dict[str, Any], name: str) -> bool:
        pw = (block["results"].get(name) or {}).get("pairwise")
        return bool(pw) and pw["missing"] < pw["pairs"]

    # Only blocks and judges with scored pairs get bars (a judge with none would still take a colour).
    blocks = {k: b for k, b in {"all": report, **(report.get("slices") or {})}.items()
              if any(scored(b, n) for n in report["results"])}
    judges = [n for n in report["results"] if any(scored(b, n) for b in blocks.values())]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(min(18, 6 + 1.3 * len(blocks) * max(1, len(judges)) ** 0.5), 5),
                                   gridspec_kw={"width_ratios": [2, 1]})
    width = 0.8 / max(1, len(judges))
    for k, name in enumerate(judges):
        xs, ys, lo, hi = [], [], [], []
        for b, block in enumerate(blocks.values()):
            est = (((block["results"].get(name) or {}).get("pairwise") or {}).get("accuracy") or {}).get(ties) or {}
            if est.get("value") is None:
                continue
            xs.append(b + (k - (len(judges) - 1) / 2) * width)
            ys.append(est["value"])
            lo.append(est["value"] - (est["low"] if est.get("low") is not None else est["value"]))
            hi.append((est["high"] if est.get("high") is not None else est["value"]) - est["value"])
        ax1.bar(xs, ys, width=width * 0.9, yerr=[lo, hi], capsize=3, label=name)
    drawn = False
    for b, block in enumerate(blocks.values()):
        human = block.get("human")
        # The ceiling is drawn only where every prompt has several annotators: elsewhere it would
        # describe other prompts than the bars beside it.
        if human and human["prompts"] == block["labels"]["prompts"] and human["accuracy"][ties]["value"] is not None:
            ax1.hlines(human["accuracy"][ties]["value"], b - 0.45, b + 0.45, colors="black", linestyles="dashed",
                       label=None if drawn else "human ceiling (leave one annotator out)")
            drawn = True
    ax1.axhline(0.5, color="grey", linewidth=0.8)
    ax1.set_xticks(range(len(blocks)), list(blocks), rotation=20, ha="right")
    ax1.set_ylim(0, 1)
    ax1.set_ylabel(f"pairwise accuracy (ties: {ties}), 95% CI")
    ax1.legend(fontsize="small")
    for name in judges:
        res = report["results"][name]
        x = (res.get("length_bias") or {}).get("prefers_longer")
        y = (((res.get("pairwise") or {}).get("accuracy") or {}).get(ties) or {}).get("value")
        if x is not None and y is not None:
            ax2.scatter(x, y)
            ax2.annotate(name, (x, y), fontsize="small", xytext=(3, 3), textcoords="offset points")
    human_longer = (report.get("labels") or {}).get("prefers_longer")
    if human_longer is not None:
        ax2.axvline(human_longer, color="black", linestyle="dashed", label="humans")
        ax2.legend(fontsize="small")
    ax2.set_xlim(0, 1)
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("prefers the longer response")
    ax2.set_ylabel("accuracy")
    ax2.set_title("length bias")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def rank_summary_table(summary: Any) -> Table:
    """Per judge of a `judge rank` run: failed candidates, prompts it failed everywhere, top-1 agreement."""
    title = f"{summary.method}: {summary.prompts:,} prompts, {summary.candidates:,} candidates ranked"
    if summary.unranked:
        title += f" ({summary.unranked:,} with no score at all, ranked last)"
    if summary.gate_passed is not None:
        title += f"; {summary.gate_passed:,} pass the gate(s)"
    table = Table(title=title)
    for col in ["judge", "combined", "failed candidates", "failed on whole prompt", "its best = combined best"]:
        table.add_column(col, justify="left" if col == "judge" else "right")
    for st in summary.per_judge.values():
        agree = f"{st.top1_agree / summary.prompts:.1%}" if summary.prompts else "-"
        table.add_row(st.name, "yes" if st.name in summary.judges else "gate/no", _fmt(st.missing),
                      _fmt(st.failed_prompts), agree, style="red" if st.failed_prompts else None)
    return table


def best_of_n_summary_table(summary: Any) -> Table:
    """Acceptance, rejections by reason, mean best score and margin, and the best-of-N KL bound."""
    d = summary.as_dict()
    table = Table(title=f"best-of-N over {d['prompts']:,} prompts")
    table.add_column("", justify="left")
    table.add_column("value", justify="right")
    rate = d["acceptance_rate"]
    table.add_row("accepted prompts", f"{d['accepted_prompts']:,}" + (f" ({rate:.1%})" if rate is not None else ""))
    table.add_row("accepted rows", _fmt(d["accepted_rows"]))
    for reason, count in sorted(d["rejected"].items()):
        table.add_row(f"rejected: {reason}", _fmt(count), style="yellow")
    table.add_row("preference pairs", _fmt(d["pairs"]))
    table.add_row("mean best score", _fmt(d["mean_best_score"]))
    table.add_row("mean margin (best - runner-up)", _fmt(d["mean_margin"]))
    ns = ", ".join(f"N={n}: {c:,}" for n, c in d["n"].items())
    table.add_row("KL bound log N - (N-1)/N (nats)", _fmt(d["kl_bound"]) + (f"  [{ns}]" if ns else ""))
    return table
