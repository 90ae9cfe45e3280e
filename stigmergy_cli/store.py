"""The task store: task files under tasks/<state>/, their moves, and a fast listing.

Rules that keep it safe under concurrency and crashes:
- A new id appears by link(2) into pending/, which fails rather than replace (atomic.create_bytes).
- Only the holder of a task's lock directory renames or rewrites its file (locks.exclusive).
- A state change is one rename; the rewrite of the content follows under the same lock.
- Listing trusts a cache of parsed files keyed by (inode, size, mtime, ctime), re-reading any
  file that changed or changed too recently to be told apart (docs/design.md, "List cache").
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stigmergy_cli import __version__, atomic, defaults, events, locks, tasks
from stigmergy_cli.deps import check_acyclic
from stigmergy_cli.errors import Conflict, InvalidInput, StigmergyError, TaskNotFound
from stigmergy_cli.oslock import FileLock
from stigmergy_cli.paths import LIVE_STATES, STATES, Layout
from stigmergy_cli.tasks import Task

_CACHE_VERSION = f"1/{__version__}"
_FEW = 32  # below this many ids, per-id lookups and fsyncs beat directory reads and sync()
MAX_TASK_FILE = 1024 * 1024
_MANIFEST = "manifest.json"
# What tells one version of a file from another without reading it: inode, size, mtime and
# ctime in nanoseconds (see _signature).
Signature = tuple[int, int, int, int]


@dataclass(frozen=True)
class TaskRecord:
    """A task and where it is: its state directory and file."""

    task: Task
    state: str
    layout: Layout
    # The file's stat signature when `task` was read from it, if known (see TaskStore.current).
    stat: Signature | None = field(default=None, compare=False)

    @property
    def path(self) -> Path:
        return self.layout.task_file(self.state, self.task.id)


@dataclass(frozen=True)
class Problem:
    """A file the store could not use, and why (reported, skipped, left for the sweep)."""

    path: Path
    message: str
    # Seen in two states during one scan. Usually a task moving between the two reads (a
    # claim), so never a reason to quarantine anything.
    duplicate: bool = False


@dataclass
class Scan:
    records: list[TaskRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


class TaskStore:
    """Task files of one environment."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        # What this process's last scan of pending/ or active/ trusted: file name -> (stat
        # signature, task). An agent scans pending/ before every claim; files it has seen
        # since need neither the cache file decoded again nor their task rebuilt from it.
        # Only the states of live work (LIVE_STATES): the others grow with the pool's history.
        self._trusted: dict[str, dict[str, tuple[Signature, Task]]] = {}

    # -- reading -------------------------------------------------------------------------

    def locate(self, task_id: str) -> tuple[str, Path] | None:
        """The state and file of `task_id`, or None.

        States are checked in the order tasks flow. Every backward move (retry, release,
        requeue) lands in pending/, checked first, and new ids are published there with
        link(2), so a task moving during this look cannot be missed by an add.
        """
        base = os.fspath(self.layout.tasks)
        for state in STATES:
            path = f"{base}/{state}/{task_id}.yaml"  # plain strings: pathlib costs 10x here
            if os.path.lexists(path):
                return state, Path(path)
        return None

    def states_of(self, task_ids: Collection[str]) -> dict[str, str]:
        """The state of each of `task_ids` that exists; one directory read per state for many."""
        if len(task_ids) <= _FEW:
            found = {}
            for task_id in task_ids:
                located = self.locate(task_id)
                if located is not None:
                    found[task_id] = located[0]
            return found
        # Pending is read first, for the same reason as in `locate`.
        found = {}
        for state in STATES:
            try:
                names = os.listdir(self.layout.state_dir(state))
            except FileNotFoundError:
                continue
            for name in names:
                task_id = name[:-5]
                if name.endswith(".yaml") and task_id in task_ids:
                    found.setdefault(task_id, state)
        return found

    def get(self, task_id: str) -> TaskRecord:
        """Read one task; TaskNotFound if absent, StigmergyError if its file is unreadable."""
        tasks.validate_id(task_id)
        found = self.locate(task_id)
        if found is None:
            raise TaskNotFound(f"no task with id {task_id!r}")
        state, path = found
        try:
            task = tasks.parse_task_text(_read_regular(path), expected_id=task_id)
        except (OSError, InvalidInput) as exc:
            raise StigmergyError(f"{_rel(self.layout, path)} is unreadable: {_why(exc)}") from None
        return TaskRecord(task, state, self.layout)

    def current(self, record: TaskRecord) -> TaskRecord:
        """`record` as its file is now: `record` itself while the file keeps the signature it
        was read with (a claim reuses what its scan read), else the file read again."""
        if record.stat is not None:
            try:
                st = os.lstat(record.path)
            except FileNotFoundError:
                pass
            else:
                if _signature(st) == record.stat:
                    return record
        return self.get(record.task.id)

    def get_many(self, task_ids: Sequence[str]) -> list[TaskRecord]:
        """The tasks among `task_ids` that exist and can be read."""
        found = []
        for task_id in task_ids:
            with contextlib.suppress(StigmergyError):
                found.append(self.get(task_id))
        return found

    def _lookup(self, task_id: str) -> Task | None:
        try:
            return self.get(task_id).task
        except StigmergyError:
            return None

    def scan(self, now: float, states: Sequence[str] = STATES) -> Scan:
        """Every readable task in `states`, plus the files that could not be read.

        Each state has its own cache file, so a claim reads pending/ without loading the
        (ever growing) cache of done/.
        """
        racy_after_ns = int((now - defaults.CACHE_RACY_WINDOW) * 1e9)
        result = Scan()
        seen: dict[str, str] = {}
        for state in states:
            self._scan_state(state, racy_after_ns, result, seen)
        return result

    def _scan_state(
        self, state: str, racy_after_ns: int, result: Scan, seen: dict[str, str]
    ) -> None:
        try:
            entries = list(os.scandir(self.layout.state_dir(state)))
        except FileNotFoundError:
            return
        known = self._trusted.get(state, {})
        cache: dict[str, list[Any]] | None = None  # read at the first file not known
        fresh: dict[str, tuple[Signature, Task, list[Any] | None]] = {}
        changed = False
        for entry in entries:
            name = entry.name
            if name.startswith(".") or not name.endswith(".yaml"):
                continue
            task_id = name[:-5]
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # moved while we looked; it shows up where it went
                continue
            if not stat.S_ISREG(st.st_mode):
                result.problems.append(Problem(Path(entry.path), "not a regular file"))
                continue
            signature = _signature(st)
            task: Task | None = None
            native: list[Any] | None = None
            hit = known.get(name)
            if hit is not None and hit[0] == signature:
                task = hit[1]
            else:
                if cache is None:
                    cache = self._read_cache(state)
                native = _cached(cache.get(name), list(signature))
                task = _from_native(native) if native is not None else None
                if task is not None and task.id != task_id:
                    task = None
            trusted = task is not None
            try:
                if task is None:
                    task = tasks.parse_task_text(_read_regular(entry.path), expected_id=task_id)
                    native = task.to_native()
            except FileNotFoundError:
                continue
            except (OSError, InvalidInput) as exc:
                result.problems.append(Problem(Path(entry.path), _why(exc)))
                continue
            if task_id in seen:
                result.problems.append(
                    Problem(
                        Path(entry.path),
                        f"task {task_id!r} is also in {seen[task_id]}/",
                        duplicate=True,
                    )
                )
                continue
            seen[task_id] = state
            # A file just parsed is cached only once it is too old to change unseen; an entry
            # already trusted (written by the writer itself, or aged) stays. Parsing a file
            # that is still too young changes nothing to write: rewriting the cache for it
            # would cost every scan a write, and could drop what a writer just put there.
            if trusted or st.st_ctime_ns < racy_after_ns:
                fresh[name] = (signature, task, native)
                changed = changed or not trusted
            result.records.append(TaskRecord(task, state, self.layout, signature))
        if state in LIVE_STATES:
            self._trusted[state] = {name: (sig, task) for name, (sig, task, _) in fresh.items()}
        if cache is None:  # every file known: nothing new to write
            return
        # Entries of files that left (a claim moves one out of pending/) are harmless, so the
        # cache is rewritten for them only once they pile up.
        stale = len(cache) - (len(fresh) - sum(1 for name in fresh if name not in cache))
        if changed or stale > max(64, len(fresh) // 4):
            self._write_cache(
                state,
                {
                    name: [*sig, native if native is not None else task.to_native()]
                    for name, (sig, task, native) in fresh.items()
                },
            )

    def _read_cache(self, state: str) -> dict[str, list[Any]]:
        try:
            doc = json.loads(self.layout.task_cache(state).read_bytes())
        except (OSError, ValueError):
            return {}
        # Entries are trusted as validated, so a cache from another version is not used.
        if not isinstance(doc, dict) or doc.get("version") != _CACHE_VERSION:
            return {}
        entries = doc.get("entries")
        return entries if isinstance(entries, dict) else {}

    def _write_cache(self, state: str, entries: dict[str, list[Any]]) -> None:
        # Best effort: a listing must work on a read-only checkout, and the cache is derived.
        with contextlib.suppress(OSError):
            self.layout.cache.mkdir(exist_ok=True)
            data = json.dumps(
                {"version": _CACHE_VERSION, "entries": entries}, separators=(",", ":"), default=str
            )
            atomic.write_bytes(self.layout.task_cache(state), data.encode(), durable=False)

    # -- creating --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _publishing(self) -> Iterator[None]:
        with FileLock(self.layout.publish_lock):
            self._finish_staged_imports()
            yield

    def await_publishing(self) -> None:
        """Return once no import is linking a part of its batch (at once when none is).

        An import links its tasks into pending/ one by one and fills the list cache after
        each part; whoever looks before that parses a half-published part file by file.
        """
        with FileLock(self.layout.publish_gate, shared=True):
            pass

    def add(self, task: Task, now: float, *, id_generated: bool = False) -> TaskRecord:
        """Create a pending task; refuse a taken id, unknown dependencies or a cycle."""
        with self._publishing():
            while id_generated and self.locate(task.id) is not None:
                task = task.evolve(id=tasks.generate_id(task.title))
            self._check_new([task])
            path = self.layout.task_file("pending", task.id)
            if not atomic.create_bytes(path, task.to_yaml().encode()):
                raise Conflict(f"task id {task.id!r} already exists")
        self._log_added(task, now)
        return TaskRecord(task, "pending", self.layout)

    def import_tasks(self, batch: Sequence[Task], now: float) -> list[TaskRecord]:
        """Create many pending tasks, all or none, even across a crash (see `_publish`)."""
        if not batch:
            return []
        with self._publishing():
            ordered = self._check_new(batch)
            self._publish(ordered)
        # One write for the whole batch: agents are starting on it meanwhile.
        events.append_all(
            self.layout.events, [(events.TASK_ADDED, now, _added_fields(t)) for t in ordered]
        )
        return [TaskRecord(t, "pending", self.layout) for t in ordered]

    def _check_new(self, batch: Sequence[Task]) -> list[Task]:
        """Validate new tasks against each other and the store; return them dependencies first."""
        new: dict[str, Task] = {}
        for task in batch:
            if task.id in new:
                raise Conflict(f"task id {task.id!r} appears twice")
            new[task.id] = task
        outside = {dep for task in batch for dep in task.depends_on} - new.keys()
        existing = self.states_of(new.keys() | outside)
        for task in batch:
            if task.id in existing:
                raise Conflict(f"task id {task.id!r} already exists ({existing[task.id]})")
        for task in batch:
            for dep in task.depends_on:
                if dep not in new and dep not in existing:
                    of = f" (needed by {task.id!r})" if len(batch) > 1 else ""
                    raise Conflict(f"unknown dependency {dep!r}{of}")
        check_acyclic(new, self._lookup)
        ordered: list[Task] = []
        placed: set[str] = set()

        def place(task: Task) -> None:
            if task.id in placed:
                return
            placed.add(task.id)
            for dep in task.depends_on:
                if dep in new:
                    place(new[dep])
            ordered.append(task)

        for task in batch:
            place(task)
        return ordered

    def _publish(self, ordered: Sequence[Task]) -> None:
        """Commit the batch to one durable manifest, then link its files into pending/.

        The manifest holds every id and its file's content: a crash before it is written
        leaves nothing visible (the batch is dropped later), a crash after it is rolled
        forward by the next add, import or sweep. A file is on disk before it is linked,
        so no crash leaves a torn task visible. The first _FEW are written and fsynced one
        by one and linked as a part of their own, so that idle agents start on them while
        the rest are written, flushed (with one sync() when they are many) and linked.
        """
        batch_dir = self.layout.staging / f"batch-{os.urandom(6).hex()}"
        batch_dir.mkdir(parents=True)
        files = {task.id: task.to_yaml() for task in ordered}
        try:
            atomic.write_json(batch_dir / _MANIFEST, {"ids": list(files), "files": files})
        except BaseException:
            shutil.rmtree(batch_dir, ignore_errors=True)
            raise
        try:
            for part in (ordered[:_FEW], ordered[_FEW:]):
                if part:
                    self._link_part(batch_dir, part, files, cache=len(ordered) > _FEW)
        except OSError as exc:
            # Agents may be at work on the first part already: the batch cannot be taken
            # back, only finished, as after a crash.
            raise StigmergyError(
                f"the import is committed, but publishing it failed ({_why(exc)}); the next "
                "`stigmergy sweep`, add or import publishes the rest"
            ) from exc
        shutil.rmtree(batch_dir, ignore_errors=True)

    def _link_part(
        self, batch_dir: Path, part: Sequence[Task], files: dict[str, str], *, cache: bool
    ) -> None:
        """Write `part` of a committed batch and flush it, then link it into pending/ and
        cache it. The gate that woken agents wait for (await_publishing) is held for the
        links alone, so that writing one part never holds back agents let in by the last."""
        pending = self.layout.state_dir("pending")
        few = len(part) <= _FEW
        inodes: dict[str, int] = {}
        for task in part:
            with open(batch_dir / f"{task.id}.yaml", "xb") as fh:
                fh.write(files[task.id].encode())
                inodes[task.id] = os.fstat(fh.fileno()).st_ino
                if few:
                    fh.flush()
                    os.fsync(fh.fileno())
        if not few:
            os.sync()  # one flush instead of thousands of fsyncs
        with FileLock(self.layout.publish_gate):
            for task in part:
                staged = batch_dir / f"{task.id}.yaml"
                os.link(staged, pending / f"{task.id}.yaml")
                staged.unlink()  # now, not later: it changes the file's ctime, which is cached
            atomic.fsync_dir(pending)
            if cache:
                self._remember_published(part, inodes)

    def _remember_published(self, part: Sequence[Task], inodes: dict[str, int]) -> None:
        """Put the files just published into the pending list cache.

        We know their content exactly, so the first listing after a large import need not
        parse thousands of files. An entry is recorded only if the file is still the very
        inode we wrote (an agent may already have claimed and rewritten it).
        """
        entries = {}
        pending = os.fspath(self.layout.state_dir("pending"))
        for task in part:
            try:
                st = os.lstat(f"{pending}/{task.id}.yaml")
            except FileNotFoundError:
                continue
            if st.st_ino == inodes[task.id]:
                entries[f"{task.id}.yaml"] = [*_signature(st), task.to_native()]
        cache = self._read_cache("pending")
        cache.update(entries)
        self._write_cache("pending", cache)

    def _roll_forward(self, batch_dir: Path, ids: list[str], files: dict[str, str] | None) -> None:
        """Publish what a crashed import committed (its manifest) and had not yet linked."""
        pending = self.layout.state_dir("pending")
        published = self.states_of(set(ids))  # before the crash, and maybe moved on since
        for task_id in ids:
            if task_id in published:
                continue
            if files is None:  # ids alone, by an earlier version: its files were flushed
                os.link(batch_dir / f"{task_id}.yaml", pending / f"{task_id}.yaml")
            else:
                atomic.create_bytes(pending / f"{task_id}.yaml", files[task_id].encode())
        atomic.fsync_dir(pending)
        shutil.rmtree(batch_dir, ignore_errors=True)

    def recover_imports(self) -> None:
        """Finish or drop imports interrupted by a crash (the sweep calls this), unless an
        add or import is publishing: that one finished them as it began, and waiting for it
        would hold the sweep, and the integration lock it holds, for the whole import."""
        publishing = FileLock(self.layout.publish_lock)
        if publishing.try_acquire():
            try:
                self._finish_staged_imports()
            finally:
                publishing.release()

    def _finish_staged_imports(self) -> None:
        """Roll forward imports that crashed after their manifest; drop the ones before it."""
        try:
            batches = sorted(self.layout.staging.iterdir())
        except FileNotFoundError:
            return
        for batch_dir in batches:
            manifest = _read_manifest(batch_dir)
            if manifest is None:  # never committed, or not ours
                shutil.rmtree(batch_dir, ignore_errors=True)
                continue
            # Kept for the next try if publishing fails (the disk full, say): agents may be
            # at work on part of it, so it can only be finished.
            with contextlib.suppress(OSError):
                self._roll_forward(batch_dir, *manifest)

    def _log_added(self, task: Task, now: float) -> None:
        events.append(self.layout.events, events.TASK_ADDED, now, **_added_fields(task))

    # -- changing --------------------------------------------------------------------------

    def transition(
        self,
        task_id: str,
        *,
        allowed: Sequence[str],
        to_state: str,
        change: Callable[[Task], Task],
        who: str,
        now: float,
        verb: str,
    ) -> TaskRecord:
        """Under the task's lock: check its state is in `allowed`, apply `change`, move it."""
        tasks.validate_id(task_id)
        if self.locate(task_id) is None:
            raise TaskNotFound(f"no task with id {task_id!r}")
        with locks.exclusive(self.layout, task_id, who=who, now=now, lease=defaults.LEASE):
            record = self.get(task_id)
            if record.state not in allowed:
                raise Conflict(
                    f"cannot {verb} task {task_id!r}: it is {record.state} "
                    f"(only {' or '.join(allowed)} tasks can be)"
                )
            return self.write(record, change(record.task).evolve(updated_at=now), to_state)

    def move(self, record: TaskRecord, to_state: str) -> TaskRecord:
        """Move `record` to `to_state`, content unchanged (one rename). Hold its lock."""
        path = self.layout.task_file(to_state, record.task.id)
        atomic.move(record.path, path)
        return TaskRecord(record.task, to_state, self.layout)

    def write(self, record: TaskRecord, task: Task, to_state: str | None = None) -> TaskRecord:
        """Move `record` to `to_state` (one rename), then write `task` there. Hold its lock."""
        path = record.path
        if to_state is not None and to_state != record.state:
            path = self.layout.task_file(to_state, task.id)
            atomic.move(record.path, path)
        atomic.write_bytes(path, task.to_yaml().encode())
        return TaskRecord(task, to_state or record.state, self.layout)


def _read_manifest(batch_dir: Path) -> tuple[list[str], dict[str, str] | None] | None:
    """The ids of a committed batch and their files' content (None for a manifest of ids
    alone); None for a batch without a well-formed manifest."""
    try:
        doc = json.loads((batch_dir / _MANIFEST).read_bytes())
        ids, files = doc["ids"], doc.get("files")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return None
        for task_id in ids:
            tasks.validate_id(task_id)  # a name inside pending/, never a path out of it
        if files is not None and not (
            isinstance(files, dict) and all(isinstance(files.get(i), str) for i in ids)
        ):
            return None
    except (OSError, ValueError, KeyError, TypeError, InvalidInput):
        return None
    return ids, files


def _added_fields(task: Task) -> dict[str, Any]:
    return {"task": task.id, "title": task.title, "priority": task.priority, "by": task.created_by}


def _signature(st: os.stat_result) -> Signature:
    """What tells one version of a file from another without reading it."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _from_native(native: list[Any]) -> Task | None:
    try:
        return Task.from_native(native)
    except (TypeError, ValueError):  # an entry this version did not write: read the file
        return None


def _cached(hit: Any, sig: list[int]) -> list[Any] | None:
    """The cached fields of a file, if the cache entry matches its stat signature."""
    if not isinstance(hit, list) or len(hit) != 5 or hit[:4] != sig or not isinstance(hit[4], list):
        return None
    return hit[4]


def _read_regular(path: Path | str) -> bytes:
    """Read a task file, refusing to follow a symlink planted in its place."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_TASK_FILE:
            raise InvalidInput(
                f"file is {size} bytes, more than a task file may be ({MAX_TASK_FILE})"
            )
        return fh.read()


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def _rel(layout: Layout, path: Path) -> str:
    try:
        return str(path.relative_to(layout.root))
    except ValueError:
        return str(path)
