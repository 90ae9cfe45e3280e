from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from stigmergy_cli import executor


def _run(tmp_path: Path, command: str, **kwargs: object) -> executor.ExecResult:
    lines: list[str] = []
    options: dict[str, object] = {
        "cwd": tmp_path,
        "env": executor.environment({"STIGMERGY_TASK_TITLE": "$(touch pwned) `touch pwned2`"}),
        "log_path": tmp_path / "logs" / "t" / "1.log",
        "timeout": 30.0,
        "stop": lambda: False,
        "on_line": lines.append,
    }
    options.update(kwargs)
    return executor.run(command, **options)  # type: ignore[arg-type]


def test_output_reaches_the_log_and_the_sink(tmp_path: Path) -> None:
    seen: list[str] = []
    result = _run(tmp_path, 'echo "out"; echo "err" >&2; exit 3', on_line=seen.append)
    assert (result.code, result.ok, result.timed_out) == (3, False, False)
    assert seen == ["out", "err"]
    log = (tmp_path / "logs" / "t" / "1.log").read_text()
    assert log.startswith("$ echo")
    assert "out\nerr\n" in log
    assert "[stigmergy] exit 3 after" in log


def test_task_data_is_never_spliced_into_the_command(tmp_path: Path) -> None:
    result = _run(tmp_path, 'printf "%s" "$STIGMERGY_TASK_TITLE" > title.txt')
    assert result.ok
    assert (tmp_path / "title.txt").read_text() == "$(touch pwned) `touch pwned2`"
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "pwned2").exists()


def test_leaked_git_variables_do_not_reach_the_executor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_DIR", "/somewhere/else")
    _run(tmp_path, 'echo "${GIT_DIR:-unset}" > gitdir.txt')
    assert (tmp_path / "gitdir.txt").read_text().strip() == "unset"


def test_the_executor_keeps_the_users_language(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LANGUAGE", "de")
    monkeypatch.delenv("LC_ALL", raising=False)
    _run(tmp_path, 'echo "${LANGUAGE:-unset} ${LC_ALL:-unset}" > lang.txt')
    assert (tmp_path / "lang.txt").read_text().strip() == "de unset"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    started = time.monotonic()
    result = _run(tmp_path, "sleep 60 & echo $! > child.pid; sleep 60", timeout=0.5)
    assert time.monotonic() - started < 10
    assert (result.code, result.timed_out, result.ok) == (None, True, False)
    child = int((tmp_path / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_what_an_executor_leaves_running_is_stopped_when_it_exits(tmp_path: Path) -> None:
    started = time.monotonic()
    # The straggler keeps the output pipe open, and would go on writing in the worktree.
    result = _run(tmp_path, "(sleep 60; touch late) & echo $! > child.pid; echo done")
    assert result.ok
    assert time.monotonic() - started < executor.KILL_GRACE  # not waiting on its pipe
    child = int((tmp_path / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_a_stop_request_ends_the_command(tmp_path: Path) -> None:
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    result = _run(tmp_path, "sleep 60", stop=stop.is_set)
    assert (result.stopped, result.code) == (True, None)


def test_waiting_leaves_no_descriptor_behind(tmp_path: Path) -> None:
    # The wait holds a pidfd per run (where the kernel has them); it must be closed each time,
    # however the run ends.
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_fds()
    for _ in range(10):
        _run(tmp_path, "exit 0")
        _run(tmp_path, "sleep 60", timeout=0.05)
    assert open_fds() == before


def test_without_a_pidfd_the_wait_still_sees_exits_timeouts_and_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_pidfd(pid: int, flags: int = 0) -> int:
        raise OSError(38, "Function not implemented")  # an old kernel, say

    monkeypatch.setattr(os, "pidfd_open", no_pidfd, raising=False)
    assert _run(tmp_path, "exit 4").code == 4
    assert _run(tmp_path, "sleep 60", timeout=0.3).timed_out
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    assert _run(tmp_path, "sleep 60", stop=stop.is_set).stopped
