"""Finding, creating and opening a repository's .stigmergy/ environment."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from stigmergy_cli import atomic, config, gitops, templates, yamlio
from stigmergy_cli.config import Config
from stigmergy_cli.errors import ConfigError, Conflict, InvalidInput, NotInitialized
from stigmergy_cli.paths import STATES, Layout, template_dir
from stigmergy_cli.store import TaskStore

ROOT_ENV_VAR = "STIGMERGY_ROOT"


@dataclass(frozen=True)
class Environment:
    """An opened environment: where it is, and its validated configuration."""

    layout: Layout
    config: Config

    @property
    def store(self) -> TaskStore:
        return TaskStore(self.layout)


def find_root(cwd: Path, override: str | None) -> Path:
    """The repository root: `override` (--root / STIGMERGY_ROOT) or discovered from `cwd`."""
    if override:
        root = Path(override).expanduser()
        if not root.is_dir():
            raise NotInitialized(f"{ROOT_ENV_VAR} / --root {override!r} is not a directory")
        return root.resolve()
    return gitops.find_repo_root(cwd)


def _runtime_dirs(layout: Layout) -> list[Path]:
    # State directories are listed too: git does not keep empty directories, so a fresh clone
    # of a repository with committed tasks may lack some of them.
    return [
        *(layout.state_dir(s) for s in STATES),
        layout.locks,
        layout.agents,
        layout.workspaces,
        layout.logs,
    ]


def open_environment(
    cwd: Path, override: str | None, environ: Mapping[str, str], now: float | None = None
) -> Environment:
    """Find and open the environment, creating missing runtime directories."""
    layout = Layout(find_root(cwd, override))
    if not layout.env.is_dir():
        raise NotInitialized(f"{layout.root} has no .stigmergy/ yet; run `stigmergy init` there")
    cfg = config.load(layout.config, environ, cache=layout.config_cache, now=now)
    with contextlib.suppress(OSError):  # a read-only checkout can still be listed
        _ensure_runtime(layout)
    return Environment(layout, cfg)


def require_local(env: Environment, what: str) -> None:
    """Refuse the git backend for `what`, which works on the local pool only: acting on a
    pool that agents on other machines never see would mislead."""
    if env.config.backend == "git":
        raise ConfigError(
            f"{what} does not work with the git backend yet (remote {env.config.remote!r}); "
            "see docs/distributed.md for the commands that do"
        )


def _ensure_runtime(layout: Layout) -> list[Path]:
    """Create missing runtime directories and lock files; return what was created."""
    created = []
    for directory in _runtime_dirs(layout):
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            created.append(directory)
    # Lock files are made once, up front, and never deleted (see oslock).
    for lock_file in (layout.integration_lock, layout.publish_lock, layout.publish_gate):
        if not lock_file.exists():
            lock_file.touch()
    return created


@dataclass
class InitReport:
    root: Path
    target: str
    remote: str | None = None
    created: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created)


def initialize(
    cwd: Path, target: str | None, environ: Mapping[str, str], remote: str | None = None
) -> InitReport:
    """Create .stigmergy/ in the repository at `cwd`; idempotent, never overwrites a config.

    With `remote`, agents coordinate through that git remote (the git backend); it is checked
    first (reachable, has the target, takes custom refs and atomic pushes).
    """
    root = gitops.find_repo_root(cwd)
    layout = Layout(root)
    if layout.config.exists():
        existing = config.load(layout.config, environ)
        if target is not None and target != existing.target:
            raise Conflict(
                f"already initialized with target {existing.target!r}; "
                f"edit {layout.config} to change it"
            )
        if remote is not None and remote != existing.remote:
            raise Conflict(
                f"already initialized with backend {existing.backend!r}"
                + (f" (remote {existing.remote!r})" if existing.remote else "")
                + f"; edit {layout.config} to change it"
            )
        chosen = existing.target
        remote = existing.remote if existing.backend == "git" else None
    else:
        chosen = target or gitops.current_branch(root) or "main"
        _check_target(root, chosen)
    if remote is not None:
        from stigmergy_cli import remote_setup  # network checks, only for the git backend

        remote_setup.check(root, remote, chosen)
    report = InitReport(root, chosen, remote)
    for directory in (layout.env, layout.tasks, layout.corrupt):
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            report.created.append(f"{directory.relative_to(root)}/")
    report.created += [f"{d.relative_to(root)}/" for d in _ensure_runtime(layout)]
    backend = {"backend": "git", "remote": remote} if remote else {"backend": "local"}
    rendered = templates.render("config.yaml", {"target": chosen, "remote": "null", **backend})
    config.parse(yamlio.load(rendered), "config template")  # never write a config we reject
    if atomic.create_bytes(layout.config, rendered.encode()):
        report.created.append(str(layout.config.relative_to(root)))
    gitignore = (template_dir() / "gitignore").read_bytes()
    if atomic.create_bytes(layout.gitignore, gitignore):
        report.created.append(str(layout.gitignore.relative_to(root)))
    return report


def _check_target(root: Path, target: str) -> None:
    if not gitops.is_valid_branch_name(root, target):
        raise InvalidInput(f"invalid target branch name {target!r}")
    # A fresh repository's current branch has no commit yet; that is still a fine target.
    if gitops.branch_exists(root, target) or gitops.current_branch(root) == target:
        return
    raise InvalidInput(f"target branch {target!r} does not exist in {root}")
