"""The `judge` command line: a thin click dispatcher over the library.

The only place that parses argv or prints. Data goes to files or stdout; progress and
tables go to stderr (rich). A JudgeError becomes one line and its exit code (2 for bad
input or usage); --debug shows the traceback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from judge.errors import JudgeError


class JudgeGroup(click.Group):
    """Turns JudgeErrors into one readable line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except JudgeError as err:
            if ctx.params.get("debug"):
                raise
            click.echo(f"judge: error: {err}", err=True)
            sys.exit(err.exit_code)
        except OSError as err:  # a missing folder, a full disk, no permission: the user can act on it
            if ctx.params.get("debug"):
                raise
            click.echo(f"judge: error: {err}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("judge: interrupted; rerun the same command to resume where it stopped", err=True)
            sys.exit(130)


@click.group(cls=JudgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
@click.version_option(package_name="star-judge")
def main(debug: bool) -> None:
    """Judge, rank and select candidate rationales for rejection sampling / STaR / best-of-N.

    \b
    Quick start:
      judge score examples/math_candidates.jsonl -o scored.jsonl --judge verify:gsm8k
      judge judges                  # list judge kinds
    """


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _count_records(path: str) -> int | None:
    """Cheap total for the progress bar: newline count of a plain JSONL file."""
    p = Path(path)
    if p.suffix not in {".jsonl", ".json", ".ndjson"} or not p.exists():
        return None
    n = 0
    with open(p, "rb") as fh:
        while block := fh.read(1 << 20):
            n += block.count(b"\n")
    return n


# --------------------------------------------------------------------------- score
@main.command()
@click.argument("input_path", metavar="IN", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Scored JSONL output (written as it goes).")
@click.option("--judge", "judge_specs", multiple=True, required=True, metavar="[NAME=]KIND:TARGET[@URL][,k=v]", help="A judge; repeat for several.")
@click.option("--store", type=click.Path(dir_okay=False), help="SQLite score store (default OUT.store.sqlite); share one across runs.")
@click.option("--on-bad-input", type=click.Choice(["error", "skip"]), default="error", show_default=True, help="Stop at a bad record, or record it in OUT.rejected.jsonl and go on.")
@click.option("--chunk-items", type=int, default=512, show_default=True, help="Candidates scored and written per step.")
@click.option("--overwrite", is_flag=True, help="Start afresh instead of resuming an existing OUT.")
@click.option("--strict", is_flag=True, help="Exit 1 when any candidate failed to score.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary table.")
@click.option("--max-requests", type=int, default=None, help="HTTP judges: refuse to start past N requests; stop (resumable) at N.")
@click.option("--dry-run", is_flag=True, help="Print how many requests and tokens HTTP judges would send, and exit.")
def score(input_path: str, output: str, judge_specs: tuple[str, ...], store: str | None, on_bad_input: str,
          chunk_items: int, overwrite: bool, strict: bool, quiet: bool, max_requests: int | None = None,
          dry_run: bool = False) -> None:
    """Score every candidate in IN with one or more judges.

    \b
    Example:
      judge score examples/math_candidates.jsonl -o scored.jsonl --judge verify:gsm8k
    Kill it at any moment and rerun the same command: it resumes where it stopped.
    """
    from judge.registry import load_judge
    from judge.scoring import ScoreConfig

    config = ScoreConfig(input=input_path, output=output, judges=list(judge_specs), store=store,
                         on_bad_input=on_bad_input, chunk_items=chunk_items, overwrite=overwrite)
    judges = [load_judge(s) for s in judge_specs]
    try:
        if (dry_run or max_requests is not None) and _request_plan(config, judges, max_requests, dry_run):
            return
        summary = _run_with_progress(config, judges, quiet)
    finally:
        for j in judges:
            getattr(j, "close", lambda: None)()
    if not quiet:
        from judge.report import score_summary_table

        console = _stderr_console()
        console.print(score_summary_table(summary))
        if summary.rejected:
            console.print(f"[yellow]{summary.rejected} bad record(s) written to {config.rejected_path()}[/yellow]")
        console.print(f"wrote {output}")
    if strict and summary.failed:
        sys.exit(1)


def _run_with_progress(config: Any, judges: list[Any], quiet: bool) -> Any:
    from judge.scoring import score_file

    if quiet:
        return score_file(config, judges)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    total = _count_records(config.input)
    columns = [
        TextColumn("[bold]scoring"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} records" if total else "{task.completed:,.0f} records"),
        TextColumn("{task.fields[items]:,} items, {task.fields[rate]:,.1f} items/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    import time

    start = time.perf_counter()
    with Progress(*columns, console=_stderr_console(), transient=False) as bar:
        task = bar.add_task("score", total=total, items=0, rate=0.0)
        state = {"items": 0}

        def hook(records: int, items: int) -> None:
            state["items"] += items
            rate = state["items"] / max(time.perf_counter() - start, 1e-9)
            bar.update(task, advance=records, items=state["items"], rate=rate)

        summary = score_file(config, judges, progress=hook)
        if summary.resumed_from:
            bar.update(task, completed=summary.resumed_from + summary.groups + summary.rejected)
    if summary.resumed_from:
        _stderr_console().print(f"resumed after {summary.resumed_from:,} records already written")
    return summary


# --------------------------------------------------------------------------- judges
@main.command("judges")
def list_judges() -> None:
    """List the judge kinds and how to call them."""
    from rich.markup import escape
    from rich.table import Table

    from judge.registry import describe_kinds

    table = Table(title=escape("judge kinds (use: --judge [NAME=]KIND:TARGET[@URL][,key=value])"))
    table.add_column("kind", style="bold")
    table.add_column("what it is")
    table.add_column("implemented by", style="dim")
    for kind, path, desc in describe_kinds():
        table.add_row(kind, escape(desc), path)
    _stderr_console().print(table)
    for kind, _, _ in describe_kinds():
        click.echo(kind)


# --------------------------------------------------------------------------- rank / best-of-n (combine issue)

# --------------------------------------------------------------------------- agree / data (agreement issue)

# --------------------------------------------------------------------------- serve (endpoint issue)
@main.command()
@click.option("--judge", "judge_spec", required=True, metavar="KIND:TARGET[,k=v]", help="The judge to host, e.g. rm:./my-rm.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface (0.0.0.0 exposes it to the network).")
@click.option("--port", type=int, default=8000, show_default=True, help="Port; 0 picks a free one (printed).")
@click.option("--api-key-env", default=None, metavar="VAR", help="Require 'Authorization: Bearer $VAR' (401 otherwise).")
@click.option("--max-batch-items", type=int, default=64, show_default=True, help="Items per forward pass; 1 turns batching off.")
@click.option("--batch-wait-ms", type=float, default=5.0, show_default=True, help="How long a request waits to share a batch.")
@click.option("--max-body-bytes", type=int, default=2_000_000, show_default=True, help="Larger bodies get 413.")
def serve(judge_spec: str, host: str, port: int, api_key_env: str | None, max_batch_items: int,
          batch_wait_ms: float, max_body_bytes: int) -> None:
    """Serve a judge over HTTP: OpenAI-compatible /v1/chat/completions (Nemotron reward shapes),
    OpenRLHF /get_reward, /v1/models and /health, with dynamic batching.

    \b
    Example:
      judge serve --judge rm:./my-rm --port 8000 &
      judge score cands.jsonl -o scored.jsonl --judge nemotron:my-rm@http://127.0.0.1:8000/v1
    """
    from judge.registry import load_judge
    from judge.serve import ServeConfig, bind, create_app, serve_forever

    config = ServeConfig(judge=judge_spec, host=host, port=port, api_key_env=api_key_env,
                         max_batch_items=max_batch_items, batch_wait_ms=batch_wait_ms, max_body_bytes=max_body_bytes)
    judge = load_judge(judge_spec)
    try:
        app = create_app(judge, config)
        sock = bind(host, port)
        auth = f", key from ${api_key_env}" if api_key_env else ""
        click.echo(f"judge serve: {judge.name} on http://{host}:{sock.getsockname()[1]}{auth} (Ctrl-C stops)", err=True)
        serve_forever(app, sock)
    finally:
        getattr(judge, "close", lambda: None)()


def _request_plan(config: Any, judges: list[Any], max_requests: int | None, dry_run: bool) -> bool:
    """Print what HTTP judges would send (--dry-run / --max-requests); True means stop here."""
    from judge.errors import BudgetError
    from judge.judges.endpoint import estimate_run

    plan = estimate_run(config.input, judges, config.store_path())
    total = sum(p.requests for p in plan)
    for p in plan:
        click.echo(f"{p.judge}: {p.requests:,} requests, ~{p.tokens:,} prompt tokens for {p.items:,} items "
                   f"not in the store -> {p.url}", err=True)
    if not plan:
        click.echo("no HTTP judges: nothing would be sent", err=True)
    if dry_run:
        return True
    if max_requests is not None and total > max_requests:
        raise BudgetError(f"this run would send {total:,} requests, more than --max-requests {max_requests:,}; "
                          "raise it, or score part of the input")
    for j in judges:
        if hasattr(j, "max_requests"):
            j.max_requests = max_requests
    return False



# --------------------------------------------------------------------------- sft (training issue)


if __name__ == "__main__":
    main()
