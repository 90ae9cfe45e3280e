"""Every path under .stigmergy/, derived from the repository root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ENV_DIR = ".stigmergy"

# A task's state is the directory it sits in.
STATES = ("pending", "active", "done", "failed", "cancelled")
LIVE_STATES = ("pending", "active")  # work still to be done; the others grow with history
CORRUPT = "corrupt"  # quarantine for unreadable task files; not a state


@dataclass(frozen=True)
class Layout:
    """Paths of one environment; `root` is the repository's main working tree."""

    root: Path

    @property
    def env(self) -> Path:
        return self.root / ENV_DIR

    @property
    def config(self) -> Path:
        return self.env / "config.yaml"

    @property
    def gitignore(self) -> Path:
        return self.env / ".gitignore"

    @property
    def tasks(self) -> Path:
        return self.env / "tasks"

    def state_dir(self, state: str) -> Path:
        return self.tasks / state

    def task_file(self, state: str, task_id: str) -> Path:
        return self.tasks / state / f"{task_id}.yaml"

    @property
    def corrupt(self) -> Path:
        return self.tasks / CORRUPT

    @property
    def staging(self) -> Path:
        """Batches of an import being published (see store.import_tasks)."""
        return self.tasks / ".staging"

    @property
    def locks(self) -> Path:
        return self.env / "locks"

    def lock_dir(self, task_id: str) -> Path:
        return self.locks / f"{task_id}.lock"

    @property
    def integration_lock(self) -> Path:
        """flock taken to integrate into the target and to break or remove claims."""
        return self.locks / ".integration.lock"

    @property
    def publish_lock(self) -> Path:
        """flock serializing the creation of new task ids (add, import)."""
        return self.locks / ".publish.lock"

    @property
    def publish_gate(self) -> Path:
        """flock an import holds while it links a part of its batch into pending/; idle
        agents woken meanwhile wait for it (see store.import_tasks)."""
        return self.locks / ".publish-gate.lock"

    @property
    def worktree_lock(self) -> Path:
        """flock serializing `git worktree add`, which races on .git/config.lock."""
        return self.locks / ".worktrees.lock"

    def agent_lock(self, agent: str) -> Path:
        """flock held by the one `agent run` process of that id on this machine."""
        return self.locks / f".agent-{agent}.lock"

    def executor_lock(self, agent: str) -> Path:
        """flock inherited by every process of the agent's executor, and held by them alone:
        while it is held, something is still at work in the agent's worktree (orphans.py)."""
        return self.locks / f".exec-{agent}.lock"

    def workspace(self, agent: str) -> Path:
        return self.workspaces / agent

    def task_log(self, task_id: str, attempt: int) -> Path:
        return self.logs / task_id / f"{attempt}.log"

    @property
    def agents(self) -> Path:
        return self.env / "agents"

    def heartbeat(self, agent: str) -> Path:
        return self.agents / f"{agent}.json"

    @property
    def workspaces(self) -> Path:
        return self.env / "workspaces"

    @property
    def logs(self) -> Path:
        return self.env / "logs"

    @property
    def signals(self) -> Path:
        """The pressure field: deposited signals, one JSON object per line."""
        return self.env / "signals.jsonl"

    @property
    def events(self) -> Path:
        return self.env / "events.jsonl"

    @property
    def cache(self) -> Path:
        return self.env / "cache"

    @property
    def config_cache(self) -> Path:
        """config.yaml parsed, keyed by its stat signature (see config.load)."""
        return self.cache / "config.json"

    def task_cache(self, state: str) -> Path:
        """Parsed task files of one state, keyed by their stat signature (see store.scan)."""
        return self.cache / f"tasks-{state}.json"


def template_dir() -> Path:
    """Where the shipped templates are: inside the wheel, or at the top of a source checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "templates"
    if packaged.is_dir():
        return packaged
    return here.parent / "templates"
