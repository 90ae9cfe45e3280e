"""The `stigmergy` command: the root app, global options and the error boundary."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from typing import Annotated

import typer

from stigmergy_cli import __version__, console
from stigmergy_cli.cli import admin, task
from stigmergy_cli.cli._common import GlobalOptions
from stigmergy_cli.errors import EXIT_INTERRUPTED, EXIT_REFUSED, EXIT_UNEXPECTED, StigmergyError

app = typer.Typer(
    name="stigmergy",
    help="Many coding agents on one git repository, coordinated through .stigmergy/.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(task.app, name="task")
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
            help="Repository root to use instead of discovering it (also STIGMERGY_ROOT).",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Many coding agents on one git repository, coordinated through .stigmergy/."""
    ctx.obj = GlobalOptions(root=root)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; every failure becomes one line on stderr and an exit code."""
    command = typer.main.get_command(app)
    try:
        result = command.main(
            args=list(argv) if argv is not None else None,
            prog_name="stigmergy",
            standalone_mode=False,
        )
    except StigmergyError as exc:
        console.error(str(exc))
        return exc.exit_code
    except typer.Abort:
        console.error("aborted")
        return EXIT_REFUSED
    except typer.TyperException as exc:  # typer's usage errors: unknown option, bad value
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        console.error(exc.format_message() + hint)
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `stigmergy task list | head`
        sys.stderr.close()
        return EXIT_REFUSED
    except Exception as exc:
        console.error(f"unexpected {type(exc).__name__}: {exc} (please report this; details follow)")
        traceback.print_exc(file=sys.stderr)
        return EXIT_UNEXPECTED
    return result if isinstance(result, int) else 0
