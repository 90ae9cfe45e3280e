"""`stigmergy task import`, without typer: `cli/fastpath.py` runs it directly.

An import is on the critical path of every idle agent waiting for its tasks, so this module
imports only what the import needs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from stigmergy_cli import console, tasks, yamlio
from stigmergy_cli.cli.invocation import now, open_env, whoami
from stigmergy_cli.errors import InvalidInput
from stigmergy_cli.tasks import Task

MAX_IMPORT_BYTES = 64 * 1024 * 1024


def run(root: str | None, source: str, *, as_json: bool) -> None:
    """Add every task of the YAML list in `source` (a path, or - for stdin), or none."""
    env = open_env(root, "stigmergy task import", git_backend=True)
    at = now()
    docs = _read(source)
    who = whoami()
    batch = [_one(doc, f"{source}: task {i}", at, who) for i, doc in enumerate(docs, 1)]
    with console.busy(f"Importing {len(batch)} tasks", when=len(batch) >= console.BUSY_AT):
        if env.config.backend == "git":  # one atomic push: all or none
            from stigmergy_cli.remote_pool import RemotePool

            records = RemotePool(env.layout, env.config).add_many(batch)
        else:
            records = env.store.import_tasks(batch, at)
    if as_json:
        from stigmergy_cli import pool

        console.emit_json([pool.entry_json(e) for e in pool.entries(env, records, at)])
    else:
        console.say(f"Imported {len(records)} task{'s' if len(records) != 1 else ''}.")


def _one(doc: Any, where: str, at: float, who: str) -> Task:
    if not isinstance(doc, dict):
        raise InvalidInput(
            f"{where}: expected a mapping of task fields, found {type(doc).__name__}"
        )
    try:
        return tasks.new_task(doc, now=at, created_by=who)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc}") from None


def _read(source: str) -> list[Any]:
    if source == "-":
        data = sys.stdin.buffer.read(MAX_IMPORT_BYTES + 1)
    else:
        try:
            with Path(source).open("rb") as fh:
                data = fh.read(MAX_IMPORT_BYTES + 1)
        except OSError as exc:
            raise InvalidInput(f"cannot read {source}: {exc.strerror}") from None
    if len(data) > MAX_IMPORT_BYTES:
        raise InvalidInput(f"{source} is larger than {MAX_IMPORT_BYTES // 2**20} MiB")
    try:
        docs = yamlio.load(data)
    except yamlio.YAMLSyntaxError as exc:
        raise InvalidInput(f"{source}: {exc}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{source}: not valid UTF-8") from None
    if isinstance(docs, dict) and isinstance(docs.get("tasks"), list):
        docs = docs["tasks"]  # also accept `tasks: [...]`
    if not isinstance(docs, list):
        raise InvalidInput(f"{source}: expected a YAML list of tasks")
    if not docs:
        raise InvalidInput(f"{source}: the list of tasks is empty")
    return docs
