"""The shared git remote: fetching its stigmergy refs into a local cache, and pushing
lease-checked, atomic ref updates to it.

The server's ref updates are the only arbiter between machines. A push names, for every ref
that anyone contends for, the value the server must still hold (`--force-with-lease`;
"" means the ref must not exist); receive-pack checks it under the ref's lock, and
`--atomic` makes a push of several refs all or nothing. Refs nobody contends for (a task's
result, a salvage) are pushed without a lease.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stigmergy_cli import gitops
from stigmergy_cli.errors import GitError, StigmergyError

TASKS = "refs/stigmergy/tasks/"
CLAIMS = "refs/stigmergy/claims/"
RESULTS = "refs/stigmergy/results/"
SALVAGE = "refs/stigmergy/salvage/"
MUST_NOT_EXIST = ""
# A push or fetch over a network: long enough for a slow server, short enough that an agent
# whose server vanished notices within a lease.
NETWORK_TIMEOUT = 30.0


class RemoteUnreachable(StigmergyError):
    """The remote could not be reached, or the connection broke: the outcome of a write is
    unknown until the refs are fetched again."""


@dataclass(frozen=True)
class Update:
    """One ref to change on the remote: to `new` (None deletes it), if it still holds
    `expect` ("" = must not exist; None = no lease, only for refs nobody contends for)."""

    ref: str
    new: str | None
    expect: str | None

    def __post_init__(self) -> None:
        contended = self.ref.startswith((TASKS, CLAIMS)) or self.ref.startswith("refs/heads/")
        if contended and self.expect is None:
            raise ValueError(f"a push of {self.ref} must name the value it expects")


@dataclass(frozen=True)
class PushResult:
    """What the server said: the refs it rejected (empty when everything was applied)."""

    rejected: dict[str, str]

    @property
    def ok(self) -> bool:
        return not self.rejected


class Remote:
    """One git remote of the repository at `root`, and the local cache of its refs."""

    def __init__(self, root: Path, name: str, target: str) -> None:
        self.root = root
        self.name = name
        self.target = target
        self.cache = f"refs/stigmergy-cache/{name}/"

    @property
    def cached_target(self) -> str:
        """The local ref holding the remote target's tip as of the last fetch."""
        return f"{self.cache}target"

    def cache_ref(self, ref: str) -> str:
        """Where the last fetch left the remote's `ref` (refs/stigmergy/... only)."""
        return self.cache + ref.removeprefix("refs/stigmergy/")

    def _git(self, args: Sequence[str]) -> tuple[int, str, str]:
        try:
            proc = gitops.run(args, self.root, check=False, timeout=NETWORK_TIMEOUT)
        except GitError as exc:  # timed out: the connection hangs
            raise RemoteUnreachable(f"remote {self.name!r}: {exc}") from exc
        return proc.returncode, proc.stdout, proc.stderr

    def fetch(self, refs: Sequence[str] = ()) -> None:
        """Bring the cache up to date (one round trip): with `refs` (under refs/stigmergy/),
        just those; by default every task, every claim and the target, pruning deleted ones."""
        args = ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head"]
        if refs:
            specs = [f"+{ref}:{self.cache_ref(ref)}" for ref in refs]
        else:
            args.append("--prune")
            specs = [
                f"+{TASKS}*:{self.cache}tasks/*",
                f"+{CLAIMS}*:{self.cache}claims/*",
                f"+refs/heads/{self.target}:{self.cached_target}",
            ]
        code, _, err = self._git([*args, self.name, *specs])
        if code != 0:
            raise RemoteUnreachable(f"cannot fetch from remote {self.name!r}: {_reason(err)}")

    def push(self, updates: Sequence[Update]) -> PushResult:
        """Apply `updates` on the remote, all or none. Rejections are returned; a broken
        connection raises RemoteUnreachable (fetch before deciding what happened)."""
        args = ["push", "--porcelain", "--atomic", "--no-verify", "--quiet"]
        specs = []
        for update in updates:
            if update.expect is not None:
                args.append(f"--force-with-lease={update.ref}:{update.expect}")
                specs.append(f"{update.new or ''}:{update.ref}")
            else:
                specs.append(f"+{update.new}:{update.ref}" if update.new else f":{update.ref}")
        return self._result(*self._git([*args, self.name, *specs]))

    def create_all(self, prefix: str, commits: dict[str, str]) -> PushResult:
        """Create `prefix + name` → commit for every entry, all or none, each only if absent.

        For batches of thousands: git matches explicit refspecs against each other in
        quadratic time (4,000 take 13 s), so the commits are staged under a local namespace
        and pushed with one glob refspec (4,000 take 0.8 s). The push is not forced and every
        commit is a root commit, so it can only create: it cannot fast-forward a ref that
        exists, and the server checks that each ref is still absent (the old value a push
        names) under the ref's lock.
        """
        if not prefix.startswith(TASKS):  # claims and branches are always lease-checked
            raise ValueError(f"create_all is for new tasks, not {prefix}")
        stage = f"refs/stigmergy-stage/{os.urandom(6).hex()}/"
        lines = "".join(f"create {stage}{name} {commit}\n" for name, commit in commits.items())
        gitops.run(["update-ref", "--stdin"], self.root, stdin=lines)
        try:
            args = ["push", "--porcelain", "--atomic", "--no-verify", "--quiet", self.name]
            result = self._result(*self._git([*args, f"{stage}*:{prefix}*"]))
        finally:
            drop = "".join(f"delete {stage}{name}\n" for name in commits)
            gitops.run(["update-ref", "--stdin"], self.root, stdin=drop, check=False)
        return result

    def _result(self, code: int, out: str, err: str) -> PushResult:
        """What a `git push --porcelain` said: the refs it refused, or RemoteUnreachable."""
        rejected = {}
        for line in out.splitlines():
            flag, _, rest = line.partition("\t")
            if flag == "!":
                refs, _, why = rest.partition("\t")
                rejected[refs.rpartition(":")[2]] = why
        if code != 0 and not rejected:
            raise RemoteUnreachable(f"cannot push to remote {self.name!r}: {_reason(err)}")
        return PushResult(rejected)

    def ref(self, ref: str) -> str | None:
        """What the remote holds at `ref` now (None: absent), asked directly (one round trip)."""
        code, out, err = self._git(["ls-remote", self.name, ref])
        if code != 0:
            raise RemoteUnreachable(f"cannot reach remote {self.name!r}: {_reason(err)}")
        for line in out.splitlines():
            sha, _, name = line.partition("\t")
            if name == ref:
                return sha
        return None

    def url(self) -> str | None:
        code, out, _ = self._git(["remote", "get-url", self.name])
        return out.strip() if code == 0 else None

    def heads(self) -> dict[str, str]:
        """The remote's branches and their commits (one round trip)."""
        code, out, err = self._git(["ls-remote", "--heads", self.name])
        if code != 0:
            raise RemoteUnreachable(f"cannot reach remote {self.name!r}: {_reason(err)}")
        found = {}
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            found[ref] = sha
        return found


def _reason(stderr: str) -> str:
    """git's own words for a failure: its first "fatal:" line (what follows is advice such
    as "Please make sure you have the correct access rights"), else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for k, line in enumerate(lines):
        if line.startswith("fatal: "):
            reason = line.removeprefix("fatal: ")
            if reason.endswith(":") and k + 1 < len(lines):  # "unable to connect to host:"
                reason = f"{reason} {lines[k + 1]}"
            return reason
    return lines[-1] if lines else "no output from git"
