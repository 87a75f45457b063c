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
@click.option("--distributed", is_flag=True, help="Run as a rank of `torchrun --nproc_per_node N -m judge score ...` (automatic under torchrun).")
def score(input_path: str, output: str, judge_specs: tuple[str, ...], store: str | None, on_bad_input: str,
          chunk_items: int, overwrite: bool, strict: bool, quiet: bool, max_requests: int | None = None,
          dry_run: bool = False, distributed: bool = False) -> None:
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
        from judge.distributed import launched_by_torchrun, score_file_distributed, under_torchrun, world

        run = None
        if distributed or launched_by_torchrun():
            if not under_torchrun():
                raise JudgeError("--distributed runs as one of torchrun's processes: "
                                 "torchrun --nproc_per_node N -m judge score IN -o OUT --judge ...")
            quiet, run = quiet or world()[0] != 0, score_file_distributed
        summary = _run_with_progress(config, judges, quiet, run)
        if summary is None:  # a rank other than 0: rank 0 writes the output and the summary
            return
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


def _run_with_progress(config: Any, judges: list[Any], quiet: bool, run: Any = None) -> Any:
    from judge.scoring import score_file

    run = run or score_file

    if quiet:
        return run(config, judges)
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

        summary = run(config, judges, progress=hook)
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
@main.command("rank")
@click.argument("input_path", metavar="SCORED", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Ranked JSONL: each record plus combined and ranking.")
@click.option("--method", default="zscore", show_default=True, type=click.Choice(["zscore", "minmax", "global-z", "borda", "rrf", "copeland", "bradley-terry", "lexicographic"]), help="How to combine the judges within each prompt.")
@click.option("--weights", metavar="NAME=W,...", help="Per-judge weights, e.g. rm=2,verify=1 (default 1; 0 leaves a judge out).")
@click.option("--judges", "judge_list", metavar="A,B,...", help="Judges to combine, in order (lexicographic order too); default all.")
@click.option("--gate", "gates", multiple=True, metavar="JUDGE[>=T]", help="Rank candidates failing JUDGE (score < T, default 0.5) below all others; repeatable.")
@click.option("--missing", type=click.Choice(["skip", "last"]), default="skip", show_default=True, help="A judge that failed on a candidate: leave it out, or rank the candidate last for it.")
@click.option("--rrf-k", type=float, default=60.0, show_default=True, help="RRF constant k in 1/(k + rank).")
@click.option("--bt-prior", type=float, default=0.1, show_default=True, help="Bradley-Terry L2 prior strength.")
@click.option("--chunk-prompts", type=int, default=4096, show_default=True, help="Prompts ranked and written per step.")
@click.option("--quiet", "-q", is_flag=True, help="No summary table.")
def rank_cmd(input_path: str, output: str, method: str, weights: str | None, judge_list: str | None, gates: tuple[str, ...],
             missing: str, rrf_k: float, bt_prior: float, chunk_prompts: int, quiet: bool) -> None:
    """Combine several judges' scores into one score and ranking per prompt.

    \b
    Example:
      judge rank scored.jsonl -o ranked.jsonl --method rrf
      judge rank scored.jsonl -o ranked.jsonl --method zscore --gate verify --weights rm=2,length=0.5
    Ties: gate, has a score, higher combined, more judges, lower index.
    """
    from judge.combine import CombineConfig, Gate, parse_weights
    from judge.ranking import RankConfig, rank_file

    judges = [j.strip() for j in judge_list.split(",") if j.strip()] if judge_list else None
    combine_config = CombineConfig(method=method, weights=parse_weights(weights), judges=judges,
                                   gates=[Gate.parse(g) for g in gates], missing=missing, rrf_k=rrf_k, bt_prior=bt_prior)
    summary = rank_file(RankConfig(input=input_path, output=output, combine=combine_config, chunk_prompts=chunk_prompts))
    if not quiet:
        from judge.report import rank_summary_table

        console = _stderr_console()
        console.print(rank_summary_table(summary))
        console.print(f"wrote {output}")


@main.command("best-of-n")
@click.argument("input_path", metavar="RANKED", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Accepted rows (TRL prompt/completion JSONL).")
@click.option("--k", type=int, default=1, show_default=True, help="Candidates kept per accepted prompt.")
@click.option("--min-score", "min_scores", multiple=True, metavar="X|JUDGE=X", help="Combined score >= X, or JUDGE's score >= X; repeatable.")
@click.option("--require", "requires", multiple=True, metavar="JUDGE[>=T]", help="Candidate must pass JUDGE (score >= T, default 0.5), e.g. --require verify.")
@click.option("--min-margin", type=float, default=None, help="Reject a prompt unless its best beats the next eligible candidate by this much.")
@click.option("--pairs", type=click.Path(dir_okay=False), help="Also write preference pairs (TRL prompt/chosen/rejected JSONL).")
@click.option("--pair-mode", type=click.Choice(["best-worst", "best-each", "all"]), default="best-worst", show_default=True, help="Which pairs to write.")
@click.option("--pair-margin", type=float, default=0.0, show_default=True, help="Least combined margin of a pair (pairs the rules separate need none).")
@click.option("--rejected", type=click.Path(dir_okay=False), help="Write rejected prompts (with reject_reason) here, e.g. for rationalization.")
@click.option("--quiet", "-q", is_flag=True, help="No summary table.")
def best_of_n_cmd(input_path: str, output: str, k: int, min_scores: tuple[str, ...], requires: tuple[str, ...],
                  min_margin: float | None, pairs: str | None, pair_mode: str, pair_margin: float, rejected: str | None,
                  quiet: bool) -> None:
    """Keep the best candidate(s) of each ranked prompt; optionally write preference pairs.

    \b
    Example:
      judge best-of-n ranked.jsonl -o accepted.jsonl --require verify --pairs pairs.jsonl --rejected rejected.jsonl
    """
    from judge.combine import Gate
    from judge.ranking import BestOfNConfig, best_of_n_file
    from judge.select import MinScore, SelectConfig

    select = SelectConfig(k=k, min_score=[MinScore.parse(m) for m in min_scores], require=[Gate.parse(r) for r in requires],
                          min_margin=min_margin, pair_mode=pair_mode, pair_margin=pair_margin)
    summary = best_of_n_file(BestOfNConfig(input=input_path, output=output, select=select, pairs=pairs, rejected=rejected))
    if not quiet:
        from judge.report import best_of_n_summary_table

        console = _stderr_console()
        console.print(best_of_n_summary_table(summary))
        console.print(f"wrote {output}" + (f", {pairs}" if pairs else "") + (f", {rejected}" if rejected else ""))


# --------------------------------------------------------------------------- agree / data (agreement issue)
@main.command("agree")
@click.argument("scored", type=click.Path(dir_okay=False))
@click.option("--judge", "judge_names", multiple=True, metavar="NAME", help="Judge to report (repeat; default all).")
@click.option("--by", metavar="FIELD", help="Per-slice tables by this record field, e.g. meta.source.")
@click.option("--ties", type=click.Choice(["drop", "half", "count"]), default="drop", show_default=True, help="Tie rule of the headline accuracy (all three go to the JSON).")
@click.option("--bootstrap", type=int, default=2000, show_default=True, help="Bootstrap resamples of prompts for 95% CIs (0: none).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap and CV folds.")
@click.option("--method", "methods", multiple=True, metavar="M", help="Also report a combined ranking (as judge rank --method M).")
@click.option("--weights", metavar="NAME=W,...", help="Weights for --method.")
@click.option("--fit-weights", is_flag=True, help="Fit judge weights on the labels (CV'd logistic regression).")
@click.option("--weights-out", type=click.Path(dir_okay=False), help="Write fitted weights here (judge rank --weights form).")
@click.option("--neutral", type=click.Choice(["positive", "negative", "drop"]), default="positive", show_default=True, help="Step label 0 counts as...")
@click.option("--step-threshold", type=float, default=0.5, show_default=True, help="Step/solution score below this = error.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write every number as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a PNG: accuracy with CIs per judge and slice, length bias.")
@click.option("--quiet", "-q", is_flag=True, help="No tables on stderr.")
def agree_cmd(scored: str, judge_names: tuple[str, ...], by: str | None, ties: str, bootstrap: int, seed: int,
              methods: tuple[str, ...], weights: str | None, fit_weights: bool, weights_out: str | None, neutral: str,
              step_threshold: float, json_out: str | None, plot: str | None, quiet: bool) -> None:
    """Compare judges with human labels: accuracy, kappa, correlations, CIs, biases.

    \b
    Example:
      judge data convert --from pandalm testset-v1.json -o pandalm.jsonl
      judge score pandalm.jsonl -o scored.jsonl --judge length
      judge agree scored.jsonl --ties drop --json agree.json --plot agree.png
    """
    import dataclasses

    from judge import agreement, io
    from judge.errors import InputError

    if bootstrap < 0:
        raise click.BadParameter("must be >= 0", param_hint="--bootstrap")
    cfg = agreement.AgreeRunConfig(scored, list(judge_names) or None, by, list(methods), weights, fit_weights,
                                   agreement.AgreeConfig(ties, bootstrap, seed, neutral, step_threshold))
    groups = agreement.labelled_groups(_numbered(scored), scored, by)
    if not groups:
        raise InputError(scored, None, "human", "no record has human labels; convert a labelled set with `judge data convert`")
    present = sorted({n for g in groups for n in g.scores})
    names = list(judge_names) or present
    for name in names:
        if name not in present:
            import difflib

            close = difflib.get_close_matches(name, present, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise JudgeError(f"--judge {name!r}{hint}: the scores hold {', '.join(present) or 'no judge'}")
    base = list(names)
    for method in methods:
        names.append(agreement.add_ensemble(groups, base, method, _weights(weights)))
    report = agreement.agree(groups, names, cfg.stats, by=by is not None, fit=fit_weights)
    report["input"] = scored
    if not quiet:
        from judge.report import agreement_tables

        console = _stderr_console()
        if not console.is_terminal:
            console.width = max(console.width, 160)  # a log file gets the whole table, not a wrapped one
        for table in agreement_tables(report):
            console.print(table)
    if json_out:
        io.write_json(json_out, report)
        io.write_json(json_out + ".config.json", {"command": "agree", "config": dataclasses.asdict(cfg)})
    if plot:
        from judge.report import agreement_figure

        agreement_figure(report, plot)
    if weights_out and report.get("fit"):
        Path(weights_out).write_text(report["fit"]["spec"] + "\n", encoding="utf-8")
    for path in (json_out, plot, weights_out if report.get("fit") else None):
        if path and not quiet:
            _stderr_console().print(f"wrote {path}")


def _numbered(path: str) -> Any:
    """(line, record) of a JSONL file; a bad line raises InputError with file:line."""
    from judge import io
    from judge.errors import InputError

    if not Path(path).exists():
        raise InputError(path, None, None, "file not found")
    for line, rec, _ in io._records(Path(path)):
        if isinstance(rec, InputError):
            raise rec
        yield line, rec


def _weights(text: str | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in (text or "").split(","):
        if part.strip():
            name, sep, value = part.partition("=")
            try:
                out[name.strip()] = float(value)
            except ValueError:
                raise click.BadParameter(f"{part!r} is not NAME=NUMBER", param_hint="--weights") from None
            if not sep:
                raise click.BadParameter(f"{part!r} is not NAME=NUMBER", param_hint="--weights")
    return out


@main.group("data")
def data_group() -> None:
    """Public labelled data sets in our candidates format."""


@data_group.command("convert")
@click.argument("input_path", metavar="IN", type=click.Path(dir_okay=False))
@click.option("--from", "fmt", required=True, type=click.Choice(["gsm8k", "hh-rlhf", "llmbar", "math500", "mr-gsm8k", "pandalm", "prm800k"]), help="Format of IN.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Candidates JSONL to write.")
@click.option("--gpt", type=click.Path(dir_okay=False), help="pandalm: join gpt-3.5-turbo-testset-v1.json as meta.gpt35.")
@click.option("--order", type=click.Choice(["hashed", "chosen-first"]), default=None, help="hh-rlhf: chosen first or second by a fixed coin (default hashed), or always first.")
def data_convert(input_path: str, fmt: str, output: str, gpt: str | None, order: str | None) -> None:
    """Convert a public data set (hh-rlhf, PandaLM, LLMBar, PRM800K, MR-GSM8K, GSM8K, MATH-500).

    \b
    Example:
      judge data convert --from pandalm testset-v1.json --gpt gpt-3.5-turbo-testset-v1.json -o pandalm.jsonl
      judge score pandalm.jsonl -o scored.jsonl --judge length --judge gpt35=field:meta.gpt35
    """
    from judge import io
    from judge.datasets import convert

    if gpt and fmt != "pandalm":
        raise click.BadParameter("only --from pandalm takes --gpt", param_hint="--gpt")
    if order and fmt != "hh-rlhf":
        raise click.BadParameter("only --from hh-rlhf takes --order", param_hint="--order")
    options: dict[str, Any] = {"gpt": gpt} if gpt else {}
    if order:
        options["order"] = order
    n = 0
    tmp = Path(output + ".tmp")  # a failed conversion leaves no half-written OUT
    try:
        with io.JsonlWriter(tmp) as out:
            for rec in convert(fmt, input_path, **options):
                out.write(rec)
                n += 1
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(output)
    io.write_json(output + ".config.json", {"command": "data convert", "config": {"input": input_path, "from": fmt, "output": output, "gpt": gpt, "order": order}})
    _stderr_console().print(f"wrote {n:,} records to {output}")



# --------------------------------------------------------------------------- serve (endpoint issue)
@main.command()
@click.option("--judge", "judge_spec", required=True, metavar="KIND:TARGET[,k=v]", help="The judge to host, e.g. rm:./my-rm.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface (0.0.0.0 exposes it to the network).")
@click.option("--port", type=int, default=8000, show_default=True, help="Port; 0 picks a free one (printed).")
@click.option("--api-key-env", default=None, metavar="VAR", help="Require 'Authorization: Bearer $VAR' (401 otherwise).")
@click.option("--max-batch-items", type=int, default=64, show_default=True, help="Items per forward pass; 1 turns batching off.")
@click.option("--batch-wait-ms", type=float, default=5.0, show_default=True, help="How long a request waits to share a batch.")
@click.option("--max-batch-tokens", type=int, default=32768, show_default=True, help="Rough token budget per batch.")
@click.option("--max-body-bytes", type=int, default=2_000_000, show_default=True, help="Larger bodies get 413.")
@click.option("--model-name", default=None, help="Model id in /v1/models and responses (default: the judge's target).")
def serve(judge_spec: str, host: str, port: int, api_key_env: str | None, max_batch_items: int,
          batch_wait_ms: float, max_batch_tokens: int, max_body_bytes: int, model_name: str | None) -> None:
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
                         max_batch_items=max_batch_items, batch_wait_ms=batch_wait_ms, max_batch_tokens=max_batch_tokens,
                         max_body_bytes=max_body_bytes, model_name=model_name)
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
@main.command("sft")
@click.option("--model", help="Base model folder (AutoModelForCausalLM + AutoTokenizer).")
@click.option("--data", type=click.Path(dir_okay=False), help="Accepted rows (prompt/completion JSONL) from judge best-of-n.")
@click.option("-o", "--output", type=click.Path(file_okay=False), help="Output folder: model, tokenizer, metrics.jsonl, sft_config.json.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML of SFTConfig fields; flags given here override it.")
@click.option("--max-length", type=int, default=1024, show_default=True, help="Tokens per example; longer rows are truncated (counted).")
@click.option("--packing/--no-packing", default=False, show_default=True, help="Pack examples into max-length rows (attention stays within each example).")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Examples per optimizer step over all processes.")
@click.option("--batch-tokens", type=int, default=0, show_default=True, help="If > 0: tokens per optimizer step instead of --batch-size.")
@click.option("--micro-batch-size", type=int, default=8, show_default=True, help="Examples (packed rows) per forward pass; accumulation does the rest.")
@click.option("--epochs", type=int, default=1, show_default=True, help="Passes over the data.")
@click.option("--max-steps", type=int, default=0, show_default=True, help="If > 0: stop after N optimizer steps.")
@click.option("--lr", type=float, default=2e-5, show_default=True, help="Peak learning rate (AdamW).")
@click.option("--weight-decay", type=float, default=0.0, show_default=True, help="AdamW weight decay.")
@click.option("--warmup-steps", type=int, default=0, show_default=True, help="Linear warmup steps.")
@click.option("--schedule", type=click.Choice(["cosine", "constant"]), default="cosine", show_default=True, help="After warmup.")
@click.option("--max-grad-norm", type=float, default=1.0, show_default=True, help="Gradient clipping (0: off).")
@click.option("--seed", type=int, default=0, show_default=True, help="Data order, held-out slice, dropout.")
@click.option("--eval-rows", type=int, default=0, show_default=True, help="Rows held out for eval loss.")
@click.option("--eval-every", type=int, default=0, show_default=True, help="Eval loss every N steps (and at the end).")
@click.option("--checkpoint-every", type=int, default=0, show_default=True, help="Checkpoint every N steps (for --resume).")
@click.option("--keep-checkpoint", is_flag=True, help="Keep OUT/checkpoint after the run.")
@click.option("--resume", is_flag=True, help="Continue exactly from OUT/checkpoint.")
@click.option("--overwrite", is_flag=True, help="Start afresh in an OUT that holds a run.")
@click.option("--gradient-checkpointing", is_flag=True, help="Recompute activations: less memory, more compute.")
@click.option("--dtype", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True, help="auto: bf16 autocast on GPU, fp32 on CPU.")
@click.option("--lora-r", type=int, default=0, show_default=True, help="If > 0: LoRA rank (needs star-judge[lora]); merged into OUT.")
@click.option("--lora-alpha", type=int, default=16, show_default=True, help="LoRA alpha.")
@click.option("--lora-dropout", type=float, default=0.0, show_default=True, help="LoRA dropout.")
@click.option("--lora-targets", default="all-linear", show_default=True, help="'all-linear' or module names, e.g. q_proj,v_proj.")
@click.option("--threads", type=int, default=0, show_default=True, help="CPU threads per process (0: cores / processes).")
@click.option("--log-every", type=int, default=1, show_default=True, help="metrics.jsonl line every N steps.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def sft_cmd(ctx: click.Context, config_path: str | None, quiet: bool, **flags: Any) -> None:
    """Fine-tune a causal LM on accepted rows, with the loss on completion tokens only.

    \b
    Example:
      judge sft --model ./base --data accepted.jsonl -o ./sft-model --packing --lr 1e-5 --epochs 2
    Multi-GPU (or CPU processes, gloo):
      torchrun --nproc_per_node 2 -m judge sft --model ./base --data accepted.jsonl -o ./sft-model
    Kill it and rerun with --resume (with --checkpoint-every N) to continue exactly where it stopped.
    """
    from click.core import ParameterSource

    from judge.sft import SFTConfig, load_config, train

    given = {k: v for k, v in flags.items() if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
    config = load_config(config_path, **given) if config_path else SFTConfig(**flags)
    for name in ("model", "data", "output"):
        if not getattr(config, name):
            raise click.UsageError(f"--{name} is required (as a flag or in --config)")
    if quiet or int(__import__("os").environ.get("RANK", "0")) != 0:
        train(config)
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = _stderr_console()
    columns = [TextColumn("[bold]sft"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
               TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[tps]:,.0f} tok/s"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("sft", total=None, loss=float("nan"), tps=0.0)

        def show(row: dict[str, Any]) -> None:
            if row.get("event") == "start":
                bar.update(task, total=row["total_steps"], completed=row["step"])
                console.print(f"{row['train_rows']} training rows, {row['eval_rows']} held out; "
                              f"{row['truncated']} truncated, {row['dropped']} dropped; batch: {row['effective_batch']}")
                return
            bar.update(task, completed=row["step"], loss=row["loss"], tps=row["tokens_per_s"])
            if "eval_loss" in row:
                console.print(f"step {row['step']}: eval loss {row['eval_loss']:.4f}")

        out = train(config, progress=show)
    console.print(f"wrote {out} (load it with AutoModelForCausalLM.from_pretrained)")


if __name__ == "__main__":
    main()
