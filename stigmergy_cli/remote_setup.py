"""Checking a git remote before agents rely on it (`stigmergy init --remote NAME`)."""

from __future__ import annotations

import os
from pathlib import Path

from stigmergy_cli import gitops
from stigmergy_cli.config import REMOTE_RE
from stigmergy_cli.errors import InvalidInput, StigmergyError
from stigmergy_cli.remote import MUST_NOT_EXIST, Remote, Update

_PROBE = "refs/stigmergy/probe/"


def check(root: Path, name: str, target: str) -> None:
    """Refuse, with the reason, a remote the git backend cannot work with: unknown, unreachable,
    without the target branch, or refusing custom refs or atomic pushes. Leaves nothing behind
    on the remote."""
    if not REMOTE_RE.fullmatch(name):
        raise InvalidInput(f"invalid remote name {name!r}")
    remote = Remote(root, name, target)
    if remote.url() is None:
        raise InvalidInput(f"no git remote named {name!r} (see `git remote -v`)")
    tip = remote.heads().get(f"refs/heads/{target}")
    if tip is None:
        raise InvalidInput(
            f"remote {name!r} has no branch {target!r}; push it first (git push {name} {target})"
        )
    fetched = gitops.run(["fetch", "--quiet", "--no-tags", name, target], root, check=False)
    if fetched.returncode != 0:
        raise StigmergyError(f"cannot fetch {target!r} from remote {name!r}")
    probe = f"{_PROBE}{os.urandom(6).hex()}"
    try:
        made = remote.push([Update(probe, tip, MUST_NOT_EXIST)])
    except StigmergyError as exc:
        raise StigmergyError(
            f"remote {name!r} refuses what the git backend needs (custom refs under "
            f"refs/stigmergy/, atomic pushes): {exc}"
        ) from exc
    if not made.ok:
        raise StigmergyError(
            f"remote {name!r} refused a ref under refs/stigmergy/: {made.rejected.get(probe)}"
        )
    remote.push([Update(probe, None, tip)])
