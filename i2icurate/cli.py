"""The `i2icurate` command line: thin click wrappers around the functions in i2icurate.commands.

Flags are generated from the option tables in i2icurate.config, so the CLI and the Python API share names.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console

from i2icurate import __version__
from i2icurate.config import PRESETS, TABLES, Option
from i2icurate.data.demo import DATASETS
from i2icurate.errors import UserError
from i2icurate.markup import bold, escape

EXTRA_FLAGS = {"k": "-k", "from_run": "--from"}
METAVARS = {"k": "K|auto", "k_range": "MIN:MAX"}


def _click_type(option: Option) -> Any:
    if option.type not in (int, float, str, bool):  # a parsing function (-k 10 or -k auto): it checks the value
        return click.types.FuncParamType(option.type)
    if option.choices:
        return click.Choice(option.choices)
    if option.type in (int, float) and (option.min is not None or option.max is not None):
        rng = click.IntRange if option.type is int else click.FloatRange
        return rng(option.min, option.max)
    return option.type


def table_options(options: list[Option]) -> Callable[[Callable], Callable]:
    """Decorate a click command with one flag per option (default None = 'not given', so presets can apply)."""

    def decorate(func: Callable) -> Callable:
        for option in reversed(options):
            names = ["--" + option.name.replace("_", "-")]
            if option.name in EXTRA_FLAGS:
                names.insert(0, EXTRA_FLAGS[option.name])
            func = click.option(
                *names, option.name, type=_click_type(option), default=None, metavar=METAVARS.get(option.name),
                help=f"{option.help} [default: {option.default}]",
            )(func)
        return func

    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
@click.version_option(__version__, prog_name="i2icurate")
def cli() -> None:
    """Discover pseudo-domains in an unlabeled image folder, review them, and translate between them."""


@cli.command("discover")
@click.argument("source", required=False, type=click.Path(file_okay=True, dir_okay=True))
@click.option("--preset", type=click.Choice(sorted(PRESETS["discover"])), default=None,
              help="Named option set: 'tiny' (small networks at 32 px, a CPU demo in minutes) or 'full' (reference).")
@click.option("--resume", type=click.Path(), default=None, help="Continue an interrupted run folder exactly.")
@table_options(list(TABLES["discover"].values()))
def discover_cmd(source: str | None, preset: str | None, resume: str | None, **options: Any) -> None:
    """Train TUNIT on the images under SOURCE and assign each one a pseudo-domain, confidence and style code."""
    from i2icurate.commands.discover import discover

    discover(source, preset=preset, resume=resume, console=Console(), **options)


@cli.command("export")
@click.argument("run", required=False, type=click.Path())
@click.option("--project", default="runs", show_default=True, help="Where to find the newest run if RUN is omitted.")
@click.option("--eval-labels", default=None, help="'folders' or a path,label CSV: score the clusters against labels.")
def export_cmd(run: str | None, project: str, eval_labels: str | None) -> None:
    """Write assignments, embeddings, faiss index, UMAP and pictures of a discover RUN (the newest if omitted)."""
    from i2icurate.commands.export import export

    export(run, project=project, eval_labels=eval_labels, console=Console())


def _translate_options() -> list[Option]:
    from i2icurate.commands.translate import model_options

    merged = dict(TABLES["translate"])
    per_model = model_options()
    owners: dict[str, list[str]] = {}
    for name, opts in per_model.items():
        for key in opts:
            owners.setdefault(key, []).append(name)
    for opts in per_model.values():
        for key, opt in opts.items():
            if key not in merged:  # an option several models share is described once, naming all of them
                merged[key] = Option(opt.name, opt.default, f"({', '.join(owners[key])}) {opt.help}", opt.type,
                                     opt.min, opt.max, opt.choices)
    return list(merged.values())


def _translator_names() -> list[str]:
    from i2icurate.translators.base import available

    return available()


@cli.command("translate")
@click.option("--from", "from_", default=None, help="Source cluster id (domain A), e.g. 3 or cluster_3.")
@click.option("--to", default=None, help="Target cluster id (domain B).")
@click.option("--run", "--discover-run", "run", default=None, type=click.Path(),
              help="Discover run folder (default: the newest). Under torchrun spell it --discover-run: torchrun "
              "reads --run as an abbreviation of its own --run-path.")
@click.option("--model", type=click.Choice(_translator_names()), default="tunit", show_default=True,
              help="tunit: instant, the discover run's generator; ugatit / srunit: trained on the two clusters.")
@click.option("--input", "input_dir", default=None, type=click.Path(), help="Translate this folder instead of A.")
@click.option("--out", default=None, type=click.Path(), help="Output folder (default: <run>/outputs).")
@click.option("--eval", "evaluate", is_flag=True, help="Print FID/KID of the outputs against domain B.")
@click.option("--preset", default=None, help="Model preset: 'tiny' (CPU-sized) or 'full' (the paper's).")
@click.option("--resume", type=click.Path(), default=None, help="Continue an interrupted translate run.")
@table_options(_translate_options())
def translate_cmd(**kwargs: Any) -> None:
    """Translate the images of one cluster (or --input) into the style of another cluster."""
    from i2icurate.commands.translate import translate

    translate(console=Console(), **kwargs)


@cli.command("demo")
@click.argument("out", default="demo_data", type=click.Path())
@click.option("--dataset", type=click.Choice(DATASETS), default="animal-mnist", show_default=True)
@click.option("--per-class", type=click.IntRange(1), default=100, show_default=True, help="Images per class.")
def demo_cmd(out: str, dataset: str, per_class: int) -> None:
    """Write the built-in demo images (real, from registry packages) as class-named folders of PNGs."""
    from i2icurate.commands.demo import demo

    folder = demo(out, dataset, per_class)
    Console().print(f"wrote {dataset} demo images to {bold(folder)}")


@cli.command("review")
@click.argument("run", required=False, type=click.Path())
@click.option("--project", default="runs", show_default=True, help="Where to find the newest run if RUN is omitted.")
@click.option("--port", type=click.IntRange(1, 65535), default=5151, show_default=True, help="Port of the App.")
@click.option("--address", default="127.0.0.1", show_default=True, help="Address the App listens on.")
@click.option("--no-launch", is_flag=True, help="Only build the FiftyOne dataset; do not start the App.")
@click.option("--remote", is_flag=True, help="Remote session: serve the App for a browser on another machine.")
def review_cmd(run: str | None, project: str, port: int, address: str, no_launch: bool, remote: bool) -> None:
    """Load a discover RUN (the newest if omitted) into FiftyOne and open the App to review and relabel clusters."""
    from i2icurate.commands.review import review

    review(run, project=project, port=port, address=address, launch=not no_launch, remote=remote, console=Console())


@cli.command("sync")
@click.argument("run", required=False, type=click.Path())
@click.option("--project", default="runs", show_default=True, help="Where to find the newest run if RUN is omitted.")
def sync_cmd(run: str | None, project: str) -> None:
    """Append the labels set in the FiftyOne App for RUN (the newest if omitted) to its labels.csv.

    Tags `cluster:N`, `exclude`, `new_cluster` or the `human_label` field (Assign ... operator) count; only new or
    changed labels are appended. Removing a tag after a sync does not revert the label: relabel the sample instead.
    """
    from i2icurate.commands.sync import sync

    sync(run, project=project, console=Console())


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one red line and exit code 2; Ctrl-C exits with 130 after saving."""
    from i2icurate.engines.loop import Interrupted

    err = Console(stderr=True)
    try:
        cli.main(args=argv, prog_name="i2icurate", standalone_mode=False)
    except click.exceptions.Abort:
        err.print("[yellow]aborted[/]")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UserError as exc:
        err.print(f"[bold red]error:[/] {escape(exc)}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Interrupted as exc:
        err.print(f"[yellow]{escape(exc)}[/]", highlight=False, soft_wrap=True)
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        sys.exit(130)
