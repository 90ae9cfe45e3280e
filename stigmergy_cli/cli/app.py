"""The root typer app: global options and the command groups."""

from __future__ import annotations

from typing import Annotated

import typer

from stigmergy_cli import __version__, console
from stigmergy_cli.cli import admin, agent, lock, signal, task
from stigmergy_cli.cli._common import GlobalOptions

app = typer.Typer(
    name="stigmergy",
    help="Many coding agents on one git repository, coordinated through .stigmergy/.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(task.app, name="task")
app.add_typer(agent.app, name="agent")
app.add_typer(lock.app, name="lock")
app.add_typer(signal.app, name="signal")
admin.register(app)


def _version(value: bool) -> None:
    if value:
        console.say(f"stigmergy {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    ctx: typer.Context,
    root: Annotated[
        str | None,
        typer.Option(
            "--root",
            metavar="PATH",
            help="Repository root to use instead of discovering it (also STIGMERGY_ROOT).",
            show_default=False,
        ),
    ] = None,
    version: Annotated[  # noqa: ARG001 - acted on by its eager callback
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Many coding agents on one git repository, coordinated through .stigmergy/."""
    ctx.obj = GlobalOptions(root=root)
