"""The task pool of the git backend: tasks and claims as refs on a shared remote.

A task is `refs/stigmergy/tasks/<id>`: a commit (empty tree) whose subject names its state
and whose body is the task as JSON; each change is a child commit, so the ref's history is
the task's. A claim is `refs/stigmergy/claims/<id>`: a commit whose body is the owner record.
Every change is one atomic push in which every contended ref names the value it replaces:

- claim: the task pending → active and the claim created (must not exist);
- renew (the heartbeat): the claim moved to a child commit;
- give back, fail: the task back to pending (or failed) and the claim deleted;
- land: the target moved, the task done and the claim deleted (see `land`);
- sweep: a claim unchanged for a lease *on the sweeper's clock* deleted, its task requeued.

An owner whose claim was broken can change nothing: each of its pushes names a claim commit
the server no longer has. docs/distributed.md gives the guarantees and failure modes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stigmergy_cli import (
    atomic,
    backoff,
    claims,
    deps,
    events,
    gitops,
    merge,
    orphans,
    pool,
    tasks,
)
from stigmergy_cli.claims import NothingClaimable
from stigmergy_cli.config import Config
from stigmergy_cli.errors import Conflict, InvalidInput, StigmergyError, TaskNotFound
from stigmergy_cli.locks import NotOwner
from stigmergy_cli.oslock import FileLock
from stigmergy_cli.paths import Layout
from stigmergy_cli.remote import (
    CLAIMS,
    MUST_NOT_EXIST,
    RESULTS,
    SALVAGE,
    TASKS,
    PushResult,
    Remote,
    RemoteUnreachable,
    Update,
)
from stigmergy_cli.store import TaskRecord
from stigmergy_cli.tasks import Task

_SUBJECT = "stigmergy task "
_LOOSE_REFS_MAX = 1000  # loose cache refs before they are packed
_CLAIM_LOOKS = 3  # fetches per claim at most: after a lost race the view is stale
_LAND_RETRIES = 12  # the target moved under us: merge again onto its new tip
_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 2.0
# How long a claim's last push (landing, giving back, failing) keeps trying through dropped
# connections: a server restarting, or over its limit (past 32 connections, git daemon kills
# one from an address that holds several). Far shorter than a lease; fencing covers the rest.
_SETTLE_RETRY_WINDOW = 5.0
_SETTLE_BACKOFF_FIRST = 0.25


@dataclass(frozen=True)
class RemoteClaim:
    """A claim ref as last fetched: its commit, and the owner record it carries."""

    task_id: str
    commit: str
    owner: dict[str, Any]

    @property
    def token(self) -> str:
        return str(self.owner.get("token", ""))

    @property
    def agent(self) -> str:
        return str(self.owner.get("agent", "?"))


@dataclass
class Held:
    """A task this agent claimed on the remote: the commits its next pushes must name."""

    task: Task
    task_commit: str
    claim_commit: str
    owner: dict[str, Any]  # the record our claim commits carry; its token is our fence
    lost: bool = False
    dependants: tuple[str, ...] | None = None

    @property
    def token(self) -> str:
        return str(self.owner["token"])


@dataclass
class SweepAction:
    kind: str  # reclaimed (back to pending) | failed (out of attempts)
    task: str
    reason: str
    agent: str | None = None


@dataclass
class RemoteSweep:
    actions: list[SweepAction] = field(default_factory=list)
    watching: int = 0  # claims seen, not yet stale

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": "git",
            "watching": self.watching,
            "actions": [a.__dict__ for a in self.actions],
        }


class RemotePool:
    """The pool on the remote named in the config, seen through a local cache of its refs."""

    def __init__(self, layout: Layout, cfg: Config) -> None:
        if not cfg.remote:
            raise StigmergyError("the git backend needs `remote` in config.yaml")
        self.layout = layout
        self.cfg = cfg
        self.remote = Remote(layout.root, cfg.remote, cfg.target)
        self._empty_tree: str | None = None

    # -- reading ---------------------------------------------------------------------------

    @property
    def _fetch_stamp(self) -> Path:
        return self.layout.cache / f"remote-{self.remote.name}.fetched"

    def _fetched_at(self) -> float:
        try:
            return self._fetch_stamp.stat().st_mtime
        except OSError:
            return 0.0

    def _cache_lock(self) -> FileLock:
        """Serializes writes to the cache refs: agents sharing a clone fetch into the same
        refs, and git refuses a ref update that races another ("cannot lock ref")."""
        return FileLock(self.layout.locks / ".remote-cache.lock")

    def refresh(self, max_age: float | None = None) -> None:
        """Fetch the remote's refs unless the cache is younger than `max_age` seconds."""
        if max_age is not None and time.time() - self._fetched_at() < max_age:
            return
        asked = time.time()
        with self._cache_lock():
            if self._fetched_at() >= asked:
                return  # another agent of this clone fetched while we waited: use that
            self.remote.fetch()
            with contextlib.suppress(OSError):
                self.layout.cache.mkdir(parents=True, exist_ok=True)
                atomic.write_bytes(self._fetch_stamp, b"", durable=False)
            self._pack_cache_refs()

    def _pack_cache_refs(self) -> None:
        """Pack the cache's refs once thousands are loose files (the cache lock held).

        git reads every loose ref on a fetch: with 13,000 of them a fetch that changed
        nothing took 3.8 s, and 0.3 s once packed. New updates are loose again, few at a time.
        """
        loose = self.layout.root / ".git" / self.remote.cache / "tasks"
        try:
            with os.scandir(loose) as entries:
                many = sum(1 for _ in itertools.islice(entries, _LOOSE_REFS_MAX)) >= _LOOSE_REFS_MAX
        except OSError:
            return  # nothing loose, or not a plain .git directory: git knows best
        if many:
            gitops.run(["pack-refs", "--all"], self.layout.root, check=False)

    def _refs(self, kind: str) -> Iterable[tuple[str, str, str, str]]:
        """(name, commit, subject, body) of each cached ref under `kind` (tasks, claims)."""
        prefix = f"{self.remote.cache}{kind}/"
        out = gitops.run(
            [
                "for-each-ref",
                "--format=%(refname)%00%(objectname)%00%(contents:subject)%00%(contents:body)%00",
                prefix,
            ],
            self.layout.root,
        ).stdout
        parts = out.split("\0")
        for k in range(0, len(parts) - 4, 4):
            name = parts[k].lstrip("\n").removeprefix(prefix)
            yield name, parts[k + 1], parts[k + 2], parts[k + 3]

    @property
    def _parsed_path(self) -> Path:
        return self.layout.cache / f"remote-{self.remote.name}.tasks.jsonl"

    def records(self) -> tuple[dict[str, tuple[TaskRecord, str]], list[str]]:
        """Every cached task as (record, commit), and the refs that could not be read.

        A task commit never changes, so what it parsed to is kept by commit id: a listing
        reads the ref names and commits (one `for-each-ref`), and only commits not seen
        before are read (one `cat-file --batch`) and validated.
        """
        prefix = f"{self.remote.cache}tasks/"
        listing = gitops.run(
            ["for-each-ref", "--format=%(objectname) %(refname)", prefix], self.layout.root
        ).stdout
        refs = []
        for line in listing.splitlines():
            sha, _, ref = line.partition(" ")
            refs.append((ref.removeprefix(prefix), sha))
        known = self._load_parsed()
        parsed: dict[str, tuple[Task, str]] = {}
        for name, sha in refs:
            entry = known.get(sha)
            with contextlib.suppress(TypeError, ValueError, IndexError):
                if entry is not None and (task := Task.from_native(entry[1])).id == name:
                    parsed[sha] = (task, str(entry[0]))
        missing = [sha for _, sha in refs if sha not in parsed]
        messages = gitops.commit_messages(self.layout.root, missing) if missing else {}
        found: dict[str, tuple[TaskRecord, str]] = {}
        problems = []
        for name, sha in refs:
            if sha not in parsed:
                subject, _, body = messages.get(sha, "").partition("\n\n")
                try:
                    parsed[sha] = _parse_task(name, subject, body)
                except (InvalidInput, ValueError) as exc:
                    problems.append(f"{TASKS}{name}: {exc}")
                    continue
            task, state = parsed[sha]
            found[name] = (TaskRecord(task, state, self.layout), sha)
        with contextlib.suppress(OSError):
            self._remember_parsed(parsed, [sha for sha in missing if sha in parsed], len(known))
        return found, problems

    def _load_parsed(self) -> dict[str, list[Any]]:
        """sha → [state, task as Task.to_native()], from an append-only file of JSON lines
        (a torn or foreign line is skipped: that commit is read from git again)."""
        known: dict[str, list[Any]] = {}
        try:
            raw = self._parsed_path.read_bytes()
        except OSError:
            return known
        for line in raw.splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str):
                    known[entry[0]] = entry[1:]
        return known

    def _remember_parsed(
        self, parsed: dict[str, tuple[Task, str]], new: list[str], lines: int
    ) -> None:
        """Append what the new commits parsed to; rewrite the file once most of it is about
        commits no ref points at any more. A listing of 10,000 tasks then writes a line per
        changed task, not the whole file."""

        def line(sha: str) -> str:
            task, state = parsed[sha]
            return json.dumps([sha, state, task.to_native()], separators=(",", ":")) + "\n"

        if lines + len(new) > 2 * len(parsed) + 64:
            text = "".join(line(sha) for sha in parsed)
            atomic.write_bytes(self._parsed_path, text.encode(), durable=False)
        elif new:
            self.layout.cache.mkdir(parents=True, exist_ok=True)
            with open(self._parsed_path, "a", encoding="utf-8") as out:
                out.write("".join(line(sha) for sha in new))  # one write: appends do not mix

    def claims(self) -> dict[str, RemoteClaim]:
        found = {}
        for name, commit, _, body in self._refs("claims"):
            try:
                owner = json.loads(body)
            except ValueError:
                owner = {}
            found[name] = RemoteClaim(name, commit, owner if isinstance(owner, dict) else {})
        return found

    def get(self, task_id: str) -> tuple[TaskRecord, str]:
        found, _ = self.records()
        if task_id not in found:
            raise TaskNotFound(f"no task {task_id!r} on remote {self.remote.name!r}")
        return found[task_id]

    # -- writing ---------------------------------------------------------------------------

    def _tree(self) -> str:
        if self._empty_tree is None:
            self._empty_tree = gitops.run(
                ["hash-object", "-w", "-t", "tree", "--stdin"], self.layout.root, stdin=""
            ).stdout.strip()
        return self._empty_tree

    def _commit(self, message: str, parent: str | None) -> str:
        root = self.layout.root
        return gitops.commit_tree(
            root, self._tree(), [parent] if parent else [], message, gitops.identity(root)
        )

    def _task_commit(self, task: Task, state: str, parent: str | None) -> str:
        return self._commit(_task_message(task, state), parent)

    def _new_task_commits(self, batch: list[Task]) -> dict[str, str]:
        """A first (pending) commit for each task of `batch`, made by two git processes
        whatever its size: `commit-tree` costs one process per commit, which made an import
        of 1,000 tasks take seconds. The objects are written by `git hash-object -t commit`,
        which checks their format as commit-tree would."""
        if len(batch) < 4:
            return {task.id: self._task_commit(task, "pending", None) for task in batch}
        root = self.layout.root
        ident = gitops.run([*gitops.identity(root), "var", "GIT_COMMITTER_IDENT"], root)
        header = f"tree {self._tree()}\nauthor {ident.stdout.strip()}\ncommitter "
        header += f"{ident.stdout.strip()}\n\n"
        self.layout.cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.layout.cache, prefix=".commits-") as tmp:
            paths = []
            for k, task in enumerate(batch):
                path = Path(tmp) / str(k)
                path.write_bytes((header + _task_message(task, "pending")).encode())
                paths.append(str(path))
            made = gitops.run(
                ["hash-object", "-t", "commit", "-w", "--stdin-paths"],
                root,
                stdin="\n".join(paths) + "\n",
            ).stdout.split()
        if len(made) != len(batch):
            raise StigmergyError(f"git made {len(made)} commits for {len(batch)} tasks")
        return {task.id: commit for task, commit in zip(batch, made, strict=True)}

    def add(self, task: Task) -> TaskRecord:
        """Publish a new task (refused if the id exists, or a dependency does not)."""
        (record,) = self.add_many([task])
        return record

    def add_many(self, batch: list[Task]) -> list[TaskRecord]:
        """Publish new tasks in one atomic push: all of them, or none (an id taken, or a
        dependency that is neither on the remote nor in the batch)."""
        self.refresh()
        found, _ = self.records()
        ids = {task.id for task in batch}
        if len(ids) != len(batch):
            raise InvalidInput("the same task id appears twice")
        for task in batch:
            if task.id in found:
                raise Conflict(f"task {task.id!r} already exists on remote {self.remote.name!r}")
            missing = [dep for dep in task.depends_on if dep not in found and dep not in ids]
            if missing:
                raise InvalidInput(f"task {task.id!r}: unknown dependency {missing[0]!r}")
        # Tasks on the remote depend only on tasks that existed before them: no cycle there.
        deps.check_acyclic({t.id: t for t in batch}, lambda _tid: None)
        commits = self._new_task_commits(batch)
        try:
            pushed = self.remote.create_all(TASKS, commits)
        except RemoteUnreachable:  # the outcome is unknown: read it back (see _push)
            first, commit = next(iter(commits.items()))
            if self.remote.ref(TASKS + first) != commit:
                raise
            pushed = PushResult({})
        if not pushed.ok:
            taken = sorted(
                ref.removeprefix(TASKS)
                for ref, why in pushed.rejected.items()
                if "atomic" not in why  # the others were refused because of these
            )
            raise Conflict(
                f"task {(taken or sorted(ids))[0]!r} already exists on remote {self.remote.name!r}"
            )
        self._note({TASKS + tid: commit for tid, commit in commits.items()})
        return [TaskRecord(task, "pending", self.layout) for task in batch]

    def _push(self, updates: list[Update], *, retry_for: float = 0.0) -> PushResult:
        """Push `updates` (all or none). If the connection broke mid-push, the outcome is
        unknown: it is read back from the remote rather than pushed again blindly. The first
        update's new value is unique to this push, so it says whether the push was applied.

        `retry_for`: seconds to keep trying after a broken connection, with backoff; only
        for a push whose first update names the value it expects. A try after one that was
        applied is then refused (the push is atomic), and the read-back says it was ours.
        """
        started = time.monotonic()
        tries = 0
        while True:
            tries += 1
            try:
                result = self.remote.push(updates)
            except RemoteUnreachable:
                if self._applied(updates[0]):
                    return PushResult({})
                if time.monotonic() - started >= retry_for:
                    raise
                time.sleep(backoff.delay(tries, _SETTLE_BACKOFF_FIRST, _BACKOFF_MAX))
                continue
            if not result.ok and tries > 1 and self._applied(updates[0]):
                return PushResult({})  # an earlier try was applied after all
            return result

    def _applied(self, update: Update) -> bool:
        """Whether the remote holds `update` now (False when it cannot be asked)."""
        try:
            return self.remote.ref(update.ref) == update.new
        except RemoteUnreachable:
            return False

    def _note(self, pushed: dict[str, str | None]) -> None:
        """Record in the cache what a push that succeeded changed (None: deleted), so the
        next listing shows it without another fetch. One git process for them all."""
        lines = []
        for ref, commit in pushed.items():
            cached = ref if ref.startswith("refs/stigmergy-cache/") else self.remote.cache_ref(ref)
            lines.append(f"delete {cached}" if commit is None else f"update {cached} {commit}")
        with self._cache_lock():
            gitops.run(["update-ref", "--stdin"], self.layout.root, stdin="\n".join(lines) + "\n")
            if len(lines) > 100:  # an import: maybe thousands of new loose refs
                self._pack_cache_refs()

    # -- claiming --------------------------------------------------------------------------

    def _owner(
        self, agent: str, attempt: int, now: float, lease: float | None = None
    ) -> dict[str, Any]:
        return {
            "agent": agent,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "token": f"{attempt}.{os.urandom(6).hex()}",
            "claimed_at": now,
            "renewed_at": now,
            "lease": lease or self.cfg.lease,
        }

    def _claim_commit(self, task_id: str, owner: dict[str, Any], parent: str | None) -> str:
        body = json.dumps(owner, sort_keys=True)
        return self._commit(f"stigmergy claim {task_id}\n\n{body}\n", parent)

    def claim_best(
        self,
        agent: str,
        *,
        role: str | None,
        now: float,
        can_take: Callable[[Task], bool] = lambda _task: True,
        wake_threshold: float | None = None,
        refresh: bool = True,
        lease: float | None = None,
    ) -> Held:
        """Claim the best ready task for `agent`; NothingClaimable if there is none. `lease`:
        how long the claim may go unrenewed (default agent.lease).

        A lost race means the fetched view is stale (others claimed meanwhile), so before the
        next push the agent looks again: a fetch costs less than pushes that are bound to
        lose. The last look tries every candidate it has.
        """
        candidates: list[pool.Entry] = []
        for look in range(_CLAIM_LOOKS):
            if refresh or look:
                self.refresh()
            found, _ = self.records()
            candidates = self._candidates(found, agent, role, now, can_take)
            if wake_threshold is not None and candidates and candidates[0].score < wake_threshold:
                raise NothingClaimable(
                    f"best task scores {candidates[0].score:.2f}, below the wake threshold"
                )
            for entry in candidates:
                task = entry.record.task
                held = self._take(task, found[task.id][1], agent, now, lease)
                if held is not None:
                    held.dependants = tuple(
                        r.task.id
                        for r, _ in found.values()
                        if r.state == "pending" and task.id in r.task.depends_on
                    )
                    events.append(
                        self.layout.events,
                        events.CLAIMED,
                        now,
                        task=task.id,
                        agent=agent,
                        token=held.token,
                        remote=self.remote.name,
                    )
                    return held
                if look < _CLAIM_LOOKS - 1:
                    break  # stale: look again
            else:
                break  # every candidate tried
        raise NothingClaimable(
            "no task is ready on the remote" if not candidates else "every ready task was taken"
        )

    def _candidates(
        self,
        found: dict[str, tuple[TaskRecord, str]],
        agent: str,
        role: str | None,
        now: float,
        can_take: Callable[[Task], bool],
    ) -> list[pool.Entry]:
        """Ready, unclaimed tasks `agent` may take, best first."""
        taken = self.claims()
        entries = pool.build([r for r, _ in found.values()], now, self.cfg.pressure)
        # Best score first, then oldest; among equals each agent has its own order, so agents
        # racing for an imported batch spread out instead of all pushing for the same task.
        entries.sort(
            key=lambda e: (
                -e.score,
                e.record.task.created_at or 0.0,
                zlib.crc32(f"{agent}/{e.record.task.id}".encode()),
            )
        )
        return [
            e
            for e in entries
            if e.ready
            and e.record.task.id not in taken
            and claims.eligible(e.record.task, role)
            and can_take(e.record.task)
        ]

    def claim_named(
        self,
        task_id: str,
        agent: str,
        now: float,
        lease: float | None = None,
        role: str | None = None,
    ) -> Held:
        """Claim one particular task, or say exactly why it cannot be claimed (as the local
        backend does: its state and holder, its role, what it waits for)."""
        self.refresh()
        found, _ = self.records()
        if task_id not in found:
            raise TaskNotFound(f"no task {task_id!r} on remote {self.remote.name!r}")
        record, commit = found[task_id]
        if record.state != "pending":
            holder = self.claims().get(task_id)
            by = f" by agent {holder.agent!r}" if holder else ""
            raise NothingClaimable(f"task {task_id!r} is {record.state}{by}, not pending")
        if not claims.eligible(record.task, role):
            raise NothingClaimable(f"task {task_id!r} is for role {record.task.role!r}")
        entries = pool.build([r for r, _ in found.values()], now, self.cfg.pressure)
        blocked = next(e.blocked for e in entries if e.record.task.id == task_id)
        if blocked is not None:
            raise NothingClaimable(f"task {task_id!r} {blocked}")
        held = self._take(record.task, commit, agent, now, lease)
        if held is None:
            raise NothingClaimable(f"task {task_id!r} was just claimed by another agent")
        return held

    def _take(
        self, task: Task, task_commit: str, agent: str, now: float, lease: float | None
    ) -> Held | None:
        owner = self._owner(agent, task.attempts + 1, now, lease)
        claim = self._claim_commit(task.id, owner, None)
        active = task.evolve(updated_at=now)
        moved = self._task_commit(active, "active", task_commit)
        result = self._push(
            [
                Update(TASKS + task.id, moved, task_commit),
                Update(CLAIMS + task.id, claim, MUST_NOT_EXIST),
            ]
        )
        if not result.ok:
            return None
        self._note({TASKS + task.id: moved, CLAIMS + task.id: claim})
        return Held(active, moved, claim, owner)

    def renew(self, held: Held, now: float) -> bool:
        """Push a new claim commit on top of ours: False (and `lost`) if the claim was broken."""
        owner = dict(held.owner, renewed_at=now)
        commit = self._claim_commit(held.task.id, owner, held.claim_commit)
        if not self._push([Update(CLAIMS + held.task.id, commit, held.claim_commit)]).ok:
            held.lost = True
            return False
        held.claim_commit = commit
        held.owner = owner
        return True

    def transition(
        self,
        task_id: str,
        *,
        allowed: tuple[str, ...],
        to_state: str,
        change: Callable[[Task], Task],
        now: float,
        verb: str,
    ) -> TaskRecord:
        """`task cancel` and `task retry`: a task in one of the `allowed` states (never one an
        agent holds) changed and moved, expected at the commit just fetched."""
        self.refresh()
        record, commit = self.get(task_id)
        if record.state not in allowed or record.state == "active":
            allowed = tuple(a for a in allowed if a != "active")
            raise Conflict(
                f"cannot {verb} task {task_id!r}: it is {record.state} "
                f"(only {' or '.join(allowed)} tasks can be)"
            )
        task = change(record.task).evolve(updated_at=now)
        moved = self._task_commit(task, to_state, commit)
        if not self._push([Update(TASKS + task_id, moved, commit)]).ok:
            raise Conflict(f"task {task_id!r} changed on the remote meanwhile; look again")
        self._note({TASKS + task_id: moved})
        return TaskRecord(task, to_state, self.layout)

    def refund(
        self, task_id: str, agent: str, finished_at: float, count: int, now: float, why: str
    ) -> bool:
        """claims.refund, on the remote: False if the task moved on meanwhile."""

        def change(task: Task) -> Task:
            refunded = claims.uncount(task, agent, finished_at, count, now, why)
            if refunded is None:
                raise Conflict(f"task {task_id!r} moved on")
            return refunded

        try:
            self.transition(
                task_id,
                allowed=("pending", "failed"),
                to_state="pending",
                change=change,
                now=now,
                verb="refund",
            )
        except Conflict:
            return False
        events.append(
            self.layout.events, events.RELEASED, now, task=task_id, agent=agent, reason=why
        )
        return True

    # -- claims held across processes (agents that drive themselves) ----------------------

    def _held_path(self, agent: str, task_id: str) -> Path:
        return self.layout.cache / "remote-held" / agent / f"{task_id}.json"

    def remember(self, agent: str, held: Held) -> None:
        """Keep what the next command of a self-driving agent needs to push for this claim."""
        path = self._held_path(agent, held.task.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "task": held.task.to_dict(),
            "task_commit": held.task_commit,
            "claim_commit": held.claim_commit,
            "owner": held.owner,
        }
        atomic.write_json(path, doc)

    def recall(self, agent: str, task_id: str, token: str | None) -> Held:
        """The claim `agent` took on `task_id` from this clone; NotOwner if it has none."""
        try:
            doc = json.loads(self._held_path(agent, task_id).read_bytes())
            held = Held(
                tasks.task_from_dict(doc["task"], expected_id=task_id),
                str(doc["task_commit"]),
                str(doc["claim_commit"]),
                dict(doc["owner"]),
            )
            held.token  # noqa: B018 - a record without a token is no claim of ours
        except (OSError, ValueError, KeyError, TypeError, InvalidInput) as exc:
            raise NotOwner(
                f"agent {agent!r} holds no claim on {task_id!r} from this clone"
            ) from exc
        if token is not None and token != held.token:
            raise NotOwner(f"token {token!r} is not the one on {task_id!r}")
        return held

    def forget(self, agent: str, task_id: str) -> None:
        self._held_path(agent, task_id).unlink(missing_ok=True)

    def held_by(self, agent: str) -> list[Held]:
        folder = self.layout.cache / "remote-held" / agent
        found = []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            with contextlib.suppress(NotOwner):
                found.append(self.recall(agent, path.stem, None))
        return found

    # -- giving back -----------------------------------------------------------------------

    def _settle(self, held: Held, task: Task, state: str, extra: list[Update]) -> None:
        """Move our task to `state` and drop our claim in one push, with `extra` updates;
        NotOwner if the push was refused (the claim is not ours, or an extra lease failed)."""
        commit = self._task_commit(task, state, held.task_commit)
        result = self._push(
            [
                Update(TASKS + task.id, commit, held.task_commit),
                Update(CLAIMS + task.id, None, held.claim_commit),
                *extra,
            ],
            retry_for=_SETTLE_RETRY_WINDOW,  # the work is done: a blip must not undo it
        )
        if not result.ok:
            held.lost = True
            raise NotOwner(f"the claim on {task.id!r} is no longer ours")
        notes: dict[str, str | None] = {TASKS + task.id: commit, CLAIMS + task.id: None}
        for update in extra:
            if update.ref == f"refs/heads/{self.cfg.target}":
                notes[self.remote.cached_target] = update.new
            elif update.ref.startswith(TASKS):
                notes[update.ref] = update.new
        self._note(notes)

    def give_back(
        self, held: Held, agent: str, why: str | None, now: float, *, skip: bool
    ) -> TaskRecord:
        """Back to pending unfinished; `skip` counts it as passed over (skip_count)."""
        task = held.task
        if skip:
            task = task.evolve(skip_count=task.skip_count + 1)
        task = task.evolve(updated_at=now)
        self._settle(held, task, "pending", [])
        events.append(
            self.layout.events, events.RELEASED, now, task=task.id, agent=agent, reason=why
        )
        return TaskRecord(task, "pending", self.layout)

    def fail(self, held: Held, agent: str, why: str | None, now: float) -> TaskRecord:
        """Count a failed attempt: back to pending, or failed after max_attempts."""
        task, state = _after_failure(held.task, self.cfg, now, why, agent)
        self._settle(held, task, state, [])
        events.append(self.layout.events, events.FAILED, now, task=task.id, agent=agent, reason=why)
        return TaskRecord(task, state, self.layout)

    # -- landing ---------------------------------------------------------------------------

    def land(
        self,
        held: Held,
        agent: str,
        result: str | None,
        base: str | None,
        now: float,
        log: str | None = None,
    ) -> merge.Outcome:
        """Merge `result` into the remote target and finish the task, in one atomic push.

        The push moves the target (expected: the tip we merged onto), marks the task done
        (expected: its active commit) and deletes our claim (expected: our last claim commit),
        so a broken claim lands nothing. The first try merges onto the target as last
        fetched; if only the target moved since, fetch and merge again.
        """
        task = held.task
        for attempt in range(_LAND_RETRIES):
            tip = self.target_tip()
            if tip is None:
                self.refresh()
                tip = self.target_tip()
                if tip is None:
                    raise StigmergyError(
                        f"remote {self.remote.name!r} has no branch {self.cfg.target!r}"
                    )
            outcome = self._merge_onto(tip, task, result, base)
            updates = [] if result is None else [Update(RESULTS + task.id, result, None)]
            if outcome.kind == "merged" and outcome.merge_commit != tip:
                updates.append(Update(f"refs/heads/{self.cfg.target}", outcome.merge_commit, tip))
            if outcome.kind == "conflict":
                conflict_id = merge.conflict_task_id(task.id)
                outcome = merge.Outcome(
                    "conflict", task.id, result, conflict_task=conflict_id, files=outcome.files
                )
                conflict = _conflict_task(task, outcome, self.cfg, now)
                if conflict_id not in self.records()[0]:  # else made by an earlier attempt
                    updates.append(
                        Update(
                            TASKS + conflict_id,
                            self._task_commit(conflict, "pending", None),
                            MUST_NOT_EXIST,
                        )
                    )
            if outcome.merged:
                updates += self._originals_merged(task, outcome, now)
            done = task.evolve(updated_at=now, result=merge.result_doc(outcome, agent, now, log))
            try:
                self._settle(held, done, "done", updates)
            except NotOwner:
                self.refresh()
                claims_now = self.claims()
                mine = claims_now.get(task.id)
                if mine is None or mine.commit != held.claim_commit:
                    return self._salvage(held, agent, result, now)
                held.lost = False
                # The target moved: merge again, after a wait that spreads the machines out.
                time.sleep(backoff.delay(attempt + 1, _BACKOFF_FIRST, _BACKOFF_MAX, spread=0.5))
                continue
            events.append(
                self.layout.events,
                events.CONFLICT if outcome.kind == "conflict" else events.MERGED,
                now,
                task=task.id,
                agent=agent,
                outcome=outcome.kind,
                commit=outcome.merge_commit or result,
                conflict_task=outcome.conflict_task,
                remote=self.remote.name,
            )
            return outcome
        raise StigmergyError(
            f"target {self.cfg.target!r} on remote {self.remote.name!r} kept moving; "
            f"gave up landing {task.id!r} (its result is kept at {RESULTS}{task.id})"
        )

    def _originals_merged(self, task: Task, outcome: merge.Outcome, now: float) -> list[Update]:
        """A resolved conflict lands: the task it resolved (and so on up a chain of conflicts)
        is merged too, in the same push, each expected at the commit we last fetched."""
        if merge.conflict_of(task) is None:
            return []  # an ordinary task: no need to read the pool on every landing
        found, _ = self.records()
        updates = []
        current = task
        while (section := merge.conflict_of(current)) is not None:
            original = found.get(section["task"])
            if original is None:
                break
            record, commit = original
            result = dict(record.task.result or {})
            result.update(merged=True, merge_commit=outcome.merge_commit, merged_by=current.id)
            moved = self._task_commit(
                record.task.evolve(result=result, updated_at=now), record.state, commit
            )
            updates.append(Update(TASKS + record.task.id, moved, commit))
            current = record.task
        return updates

    def fetch_result(self, task_id: str) -> None:
        """Bring another machine's result commit for `task_id` here (a conflict task merges
        it into the worktree)."""
        with self._cache_lock():
            self.remote.fetch([RESULTS + task_id])

    def target_tip(self) -> str | None:
        return gitops.ref_commit(self.layout.root, self.remote.cached_target)

    def _merge_onto(
        self, tip: str, task: Task, result: str | None, base: str | None
    ) -> merge.Outcome:
        root = self.layout.root
        if result is None:
            return merge.Outcome("unchanged", task.id, None, merge_commit=tip)
        if base != tip:
            base = gitops.merge_base(root, tip, result)
        if base == result:
            return merge.Outcome("unchanged", task.id, result, merge_commit=tip)
        if base == tip:
            return merge.Outcome("merged", task.id, result, merge_commit=result)
        merged = gitops.merge_tree(root, tip, result, base=base)
        if not merged.clean:
            return merge.Outcome("conflict", task.id, result, files=merged.conflicts)
        message = f"Merge {task.id}: {task.title}\n"
        new = gitops.commit_tree(root, merged.tree, [tip, result], message, gitops.identity(root))
        return merge.Outcome("merged", task.id, result, merge_commit=new)

    def _salvage(self, held: Held, agent: str, result: str | None, now: float) -> merge.Outcome:
        """Our claim was broken: keep the work under a salvage ref, here and on the remote."""
        outcome = merge.salvage(self.layout, held.task.id, agent, held.token, result, now)
        if result is not None:
            with contextlib.suppress(StigmergyError):  # kept here whatever the network does
                self._push([Update(f"{SALVAGE}{held.task.id}/{held.token}", result, None)])
        held.lost = True
        return outcome

    # -- the sweep -------------------------------------------------------------------------

    @property
    def _seen_path(self) -> Path:
        return self.layout.cache / f"remote-{self.remote.name}.claims.json"

    def sweep(self, now: float, *, dry_run: bool = False) -> RemoteSweep:
        """Break claims that have not changed for a lease, as this machine's clock saw them.

        Only this sweeper's own observations count: when it first saw each claim commit.
        A holder's clock, or another machine's, cannot make a live claim look stale.
        """
        report = RemoteSweep()
        if not dry_run:  # this machine's part: executors whose agents are gone from it
            for agent, killed in orphans.stop_all_abandoned(self.layout):
                why = killed if isinstance(killed, str) else f"killed pid {killed}"
                report.actions.append(SweepAction("stopped", agent, why, agent))
        self.refresh()
        found, _ = self.records()
        current = self.claims()
        seen = self._load_seen()
        for task_id, claim in sorted(current.items()):
            first = seen.get(task_id)
            if first is None or first[0] != claim.commit:
                seen[task_id] = (claim.commit, now)
                report.watching += 1
                continue
            lease = _as_float(claim.owner.get("lease"), self.cfg.lease)
            if now - first[1] <= lease:
                report.watching += 1
                continue
            why = f"claim unchanged for {now - first[1]:.0f}s (lease {lease:g}s)"
            if dry_run:
                report.actions.append(SweepAction("reclaimed", task_id, why, claim.agent))
                continue
            action = self._break(task_id, claim, found.get(task_id), why, now)
            if action is not None:
                report.actions.append(action)
                seen.pop(task_id, None)
        for gone in set(seen) - set(current):
            seen.pop(gone)
        # Kept with --dry-run too: what this machine saw is an observation, not a change to
        # the pool, and without it a dry run could never call a claim stale.
        self._save_seen(seen)
        return report

    def _break(
        self,
        task_id: str,
        claim: RemoteClaim,
        found: tuple[TaskRecord, str] | None,
        why: str,
        now: float,
    ) -> SweepAction | None:
        updates = [Update(CLAIMS + task_id, None, claim.commit)]
        kind = "reclaimed"
        if found is not None and found[0].state == "active":
            task, state = _after_failure(found[0].task, self.cfg, now, why, claim.agent)
            kind = "reclaimed" if state == "pending" else "failed"
            moved = self._task_commit(task, state, found[1])
            updates.insert(0, Update(TASKS + task_id, moved, found[1]))  # unique: see _push
        if not self._push(updates).ok:
            return None  # renewed, landed or broken by someone else meanwhile
        events.append(
            self.layout.events, events.SWEPT, now, task=task_id, agent=claim.agent, reason=why
        )
        return SweepAction(kind, task_id, why, claim.agent)

    def _load_seen(self) -> dict[str, tuple[str, float]]:
        try:
            doc = json.loads(self._seen_path.read_bytes())
        except (OSError, ValueError):
            return {}
        seen = {}
        if isinstance(doc, dict):
            for key, value in doc.items():
                if (
                    isinstance(value, list)
                    and len(value) == 2
                    and isinstance(value[0], str)
                    and isinstance(value[1], (int, float))
                ):
                    seen[key] = (value[0], float(value[1]))
        return seen

    def _save_seen(self, seen: dict[str, tuple[str, float]]) -> None:
        self.layout.cache.mkdir(parents=True, exist_ok=True)
        atomic.write_json(self._seen_path, {k: list(v) for k, v in seen.items()}, durable=False)


def _as_float(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and value > 0 else default


def _task_message(task: Task, state: str) -> str:
    body = json.dumps(task.to_dict(), sort_keys=True, separators=(",", ":"))
    return f"{_SUBJECT}{task.id}: {state}\n\n{body}\n"


def _parse_task(name: str, subject: str, body: str) -> tuple[Task, str]:
    if not subject.startswith(f"{_SUBJECT}{name}: "):
        raise ValueError("not a task commit")
    state = subject.rpartition(": ")[2].strip()
    if state not in ("pending", "active", "done", "failed", "cancelled"):
        raise ValueError(f"unknown state {state!r}")
    return tasks.task_from_dict(json.loads(body), expected_id=name), state


def _after_failure(
    task: Task, cfg: Config, now: float, why: str | None, agent: str
) -> tuple[Task, str]:
    """An attempt counted (see claims.requeue_after_failure), recorded as the local backend
    records it."""
    result = {"outcome": "failed", "agent": agent, "reason": why, "finished_at": now}
    return claims.requeue_after_failure(task, cfg, now, result)


def _conflict_task(task: Task, outcome: merge.Outcome, cfg: Config, now: float) -> Task:
    doc = merge.conflict_doc(task, outcome, cfg)
    return tasks.new_task(doc, now=now, created_by="stigmergy")
