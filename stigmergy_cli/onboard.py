"""`stigmergy onboard`: what an interactive agent needs to know, for AGENTS.md or CLAUDE.md."""

from __future__ import annotations

from pathlib import Path

from stigmergy_cli import atomic
from stigmergy_cli.errors import InvalidInput

AGENTS = ("claude", "codex", "aider", "generic")
BEGIN = "<!-- stigmergy:begin (written by `stigmergy onboard`; edits inside are replaced) -->"
END = "<!-- stigmergy:end -->"

INSTRUCTIONS = """\
## Working with stigmergy

Several coding agents share this repository; `stigmergy` hands out the work. Pick a name for
yourself that no other session uses (for example your tool and a number: `claude-2`), and:

1. **Claim** a task: `stigmergy task claim --agent NAME --json` (or the `claim` MCP tool). It
   gives you the task (`id`, `title`, `description`, `verify`) and `worktree`, a git worktree
   that is yours alone. Exit code 1 means nothing is ready for you now.
2. **Work only in that worktree.** Do not edit the main checkout, other worktrees, or
   anything under `.stigmergy/`.
3. **Finish** with `stigmergy task done ID --agent NAME` (MCP: `complete`): it runs the task's
   `verify`, commits and merges for you. If verify fails, fix it and run `done` again.
4. **Or give it back**: `stigmergy task release ID --agent NAME` (unfinished), or
   `stigmergy task fail ID --agent NAME --reason "..."` (it did not work).
5. On long tasks, `stigmergy agent heartbeat --id NAME` every ten minutes or so (the MCP
   server does this for you while it holds your claim).

Never merge, rebase or push the target branch yourself, never delete a worktree or a branch,
and never edit task files by hand: stigmergy does all of that, safely.
"""

MCP_SNIPPETS = {
    "claude": (
        "Register the MCP server with Claude Code:\n\n"
        "    claude mcp add stigmergy -- stigmergy mcp\n"
    ),
    "codex": (
        "Register the MCP server with Codex, in ~/.codex/config.toml:\n\n"
        '    [mcp_servers.stigmergy]\n    command = "stigmergy"\n    args = ["mcp"]\n'
    ),
    "aider": "Aider has no MCP client: it uses the commands above.\n",
    "generic": (
        "Any MCP client can run the server over stdio: command `stigmergy`, arguments `mcp`,\n"
        "started in the repository (or with STIGMERGY_ROOT set).\n"
    ),
}


def target_file(agent: str) -> str:
    """Where each agent reads its standing instructions."""
    return "CLAUDE.md" if agent == "claude" else "AGENTS.md"


def text(agent: str) -> str:
    """The instructions and the MCP set-up for `agent`."""
    if agent not in AGENTS:
        raise InvalidInput(f"unknown agent {agent!r}: use one of {', '.join(AGENTS)}")
    return f"{INSTRUCTIONS}\n{MCP_SNIPPETS[agent]}"


def write(root: Path, agent: str) -> tuple[Path, bool]:
    """Add (or refresh) the instructions in AGENTS.md / CLAUDE.md, keeping everything else.

    Returns the file and whether it changed. Only the block between the stigmergy markers is
    ever replaced; a file without them gets the block appended.
    """
    path = root / target_file(agent)
    block = f"{BEGIN}\n{INSTRUCTIONS}{END}\n"
    try:
        current = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = ""
    if BEGIN in current and END in current and current.index(BEGIN) < current.index(END):
        start = current.index(BEGIN)
        end = current.index(END) + len(END)
        tail = current[end:].removeprefix("\n")
        updated = current[:start] + block + tail
    else:
        separator = "" if not current else ("\n" if current.endswith("\n") else "\n\n")
        updated = current + separator + block
    if updated == current:
        return path, False
    atomic.write_bytes(path, updated.encode("utf-8"))
    return path, True
