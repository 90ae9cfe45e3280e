"""The scripted executor of `stigmergy demo`: plays a coding agent without any model.

Run by `agent run` as `python -m stigmergy_cli.demo_executor` in the agent's worktree. For a
sample task it "thinks" a moment, then writes the task's files; for a merge_conflict task it
resolves every conflict by keeping both sides, as a careful person would for two appended
README sections.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

from stigmergy_cli.demo_project import PIECES


def resolve_by_union(text: str) -> str:
    """Replace each conflict block with our lines followed by theirs."""
    out: list[str] = []
    side = None
    for line in text.splitlines(keepends=True):
        if line.startswith("<<<<<<< "):
            side = "ours"
        elif line.startswith("=======") and side == "ours":
            side = "theirs"
        elif line.startswith(">>>>>>> ") and side == "theirs":
            side = None
        else:
            out.append(line)
    return "".join(out)


def main() -> int:
    task_id = os.environ["STIGMERGY_TASK_ID"]
    think = float(os.environ.get("STIGMERGY_DEMO_THINK", "0.4"))
    if task_id.startswith("docs-"):
        think *= 3  # writing prose takes longer: both README tasks are in flight together
    time.sleep(think * random.uniform(0.6, 1.4))  # noqa: S311 - pacing, not security
    conflicted = subprocess.run(
        ["git", "diff", "--name-only", "--diff-filter=U"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if conflicted:
        for name in conflicted:
            path = Path(name)
            path.write_text(resolve_by_union(path.read_text()))
        sys.stdout.write(f"resolved {', '.join(conflicted)} by keeping both sides\n")
        return 0
    piece = next((p for p in PIECES if p.task_id == task_id), None)
    if piece is None:
        sys.stderr.write(f"the demo executor does not know task {task_id!r}\n")
        return 1
    for name, content in piece.files.items():
        path = Path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == "README.md":  # documentation tasks append a section
            section = content.split("\n## ", 1)[1]
            path.write_text(path.read_text() + "\n## " + section)
        else:
            path.write_text(content)
    sys.stdout.write(f"wrote {', '.join(piece.files)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
