"""The `stigmergy` command's entry point and error boundary.

The typer app is imported only for what `cli/fastpath.py` does not run itself
(`stigmergy --version`, and `task import` as programs give it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from stigmergy_cli import console
from stigmergy_cli.errors import EXIT_INTERRUPTED, EXIT_REFUSED, EXIT_UNEXPECTED, StigmergyError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; every failure becomes one line on stderr and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    from stigmergy_cli.cli import fastpath

    quick = fastpath.command(args)
    try:
        if quick is not None:
            quick()
            return 0
        return _run_typer(args)
    except StigmergyError as exc:
        console.error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `stigmergy task list | head`: the reader left; so do we, quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_REFUSED
    except Exception as exc:
        import traceback

        console.error(
            f"unexpected {type(exc).__name__}: {exc} (please report this; details follow)"
        )
        traceback.print_exc(file=sys.stderr)
        return EXIT_UNEXPECTED


def _run_typer(args: list[str]) -> int:
    import typer

    from stigmergy_cli.cli import root

    command = typer.main.get_command(root.build(root.group_of(args)))
    try:
        result = command.main(args=args, prog_name="stigmergy", standalone_mode=False)
    except typer.Abort:
        console.error("aborted")
        return EXIT_REFUSED
    except typer.TyperException as exc:  # typer's usage errors: unknown option, bad value
        message = exc.format_message()
        if message:  # empty when the help was shown for a bare group like `stigmergy task`
            ctx = getattr(exc, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            console.error(message + hint)
        return int(getattr(exc, "exit_code", 2))
    return result if isinstance(result, int) else 0
