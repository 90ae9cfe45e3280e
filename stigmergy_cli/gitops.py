"""The only module that runs git.

We call the git CLI with argument lists rather than GitPython: importing GitPython costs about
80 ms of the 150 ms start-up budget, and its persistent `git cat-file` processes leak in long
agent runs (GitPython issues #1208, #1333). See docs/design.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from stigmergy_cli.errors import GitError, NotARepository

if TYPE_CHECKING:
    import subprocess

# Variables a parent git process (a hook, `git rebase -x`, an agent run inside git) may leak
# into ours; with them set, git would act on the wrong repository or index.
# Same idea as pre-commit's no_git_env (pre-commit/pre-commit#300).
_LEAKY_GIT_VARS = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_COMMON_DIR",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_PREFIX",
        "GIT_NAMESPACE",
        "GIT_CEILING_DIRECTORIES",
        "GIT_DISCOVERY_ACROSS_FILESYSTEM",
        "GIT_QUARANTINE_PATH",
    }
)

DEFAULT_TIMEOUT = 120.0


def git_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a git child: leaked repository variables removed, no prompts."""
    env = {
        k: v for k, v in (os.environ if base is None else base).items() if k not in _LEAKY_GIT_VARS
    }
    env["GIT_TERMINAL_PROMPT"] = "0"  # never hang waiting for credentials
    return env


def run(
    args: Sequence[str],
    cwd: Path,
    *,
    check: bool = True,
    stdin: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run `git <args>` in `cwd`; on failure (when `check`) raise GitError with git's words."""
    import subprocess  # imported here: most commands never start git

    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=git_env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise GitError("git is not installed or not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {' '.join(args)} timed out after {timeout:g}s") from exc
    if check and proc.returncode != 0:
        raise GitError(
            f"git {' '.join(args)} failed ({proc.returncode}): {_last_line(proc.stderr)}"
        )
    return proc


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def _root_from_files(start: Path) -> Path | None:
    """What `git rev-parse --git-common-dir` would tell, read from the files, or None if unsure.

    Every command starts by finding the root; reading two small files instead of starting git
    saves a process and about 10 ms. Anything unusual falls back to asking git.
    """
    for directory in (start, *start.parents):
        dot_git = directory / ".git"
        if dot_git.is_dir():
            return directory if (dot_git / "HEAD").is_file() else None
        if dot_git.is_file():  # a linked worktree or a submodule: "gitdir: <path>"
            try:
                text = dot_git.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                return None
            if not text.startswith("gitdir:"):
                return None
            git_dir = (directory / text.removeprefix("gitdir:").strip()).resolve()
            common = git_dir
            commondir_file = git_dir / "commondir"
            if commondir_file.is_file():
                try:
                    relative = commondir_file.read_text(encoding="utf-8").strip()
                except (OSError, UnicodeDecodeError):
                    return None
                common = (git_dir / relative).resolve()
            if common.name == ".git" and common.is_dir():
                return common.parent
            return directory
    return None


def find_repo_root(start: Path) -> Path:
    """The main working tree of the repository containing `start`, also from a linked worktree."""
    if not start.is_dir():
        raise NotARepository(f"{start} is not a directory")
    found = _root_from_files(start.resolve())
    if found is not None:
        return found
    proc = run(
        ["rev-parse", "--path-format=absolute", "--git-common-dir", "--show-toplevel"],
        start,
        check=False,
    )
    if proc.returncode != 0:
        raise NotARepository(f"{start} is not inside a git repository (run `git init` first)")
    lines = proc.stdout.splitlines()
    if len(lines) < 2:  # two lines asked for; fewer means a bare repository
        raise NotARepository(f"{start} is in a bare git repository; stigmergy needs a working tree")
    common_dir = Path(lines[0])
    # The common dir of a normal repository is <root>/.git, whichever worktree we stand in.
    if common_dir.name == ".git":
        return common_dir.parent
    return Path(lines[1])  # separate git dir or submodule: the toplevel we stand in


def branch_exists(root: Path, branch: str) -> bool:
    """Does refs/heads/<branch> exist (has at least one commit)?"""
    proc = run(["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], root, check=False)
    return proc.returncode == 0


def is_valid_branch_name(root: Path, branch: str) -> bool:
    """Would git accept `branch` as a branch name?"""
    if branch.startswith("-"):
        return False
    proc = run(["check-ref-format", "--branch", branch], root, check=False)
    return proc.returncode == 0


def current_branch(root: Path) -> str | None:
    """The branch checked out at `root`, also when it has no commit yet; None when detached."""
    proc = run(["symbolic-ref", "--quiet", "--short", "HEAD"], root, check=False)
    return proc.stdout.strip() or None if proc.returncode == 0 else None
