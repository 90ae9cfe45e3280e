"""Running a task's command: /bin/sh -c in the agent's worktree, output to the log and a sink.

Task data reaches the command only through its environment, never spliced into the command
line. The command runs in its own session so a timeout or Ctrl-C stops its whole process group
(a coding agent spawns shells, test runners, language servers...).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from stigmergy_cli.gitops import child_env

KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL of the process group
TAIL_LINES = 200  # lines kept to recognize a rate limit and to report a failure
# How often the wait for the executor checks for a timeout or a stop.
POLL_STOP = 0.1
# Without a pidfd, how late the agent may notice its executor finished: on every task's
# critical path, so kept short.
POLL_EXIT = 0.01


@dataclass(frozen=True)
class ExecResult:
    code: int | None  # None when it was killed (timeout, stop)
    seconds: float
    timed_out: bool
    stopped: bool
    tail: str

    @property
    def ok(self) -> bool:
        return self.code == 0 and not self.timed_out and not self.stopped


def environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment, without git variables that would point at the wrong repo."""
    env = child_env()
    env.update(extra)
    return env


def run(
    command: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    timeout: float | None,
    stop: Callable[[], bool],
    on_line: Callable[[str], None] | None = None,
) -> ExecResult:
    """Run `command`; stream its output to `log_path` and `on_line`.

    Its process group is killed on `timeout`, or as soon as `stop()` turns true (Ctrl-C, or
    the agent's heartbeat lapsing), and also if this process is interrupted while waiting.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with log_path.open("ab") as log:
        log.write(f"$ {command}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert proc.stdout is not None
        reader = threading.Thread(target=_pump, args=(proc.stdout, log, tail, on_line), daemon=True)
        reader.start()
        timed_out = stopped = False
        with contextlib.closing(_ExitWatch(proc)) as exit_watch:
            while True:
                try:
                    code: int | None = exit_watch.wait(POLL_STOP)
                except BaseException:  # a second Ctrl-C: do not leave the executor running
                    _kill_group(proc, grace=0)
                    raise
                if code is not None:
                    _kill_stragglers(proc)
                    break
                if timeout is not None and time.monotonic() - started > timeout:
                    timed_out = True
                elif stop():
                    stopped = True
                else:
                    continue
                _kill_group(proc)
                code = None
                break
        reader.join(timeout=KILL_GRACE)
        if proc.stdout is not None:
            proc.stdout.close()
        elapsed = time.monotonic() - started
        outcome = "timed out" if timed_out else "stopped" if stopped else f"exit {code}"
        log.write(f"[stigmergy] {outcome} after {elapsed:.1f}s\n".encode())
    return ExecResult(code, elapsed, timed_out, stopped, "".join(tail))


class _ExitWatch:
    """Waits for a child's exit: asleep in the kernel on a pidfd (Linux 5.3+), which wakes the
    moment it exits, otherwise by polling every POLL_EXIT. Twenty agents waiting on their
    executors then cost no CPU, and none notices its executor's exit late."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        self._poller: select.poll | None = None
        self._pidfd: int | None = None
        try:
            self._pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):  # not Linux, an old kernel, or already reaped
            return
        self._poller = select.poll()
        self._poller.register(self._pidfd, select.POLLIN)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if the child is still running after `timeout` seconds."""
        if self._poller is not None:
            if not self._poller.poll(timeout * 1000):
                return None
            return self._proc.wait()
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._proc.wait(timeout=POLL_EXIT)
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    return None

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


def _pump(
    stream: IO[bytes],
    log: IO[bytes],
    tail: deque[str],
    on_line: Callable[[str], None] | None,
) -> None:
    for raw in iter(stream.readline, b""):
        log.write(raw)
        log.flush()
        line = raw.decode(errors="replace")
        tail.append(line)
        if on_line is not None:
            on_line(line.rstrip("\n"))


def _kill_stragglers(proc: subprocess.Popen[bytes]) -> None:
    """The executor exited: stop what it left running in its process group (a server it
    started, a `cmd &`). Left alone, they would go on changing the worktree after its result
    was committed, and keep the output pipe open. The group outlives its leader only while
    it has members, so its id cannot have been reused."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _kill_group(proc: subprocess.Popen[bytes], grace: float = KILL_GRACE) -> None:
    """SIGTERM the whole process group, then SIGKILL whatever is left after a grace period."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def rate_limited(result: ExecResult, exit_codes: Sequence[int], patterns: Sequence[str]) -> bool:
    """Did the executor stop because its model provider is rate-limiting?"""
    if result.code is not None and result.code != 0 and result.code in exit_codes:
        return True
    if result.ok:
        return False
    return any(re.search(pattern, result.tail) for pattern in patterns)
