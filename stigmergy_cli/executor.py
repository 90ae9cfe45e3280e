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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from stigmergy_cli import orphans
from stigmergy_cli.errors import InvalidInput, StigmergyError
from stigmergy_cli.gitops import child_env

KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL of the process group
TAIL_LINES = 200  # lines kept to recognize a rate limit and to report a failure
# How often the wait for the executor checks for a timeout or a stop.
POLL_STOP = 0.1
# Without a pidfd, how late the agent may notice its executor finished: on every task's
# critical path, so kept short.
POLL_EXIT = 0.01


class CannotStart(StigmergyError):
    """The command could not be started at all: the machine's trouble, not the task's."""


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


# The first word of a shell command, when it is a plain word or simply quoted: nothing to
# expand, so what /bin/sh will run is known without running it.
_FIRST_WORD = re.compile(
    r"""\s*(?:"([^"$`\\]*)"|'([^']*)'|([^\s;&|()<>'"$`\\]+))(?=[\s;&|()<>]|$)"""
)


def resolve(command: str, cwd: Path, root: Path) -> str:
    """`command` with a relative path in its first word made absolute against `cwd`.

    The executor runs in the agent's worktree, where `./myexec.sh` typed in the directory
    `agent run` started in does not exist (exit 127 for every task). A path found only from
    the repository's `root` is left as it is: the worktree has it too. InvalidInput if the
    first word names a file that does not exist or cannot be run."""
    match = _FIRST_WORD.match(command)
    if match is None:
        return command
    first = next(group for group in match.groups() if group is not None)
    if "/" not in first or "=" in first:  # a name looked up in PATH, or VAR=value
        return command
    path = Path(first).expanduser()
    if not path.is_absolute():
        if not (cwd / path).is_file() and (root / path).is_file():
            return command
        path = cwd / path
    if not path.is_file():
        raise InvalidInput(f"executor {first!r} does not exist (looked for {path})")
    if not os.access(path, os.X_OK):
        raise InvalidInput(f"executor {first!r} is not executable: chmod +x {path}")
    if Path(first).is_absolute():
        return command
    import shlex

    return shlex.quote(str(path)) + command[match.end() :]


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
    hold: orphans.Hold | None = None,
    on_start: Callable[[int], None] | None = None,
) -> ExecResult:
    """Run `command`; stream its output to `log_path` and `on_line`.

    Its process group is killed on `timeout`, or as soon as `stop()` turns true (Ctrl-C, or
    the agent's heartbeat lapsing), and also if this process is interrupted while waiting.
    `hold`: a lock every process of the command inherits (orphans.held_for_executor).
    `on_start`: called with the command's pid, its session's id, as soon as it runs.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with log_path.open("ab") as log:
        log.write(f"$ {command}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", command],
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=() if hold is None else (hold.fileno(),),
            )
        except OSError as exc:  # no /bin/sh, the worktree gone, no memory for a process
            where = f" ({exc.filename})" if exc.filename else ""
            raise CannotStart(f"cannot start the executor: {exc.strerror}{where}") from None
        if hold is not None:
            hold.hand_over()
        if on_start is not None:
            on_start(proc.pid)
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
    """SIGTERM the whole process group, then SIGKILL whatever is left after a grace period,
    or at once if this process is interrupted meanwhile (a second Ctrl-C)."""
    try:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
