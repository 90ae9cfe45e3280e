from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stigmergy_cli import __version__, atomic, locks, tasks
from stigmergy_cli.errors import Conflict, StigmergyError, TaskNotFound
from stigmergy_cli.paths import Layout
from stigmergy_cli.store import TaskRecord, TaskStore
from stigmergy_cli.tasks import Task

from .conftest import left_by_crash

NOW = 1_800_000_000.0


def _new(task_id: str, *deps: str, **fields: object) -> Task:
    return tasks.new_task(
        {"id": task_id, "title": f"Task {task_id}", "depends_on": list(deps), **fields},
        now=NOW,
        created_by="test",
    )


@pytest.fixture
def store(env_root: Path) -> TaskStore:
    return TaskStore(Layout(env_root))


def test_add_then_get_and_locate(store: TaskStore) -> None:
    record = store.add(_new("a"), NOW)
    assert record.state == "pending"
    assert record.path.read_text().startswith("schema: 1\nid: a\n")
    assert store.get("a").task == record.task
    assert store.locate("a") == ("pending", record.path)
    with pytest.raises(TaskNotFound):
        store.get("nope")


def test_duplicate_ids_are_refused_in_any_state(store: TaskStore) -> None:
    store.add(_new("a"), NOW)
    with pytest.raises(Conflict, match="already exists \\(pending\\)"):
        store.add(_new("a"), NOW)
    os.rename(store.layout.task_file("pending", "a"), store.layout.task_file("done", "a"))
    with pytest.raises(Conflict, match="already exists \\(done\\)"):
        store.add(_new("a"), NOW)


def test_generated_ids_are_regenerated_on_collision(store: TaskStore) -> None:
    first = store.add(_new("x-1"), NOW)
    again = store.add(first.task.evolve(), NOW, id_generated=True)
    assert again.task.id != "x-1"
    assert again.task.id.startswith("task-x-1-")


def test_unknown_dependency_and_cycles_are_refused(store: TaskStore) -> None:
    with pytest.raises(Conflict, match="unknown dependency 'ghost'"):
        store.add(_new("a", "ghost"), NOW)
    # A hand-edited file may name a task that does not exist yet; adding it must not loop.
    store.add(_new("b"), NOW)
    path = store.layout.task_file("pending", "b")
    path.write_text(path.read_text().replace("depends_on: []", "depends_on: [c]"))
    with pytest.raises(Conflict, match="dependency cycle: c -> b -> c"):
        store.add(_new("c", "b"), NOW)
    assert store.locate("c") is None


def test_import_is_all_or_nothing(store: TaskStore) -> None:
    store.add(_new("base"), NOW)
    batch = [_new("i1", "base"), _new("i2", "i1"), _new("i3", "missing")]
    before = sorted(p.name for p in store.layout.tasks.rglob("*"))
    with pytest.raises(Conflict, match="unknown dependency 'missing' \\(needed by 'i3'\\)"):
        store.import_tasks(batch, NOW)
    assert sorted(p.name for p in store.layout.tasks.rglob("*")) == before
    with pytest.raises(Conflict, match="appears twice"):
        store.import_tasks([_new("d1"), _new("d1")], NOW)
    with pytest.raises(Conflict, match="cycle"):
        store.import_tasks([_new("c1", "c2"), _new("c2", "c1")], NOW)
    assert sorted(p.name for p in store.layout.tasks.rglob("*")) == before


def test_import_publishes_dependencies_first(store: TaskStore) -> None:
    records = store.import_tasks([_new("late", "early"), _new("early")], NOW)
    assert [r.task.id for r in records] == ["early", "late"]
    assert not store.layout.staging.exists() or not any(store.layout.staging.iterdir())


def _stage(store: TaskStore, name: str, batch: list[Task], *, with_manifest: bool) -> Path:
    batch_dir = store.layout.staging / name
    batch_dir.mkdir(parents=True)
    for task in batch:
        (batch_dir / f"{task.id}.yaml").write_text(task.to_yaml())
    if with_manifest:
        (batch_dir / "manifest.json").write_text(json.dumps({"ids": [t.id for t in batch]}))
    return batch_dir


def test_an_import_that_crashed_after_its_manifest_is_rolled_forward(store: TaskStore) -> None:
    # A manifest of ids alone, as earlier versions wrote it after flushing the staged files.
    store.add(_new("seen-before-crash"), NOW)
    # The crash happened after linking the first task, which an agent has since claimed.
    os.rename(
        store.layout.task_file("pending", "seen-before-crash"),
        store.layout.task_file("active", "seen-before-crash"),
    )
    _stage(store, "batch-1", [_new("seen-before-crash"), _new("not-yet")], with_manifest=True)
    store.add(_new("unrelated"), NOW)
    assert store.locate("not-yet") == ("pending", store.layout.task_file("pending", "not-yet"))
    assert store.locate("seen-before-crash") == (
        "active",
        store.layout.task_file("active", "seen-before-crash"),
    )
    assert not (store.layout.staging / "batch-1").exists()


# Runs `stigmergy <args>` and SIGKILLs itself at the chosen call: the n-th os.link (each
# publishes one task) or the n-th os.replace (the first comes no later than the one that
# commits the manifest).
_DIE_AT = """
import os, signal, sys
from stigmergy_cli.cli import main
call, at = sys.argv[1], int(sys.argv[2])
real = getattr(os, call)
seen = 0
def dying(*args, **kwargs):
    global seen
    if seen == at:
        os.kill(os.getpid(), signal.SIGKILL)
    seen += 1
    return real(*args, **kwargs)
setattr(os, call, dying)
sys.argv = ["stigmergy", *sys.argv[3:]]
main()
"""


@pytest.mark.parametrize(
    ("call", "at"),
    [("replace", 0), ("link", 0), ("link", 1), ("link", 31), ("link", 32), ("link", 99)],
)
def test_an_import_killed_at_any_step_is_all_or_nothing(
    store: TaskStore, tmp_path: Path, call: str, at: int
) -> None:
    batch = {"tasks": [{"id": f"k{i:03d}", "title": f"Killed {i}"} for i in range(100)]}
    source = tmp_path / "batch.json"
    source.write_text(json.dumps(batch))
    args = [sys.executable, "-c", _DIE_AT, call, str(at), "task", "import", str(source)]
    proc = subprocess.run(args, cwd=store.layout.root, capture_output=True, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    visible = sorted(p.name for p in store.layout.state_dir("pending").iterdir())
    assert len(visible) == (0 if call == "replace" else at)  # published one by one
    store.recover_imports()
    published = sorted(p.name for p in store.layout.state_dir("pending").iterdir())
    if call == "replace":  # killed before the commit: nothing, ever
        assert published == []
    else:
        assert published == [f"k{i:03d}.yaml" for i in range(100)]
        for i in range(100):
            assert store.get(f"k{i:03d}").task.title == f"Killed {i}"
    assert list(store.layout.staging.iterdir()) == []


def test_a_committed_import_is_finished_from_its_manifest(store: TaskStore) -> None:
    """The manifest holds every file's content: staged copies lost in a crash do not matter."""
    batch = [_new("m1"), _new("m2", "m1")]
    manifest = {"ids": ["m1", "m2"], "files": {t.id: t.to_yaml() for t in batch}}
    batch_dir = left_by_crash(store.layout, manifest)
    (batch_dir / "m1.yaml").write_text("torn")  # left half-written by the crash
    store.recover_imports()
    assert [store.get(t.id).task for t in batch] == batch
    assert not batch_dir.exists()


@pytest.mark.parametrize(
    "manifest",
    [
        {"ids": ["../outside"], "files": {"../outside": "id: x\n"}},
        {"ids": ["fine"], "files": {"other": "id: other\n"}},
        {"ids": "fine"},
        [],
    ],
    ids=["path-out", "content-missing", "ids-not-a-list", "not-a-mapping"],
)
def test_a_malformed_manifest_is_dropped_not_followed(store: TaskStore, manifest: object) -> None:
    batch_dir = left_by_crash(store.layout, manifest)
    store.recover_imports()
    assert not batch_dir.exists()
    assert list(store.layout.tasks.rglob("*.yaml")) == []
    assert not (store.layout.tasks / "outside.yaml").exists()


def test_an_import_that_crashed_before_its_manifest_leaves_nothing(store: TaskStore) -> None:
    _stage(store, "batch-2", [_new("half")], with_manifest=False)
    store.add(_new("unrelated"), NOW)
    assert store.locate("half") is None
    assert not (store.layout.staging / "batch-2").exists()


CORRUPT = {
    "empty.yaml": b"",
    "truncated.yaml": b"id: truncated\ntitle: [unclosed",
    "notmap.yaml": b"- just\n- a list\n",
    "wrongid.yaml": b"id: other\ntitle: x\n",
    "badutf8.yaml": b"id: badutf8\ntitle: \xff\xfe\n",
    "badfield.yaml": b"id: badfield\ntitle: x\npriority: 900\n",
    "python.yaml": b"id: python\ntitle: !!python/object/apply:os.system ['echo pwned']\n",
}


def test_corrupt_files_are_reported_and_skipped(store: TaskStore) -> None:
    store.add(_new("good"), NOW)
    pending = store.layout.state_dir("pending")
    for name, data in CORRUPT.items():
        (pending / name).write_bytes(data)
    (pending / "adir.yaml").mkdir()
    (pending / "link.yaml").symlink_to(store.layout.task_file("pending", "good"))
    (pending / "huge.yaml").write_bytes(
        b"id: huge\ntitle: x\ndescription: " + b"a" * 2_000_000 + b"\n"
    )
    scan = store.scan(time.time())
    assert [r.task.id for r in scan.records] == ["good"]
    reported = {p.path.name for p in scan.problems}
    assert reported == {*CORRUPT, "adir.yaml", "link.yaml", "huge.yaml"}
    assert all("\n" not in p.message for p in scan.problems)
    with pytest.raises(StigmergyError, match="unreadable"):
        store.get("truncated")


def test_a_task_in_two_states_is_reported_once(store: TaskStore) -> None:
    record = store.add(_new("twice"), NOW)
    (store.layout.state_dir("done") / "twice.yaml").write_bytes(record.path.read_bytes())
    scan = store.scan(time.time())
    assert [(r.task.id, r.state) for r in scan.records] == [("twice", "pending")]
    assert [p.message for p in scan.problems] == ["task 'twice' is also in pending/"]


def test_the_list_cache_never_hides_an_edit(store: TaskStore) -> None:
    store.add(_new("a", priority=10), NOW)
    store.add(_new("b"), NOW)
    later = time.time() + 10  # every file is now old enough to be cached
    assert {r.task.id: r.task.priority for r in store.scan(later).records} == {"a": 10, "b": 50}
    assert store.layout.task_cache("pending").exists()
    # Same size, rewritten in place by an editor: inode kept, mtime/ctime move.
    path = store.layout.task_file("pending", "a")
    path.write_text(path.read_text().replace("priority: 10", "priority: 90"))
    assert {r.task.id: r.task.priority for r in store.scan(later).records} == {"a": 90, "b": 50}
    # Replaced by a rename (a new inode), as every writer here does: seen at once too.
    replacement = path.with_name(".a.yaml.tmp")
    replacement.write_text(path.read_text().replace("priority: 90", "priority: 70"))
    replacement.replace(path)
    assert {r.task.id: r.task.priority for r in store.scan(later).records} == {"a": 70, "b": 50}
    store.layout.task_file("pending", "b").unlink()
    assert [r.task.id for r in store.scan(later).records] == ["a"]


def test_a_cache_that_was_written_within_the_racy_window_is_not_trusted(store: TaskStore) -> None:
    store.add(_new("a", priority=10), NOW)
    store.scan(time.time())  # the file is brand new: it must not be cached
    cache = store.layout.task_cache("pending")
    assert not cache.exists() or json.loads(cache.read_text())["entries"] == {}
    store.scan(time.time() + 10)  # once it is old enough to trust, it is
    assert list(json.loads(cache.read_text())["entries"]) == ["a.yaml"]


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"{",
        b"[]",
        b'{"version": "0/old", "entries": {}}',
        b'{"version": "1/0.1.0", "entries": {"pending/a.yaml": [1, 2]}}',
    ],
)
def test_a_corrupt_or_foreign_cache_is_ignored(store: TaskStore, garbage: bytes) -> None:
    store.add(_new("a"), NOW)
    store.layout.cache.mkdir(exist_ok=True)
    store.layout.task_cache("pending").write_bytes(garbage)
    assert [r.task.id for r in store.scan(time.time() + 10).records] == ["a"]


def test_a_cache_entry_with_a_matching_signature_but_foreign_shape_is_reread(
    store: TaskStore,
) -> None:
    record = store.add(_new("a"), NOW)
    st = record.path.stat()
    sig = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    store.layout.cache.mkdir(exist_ok=True)
    atomic.write_json(
        store.layout.task_cache("pending"),
        {"version": f"1/{__version__}", "entries": {"a.yaml": [*sig, ["too", "few"]]}},
    )
    assert [r.task.id for r in store.scan(time.time() + 10).records] == ["a"]


def _cancel(
    store: TaskStore, change: Callable[[Task], Task] = lambda t: t, now: float = NOW
) -> TaskRecord:
    return store.transition(
        "a",
        allowed=("pending",),
        to_state="cancelled",
        change=change,
        who="me",
        now=now,
        verb="cancel",
    )


def test_transitions_hold_the_task_lock(store: TaskStore) -> None:
    store.add(_new("a"), NOW)
    owner = locks.Owner.new("alpha", "agent", attempt=1, now=NOW, lease=60)
    claim = locks.acquire(store.layout, "a", owner)
    assert claim is not None
    with pytest.raises(Conflict, match="claimed by agent 'alpha'"):
        _cancel(store)
    assert store.locate("a") == ("pending", store.layout.task_file("pending", "a"))
    with locks.integration_lock(store.layout):
        locks.release(store.layout, claim)
    record = _cancel(store, lambda t: t.evolve(priority=1), NOW + 5)
    assert (record.state, record.task.priority, record.task.updated_at) == ("cancelled", 1, NOW + 5)
    assert store.get("a").state == "cancelled"
    assert not store.layout.lock_dir("a").exists()
    with pytest.raises(Conflict, match="cannot cancel task 'a': it is cancelled"):
        _cancel(store)


def test_a_large_import_fills_the_list_cache_with_what_it_wrote(store: TaskStore) -> None:
    batch = [_new(f"t{i:03d}", priority=i % 100) for i in range(100)]
    store.import_tasks(batch, NOW)
    entries = json.loads(store.layout.task_cache("pending").read_text())["entries"]
    assert len(entries) == 100
    for task in batch:  # every entry matches its file's signature: a listing will trust it
        st = store.layout.task_file("pending", task.id).stat()
        assert entries[f"{task.id}.yaml"][:4] == [
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
            st.st_ctime_ns,
        ]
    scan = store.scan(time.time())
    assert {r.task.id: r.task for r in scan.records} == {t.id: t for t in batch}


def test_current_reuses_a_record_its_file_still_matches_and_rereads_a_changed_one(
    store: TaskStore,
) -> None:
    store.add(_new("a", priority=10), NOW)
    (seen,) = store.scan(NOW + 10).records
    assert store.current(seen) is seen  # unchanged since the scan: nothing read again
    with locks.exclusive(store.layout, "a", who="test", now=NOW, lease=60):
        store.write(seen, seen.task.evolve(priority=90))
    assert store.current(seen).task.priority == 90
    assert store.current(TaskRecord(seen.task, "pending", store.layout)).task.priority == 90
