"""The whole app, for tools that look for one in a module (`typer stigmergy_cli.cli.app utils
docs` writes docs/cli.md from it). The command itself builds only what it runs (root.py)."""

from stigmergy_cli.cli.root import build

app = build()
