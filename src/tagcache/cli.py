"""The ``tagcache`` command: a thin layer over the library (parse, build, run, report)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tagcache.errors import TagcacheError
from tagcache.experiment import plan_size, run_scenario, scenario_trace
from tagcache.report import print_report, write_json
from tagcache.scenario import load_scenario

err = Console(stderr=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="tagcache")
def app() -> None:
    """tagcache: arm64 MTE tag storage reused as a cleancache, modelled end to end."""


@app.command()
@click.option("--config", "-c", "config", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="FILE.toml",
              help="Scenario file (every key documented in examples/scenario.toml).  "
                   "[default: the embedded scenario: 4 GiB machine, tagged 1%, 10%, 30%]")
@click.option("--json", "json_path", default=None, metavar="PATH",
              help="Also write the results as JSON to PATH; '-' writes JSON alone to "
                   "standard output.  [default: no JSON]")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Check the invariants of DESIGN.md section 3 at every event and walk all "
                   "state at the end of each run.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on standard error.  [default: when stderr is a terminal]")
def run(config: Path | None, json_path: str | None, check: bool, progress: bool | None) -> None:
    """Run a scenario: every design at every tagged share, then one comparison table."""
    scn = load_scenario(config)
    if json_path not in (None, "-"):
        parent = Path(json_path).parent
        if not parent.is_dir():
            raise TagcacheError(f"--json {json_path}: directory {parent} does not exist")
    traces = {s: scenario_trace(scn, s) for s in scn.shares}
    total = plan_size(scn, traces)
    if progress is None:
        progress = sys.stderr.isatty()
    if progress:
        with Progress(TextColumn("[bold]replaying"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("events"), TimeElapsedColumn(), console=err,
                      transient=True) as bar:
            task = bar.add_task("replay", total=total)
            exp = run_scenario(scn, check=check, traces=traces,
                               progress=lambda n: bar.advance(task, n))
    else:
        exp = run_scenario(scn, check=check, traces=traces)
    if json_path != "-":
        print_report(exp)
    if json_path is not None:
        write_json(exp.to_json(), json_path)


def main(argv: list[str] | None = None) -> int:
    """Entry point: a user error becomes one line on stderr and exit status 2."""
    try:
        app.main(args=argv, prog_name="tagcache", standalone_mode=False)
    except TagcacheError as e:
        print(f"tagcache: error: {e}", file=sys.stderr)
        return 2
    except click.UsageError as e:
        where = f"{e.ctx.command_path}: " if e.ctx else ""
        print(f"tagcache: error: {where}{e.format_message()}", file=sys.stderr)
        return 2
    except click.ClickException as e:
        print(f"tagcache: error: {e.format_message()}", file=sys.stderr)
        return 2
    except click.exceptions.Abort:
        print("tagcache: interrupted", file=sys.stderr)
        return 130
    except click.exceptions.Exit as e:
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
