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
