"""The only module that runs git.

We call the git CLI with argument lists rather than GitPython: importing GitPython costs about
80 ms of the 150 ms start-up budget, and its persistent `git cat-file` processes leak in long
agent runs (GitPython issues #1208, #1333). See docs/design.md.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stigmergy_cli import gitfiles, treemerge
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
# `git commit` and `git merge` start `git maintenance run --auto` after their work: a process
# per task for nothing, most times. The sweep asks for that housekeeping instead (maintain).
_NO_AUTO_MAINTENANCE = ("-c", "maintenance.auto=false")


def child_env() -> dict[str, str]:
    """This process's environment without the git variables a parent git may have leaked:
    for any child that may run git, the executor too."""
    return {k: v for k, v in os.environ.items() if k not in _LEAKY_GIT_VARS}


def git_env() -> dict[str, str]:
    """The environment for our own git processes: no leaked repository variables, no
    prompts, and git's messages untranslated, since some are read ("nothing to commit", a
    lock file in the way); LANGUAGE=de otherwise makes them German, even in C.UTF-8."""
    env = child_env()
    env["GIT_TERMINAL_PROMPT"] = "0"  # never hang waiting for credentials
    env["LC_ALL"] = "C"
    return env


def run(
    args: Sequence[str],
    cwd: Path,
    *,
    check: bool = True,
    stdin: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    pass_fds: Sequence[int] = (),
) -> subprocess.CompletedProcess[str]:
    """Run `git <args>` in `cwd`; on failure (when `check`) raise GitError with git's words.
    `pass_fds`: descriptors git inherits (a lock it must hold as long as it runs)."""
    proc: subprocess.CompletedProcess[str] = _spawn(
        args, cwd, stdin, timeout, text=True, pass_fds=pass_fds
    )
    if check and proc.returncode != 0:
        raise GitError(f"{_command(args)} failed ({proc.returncode}): {_last_line(proc.stderr)}")
    return proc


def _spawn(
    args: Sequence[str],
    cwd: Path,
    stdin: str | bytes | None,
    timeout: float,
    *,
    text: bool,
    pass_fds: Sequence[int] = (),
) -> subprocess.CompletedProcess[Any]:
    """Start git and wait for it; a missing git or a timeout is a GitError."""
    import subprocess  # imported here: most commands never start git

    try:
        return subprocess.run(
            ["git", *_NO_AUTO_MAINTENANCE, *args],
            cwd=cwd,
            env=git_env(),
            input=stdin,
            capture_output=True,
            text=text,
            timeout=timeout,
            check=False,
            pass_fds=tuple(pass_fds),
        )
    except FileNotFoundError as exc:
        if not Path(cwd).is_dir():  # the same error as a missing git, from the chdir
            raise WorkingDirectoryGone(f"{cwd} does not exist any more") from None
        raise GitMissing("git is not installed or not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"{_command(args)} timed out after {timeout:g}s") from exc


class GitMissing(GitError):
    """No git to run: the machine's trouble, not a task's."""


class WorkingDirectoryGone(GitError):
    """The directory a git command was to run in was removed (a worktree deleted by hand)."""


def _command(args: Sequence[str], limit: int = 120) -> str:
    """The command for a message: a push of many refs would otherwise make it megabytes."""
    text = " ".join(["git", *args])
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def commit_messages(cwd: Path, commits: Sequence[str]) -> dict[str, str]:
    """The message of each commit, read by one `git cat-file --batch` whatever their number;
    a commit that is missing, or not a commit, is left out."""
    wanted = "".join(f"{sha}\n" for sha in commits).encode()
    proc = _spawn(["cat-file", "--batch"], cwd, wanted, DEFAULT_TIMEOUT, text=False)
    if proc.returncode != 0:
        raise GitError(f"git cat-file --batch failed: {_last_line(proc.stderr.decode())}")
    out, found, at = proc.stdout, {}, 0
    while at < len(out):
        end = out.index(b"\n", at)
        header = out[at:end].split()
        at = end + 1
        if len(header) != 3:  # "<sha> missing"
            continue
        size = int(header[2])
        if header[1] == b"commit":
            raw = out[at : at + size].decode("utf-8", "replace")
            found[header[0].decode()] = raw.partition("\n\n")[2]
        at += size + 1
    return found


def maintain(root: Path) -> None:
    """The housekeeping git would do after a commit (`gc --auto`: packs loose objects once
    there are many, in the background); nothing when there is nothing to do."""
    run(["gc", "--auto", "--quiet"], root, check=False)


def _last_line(text: str) -> str:
    """git's own reason: its last `fatal:` or `error:` line (advice follows it), else its
    last line."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    reasons = [line for line in lines if line.startswith(("fatal:", "error:"))]
    return (reasons or lines or ["no message"])[-1]


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


# -- objects and refs ---------------------------------------------------------------------

MIN_MERGE_TREE_VERSION = (2, 38)  # `git merge-tree --write-tree`


def rev_parse(cwd: Path, rev: str) -> str | None:
    """The commit `rev` names, or None if it names none."""
    proc = run(
        ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
        cwd,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def ref_commit(root: Path, ref: str) -> str | None:
    """The commit a branch ref such as refs/heads/main points at; None if it does not exist.

    Read from the ref files rather than by starting git, since an agent asks several times
    per task; anything unusual (reftable, a symbolic ref...) is left to `git rev-parse`.
    """
    try:
        return gitfiles.read_ref(gitfiles.common_dir(root), ref)
    except gitfiles.NeedsGit:
        return rev_parse(root, ref)


def head_commit(worktree: Path, root: Path) -> str | None:
    """The commit checked out in a linked worktree of `root` (its HEAD), read from files when
    it can be, else from git."""
    try:
        said = gitfiles.head(gitfiles.worktree_git_dir(worktree))
        if said.startswith("ref: refs/heads/"):
            return gitfiles.read_ref(gitfiles.common_dir(root), said.removeprefix("ref: "))
        if gitfiles.SHA_RE.fullmatch(said):
            return said
    except gitfiles.NeedsGit:
        pass
    return rev_parse(worktree, "HEAD")


def is_ancestor(cwd: Path, ancestor: str, descendant: str) -> bool:
    """Is `ancestor` reachable from `descendant`?"""
    return (
        run(["merge-base", "--is-ancestor", ancestor, descendant], cwd, check=False).returncode == 0
    )


def update_ref(
    cwd: Path, ref: str, new: str, old: str | None = None, *, reason: str = "stigmergy"
) -> bool:
    """Point `ref` at `new` if it is at `old` ("" = must not exist; None = any); False if not."""
    args = ["update-ref", "-m", reason, ref, new]
    if old is not None:
        args.append(old or "0" * 40)
    return run(args, cwd, check=False).returncode == 0


def keep_ref(root: Path, ref: str, commit: str, *, reason: str = "stigmergy") -> None:
    """Point `ref`, one of stigmergy's own refs (refs/stigmergy/...), at `commit`.

    An agent keeps every result this way, once per task, so the ref is written as git writes
    a loose ref (gitrepository-layout): `<ref>.lock` created exclusively, then renamed over
    the ref, which is the protocol git's own processes respect. That saves starting
    `git update-ref` per task. Refs under refs/stigmergy/ get no reflog from git either
    (core.logAllRefUpdates covers branches, remotes and notes). Anything unusual (reftable,
    a separate git dir, the ref being updated by someone else) goes through git instead.
    """
    usual = ref.startswith("refs/stigmergy/") and ".." not in ref.split("/")
    if usual and gitfiles.SHA_RE.fullmatch(commit):
        try:
            gitfiles.write_ref(gitfiles.common_dir(root), ref, commit)
        except gitfiles.NeedsGit:
            pass
        else:
            return
    if not update_ref(root, ref, commit, reason=reason):
        raise GitError(f"could not point {ref} at {commit}")


def delete_ref(cwd: Path, ref: str) -> None:
    """Delete `ref` if it exists."""
    run(["update-ref", "-d", ref], cwd, check=False)


def identity(cwd: Path) -> list[str]:
    """`-c` options giving commits an author when the repository has none configured.

    Asked once per directory and process: an agent commits hundreds of times.
    """
    return list(_identity(str(cwd)))


def learn_identities(*places: Path) -> None:
    """Ask git now who commits in each of `places` (remembered per process), for a process
    about to commit there at a moment when time counts: an agent's first commit and first
    merge would otherwise start four git processes, two of them under the integration lock
    that every agent of the round is queueing for."""
    for place in places:
        _signatures(str(place), tuple(identity(place)))


@functools.lru_cache(maxsize=64)
def _identity(cwd: str) -> tuple[str, ...]:
    proc = run(["config", "--get-regexp", r"^user\.(name|email)$"], Path(cwd), check=False)
    configured = {line.split(" ", 1)[0] for line in proc.stdout.splitlines()}
    extra: list[str] = []
    if "user.name" not in configured:
        extra += ["-c", "user.name=stigmergy"]
    if "user.email" not in configured:
        extra += ["-c", "user.email=stigmergy@localhost"]
    return tuple(extra)


def commit_all(
    worktree: Path, message: str, ident: Sequence[str], *, root: Path | None = None
) -> str | None:
    """Commit every change in `worktree` (new files too); None when there is nothing to commit.

    A merge in progress is concluded even if its tree equals HEAD's. Hooks are not run: the
    task's `verify` command is the gate, and a hook waiting for input would hang an agent.
    With `root` (the repository of a linked worktree) git is asked only to write the tree
    (see _commit_index).
    """
    run(["add", "-A"], worktree)
    if root is not None:
        try:
            return _commit_index(worktree, root, message, ident)
        except gitfiles.NeedsGit:
            pass
    proc = run(
        [*ident, "commit", "--no-verify", "--no-gpg-sign", "-q", "-F", "-"],
        worktree,
        stdin=message,
        check=False,
    )
    if proc.returncode != 0:
        if "nothing to commit" in proc.stdout or "nothing added to commit" in proc.stdout:
            return None
        raise GitError(
            f"git commit failed ({proc.returncode}): {_last_line(proc.stderr or proc.stdout)}"
        )
    head = head_commit(worktree, root) if root is not None else rev_parse(worktree, "HEAD")
    if head is None:  # pragma: no cover - a commit just succeeded
        raise GitError("commit succeeded but HEAD names no commit")
    return head


def _commit_index(worktree: Path, root: Path, message: str, ident: Sequence[str]) -> str | None:
    """What `git commit` makes of a linked worktree's index, for a third of its CPU: `git
    write-tree`, then the commit written as a loose object and the branch moved as git moves
    it. None when the index has no change. NeedsGit when git should commit: a merge to
    conclude, a parent already packed, an identity set in the environment..."""
    branch = gitfiles.checked_out(root, worktree)
    parent_tree = gitfiles.tree_of(branch.common / "objects", branch.commit)
    tree = run(["write-tree"], worktree).stdout.strip()
    if tree == parent_tree:
        return None
    made = _write_commit(root, tree, [branch.commit], message, ident, asked=worktree)
    if made is None:
        raise gitfiles.NeedsGit("git makes this commit")
    _move_branch(branch, made, worktree, ident, f"commit: {message.splitlines()[0]}")
    return made


def move_clean_worktree(root: Path, worktree: Path, commit: str) -> bool:
    """Bring a clean linked worktree and its branch to `commit` with a two-tree `git
    read-tree -m -u` (what a checkout does: only the files that differ are written) and the
    branch moved as git moves it; `git reset --hard` costs half as much again. False when
    git should reset it instead: nothing was changed, or only the files were."""
    if not gitfiles.SHA1_RE.fullmatch(commit):
        return False
    try:
        branch = gitfiles.checked_out(root, worktree)
        moved = run(["read-tree", "-m", "-u", branch.commit, commit], worktree, check=False)
        if moved.returncode != 0:
            return False
        _move_branch(branch, commit, worktree, identity(worktree), f"reset: moving to {commit}")
    except gitfiles.NeedsGit:
        return False
    return True


def _move_branch(
    branch: gitfiles.Branch, new: str, worktree: Path, ident: Sequence[str], why: str
) -> None:
    """Move the branch a linked worktree has checked out to `new`, if it is still where it was
    read, with the reflog entries git would write (the branch's and that worktree's HEAD's)."""
    people = _signatures(str(worktree), tuple(ident))
    if people is None:
        raise gitfiles.NeedsGit("no identity for the reflog")
    entry = f"{people[1]} {gitfiles.stamp()}\t{why}"
    gitfiles.write_ref(
        branch.common, branch.ref, new, old=branch.commit, reflog=(branch.reflogs, entry)
    )


def merge_base(cwd: Path, one: str, other: str) -> str | None:
    """The best common ancestor of two commits (None if they share no history)."""
    proc = run(["merge-base", one, other], cwd, check=False)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def is_clean(worktree: Path) -> bool:
    """No change at all in the worktree, untracked files included (ignored ones aside)."""
    return not run(["status", "--porcelain", "--untracked-files=all"], worktree).stdout.strip()


def commit_tree(
    cwd: Path, tree: str, parents: Sequence[str], message: str, ident: Sequence[str]
) -> str:
    """Create a commit object for `tree` with `parents` (nothing is checked out).

    Written directly as a loose object, the way git writes one, when nothing unusual is in the
    way: every merge makes one under the integration lock, where a `git commit-tree` process
    is a quarter of the time the lock is held. Otherwise git makes it.
    """
    made = _write_commit(cwd, tree, parents, message, ident)
    if made is not None:
        return made
    args = [*ident, "commit-tree", "--no-gpg-sign", tree]
    for parent in parents:
        args += ["-p", parent]
    return run([*args, "-F", "-"], cwd, stdin=message).stdout.strip()


def _write_commit(
    cwd: Path,
    tree: str,
    parents: Sequence[str],
    message: str,
    ident: Sequence[str],
    *,
    asked: Path | None = None,
) -> str | None:
    """The commit `git commit-tree` would make, written as a loose object; None when git
    should make it: SHA-256 object names, identity or date variables in the environment
    (git reads those at each commit), objects not kept in `cwd/.git/objects`. `asked`: where
    git would have run, whose configuration names the author (a worktree may have its own)."""
    if not all(gitfiles.SHA1_RE.fullmatch(name) for name in (tree, *parents)) or any(
        name.startswith(("GIT_AUTHOR_", "GIT_COMMITTER_")) for name in os.environ
    ):
        return None
    people = _signatures(str(asked or cwd), tuple(ident))
    if people is None:
        return None
    try:
        objects = gitfiles.common_dir(cwd) / "objects"
    except gitfiles.NeedsGit:
        return None
    body = gitfiles.commit_body(tree, parents, *people, gitfiles.stamp(), message)
    return gitfiles.write_object(objects, b"commit", body)


@functools.lru_cache(maxsize=64)
def _signatures(cwd: str, ident: tuple[str, ...]) -> tuple[str, str] | None:
    """ "Name <email>" of the author and of the committer, as git resolves them (`git var`)."""
    proc = run([*ident, "var", "-l"], Path(cwd), check=False)
    found = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        if key in ("GIT_AUTHOR_IDENT", "GIT_COMMITTER_IDENT"):
            found[key] = value.rsplit(" ", 2)[0]  # without the date git adds
    if proc.returncode != 0 or len(found) != 2:
        return None
    return found["GIT_AUTHOR_IDENT"], found["GIT_COMMITTER_IDENT"]


@dataclass(frozen=True)
class MergeResult:
    clean: bool
    tree: str
    conflicts: tuple[str, ...]


def merge_tree(cwd: Path, ours: str, theirs: str, *, base: str | None = None) -> MergeResult:
    """Three-way merge of two commits without touching any index or working tree.

    `base`: the commit `theirs` was made on, when the caller knows it. A merge decided by
    whole files is then done without git (treemerge). Otherwise git's exit 0 is clean, 1 is
    a conflict (which may list no file, e.g. some directory renames), anything else is an
    error, never a conflict.
    """
    if base is not None:
        try:
            tree = treemerge.merge(gitfiles.common_dir(cwd), ours, theirs, base)
        except gitfiles.NeedsGit:
            pass
        else:
            return MergeResult(True, tree, ())
    proc = run(
        ["merge-tree", "--write-tree", "-z", "--name-only", "--no-messages", ours, theirs],
        cwd,
        check=False,
    )
    if proc.returncode not in (0, 1):
        installed = version()
        if installed < MIN_MERGE_TREE_VERSION:
            raise GitError(
                f"git {'.'.join(map(str, installed))} is too old: stigmergy merges with "
                "`git merge-tree --write-tree`, which needs git 2.38 or newer"
            )
        raise GitError(
            f"git merge-tree {ours} {theirs} failed ({proc.returncode}): {_last_line(proc.stderr)}"
        )
    fields = proc.stdout.split("\0")
    tree = fields[0].strip()
    if not tree:  # git 2.39 exits 1 for "not something we can merge": an error, not a conflict
        raise GitError(f"git merge-tree {ours} {theirs} failed: {_last_line(proc.stderr)}")
    files = tuple(dict.fromkeys(f for f in fields[1:] if f))
    return MergeResult(proc.returncode == 0, tree, files)


# -- worktrees ----------------------------------------------------------------------------


def worktrees(root: Path) -> list[dict[str, str]]:
    """`git worktree list --porcelain` as one mapping per worktree (worktree, HEAD, branch...)."""
    out = run(["worktree", "list", "--porcelain", "-z"], root).stdout
    result: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for field in out.split("\0"):
        if not field:
            if current:
                result.append(current)
                current = {}
            continue
        key, _, value = field.partition(" ")
        current[key] = value
    if current:
        result.append(current)
    return result


def checkout_of(root: Path, branch: str) -> tuple[Path | None, str | None]:
    """Where `branch` is checked out (or None) and the commit it is at (None: no commit).

    Read from the worktrees' HEAD files (gitrepository-layout) rather than by starting
    `git worktree list`: this runs under the integration lock for every merge. Anything
    unusual falls back to asking git.
    """
    ref = f"refs/heads/{branch}"
    commit = ref_commit(root, ref)
    try:
        return gitfiles.checkout_of(gitfiles.common_dir(root), root, ref), commit
    except gitfiles.NeedsGit:
        pass
    for tree in worktrees(root):
        if tree.get("branch") == ref:
            return Path(tree["worktree"]), commit
    return None, commit


def version() -> tuple[int, ...]:
    """git's version, e.g. (2, 39, 5)."""
    out = run(["version"], Path.cwd()).stdout.split()
    numbers = out[2].split(".") if len(out) > 2 else []
    return tuple(int(n) for n in numbers if n.isdigit())
