"""The root typer app: global options, and the command groups it is built with.

Building typer's command tree for every command costs about 30 ms of each invocation, so a
command of one group (`stigmergy task import ...`) is run by an app holding only that group:
an import of tasks is on the critical path of every agent waiting for them.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Annotated

import typer

from stigmergy_cli import __version__, console
from stigmergy_cli.cli.invocation import GlobalOptions

GROUPS = ("task", "agent", "lock", "signal")


def build(group: str | None = None) -> typer.Typer:
    """The whole app, or with `group` the app holding only that command group."""
    app = typer.Typer(
        name="stigmergy",
        help="Many coding agents on one git repository, coordinated through .stigmergy/.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    for name in (group,) if group else GROUPS:
        app.add_typer(importlib.import_module(f"stigmergy_cli.cli.{name}").app, name=name)
    if group is None:
        from stigmergy_cli.cli import admin

        admin.register(app)
    return app


def group_of(args: Sequence[str]) -> str | None:
    """The command group `args` name after the global options, if they name one."""
    rest = list(args)
    while rest and rest[0].startswith("-"):
        option = rest.pop(0)
        if option == "--root" and rest:
            rest.pop(0)
    return rest[0] if rest and rest[0] in GROUPS else None


def _version(value: bool) -> None:
    if value:
        console.say(f"stigmergy {__version__}")
        raise typer.Exit


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
