"""Kernel advisory locks (flock) on files that are never deleted.

The kernel drops a flock when its holder dies, however it dies, which is what lets a sweep on
the same host tell a dead claim holder at once. We use flock directly rather than the filelock
package: its import costs ~45 ms of our 150 ms start-up budget, and several of its releases
deleted lock files on release, letting two processes hold one lock (filelock #574). A lock
file here is created once and never removed while anyone may lock it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from stigmergy_cli.errors import StigmergyError


class LockTimeout(StigmergyError):
    """A lock could not be taken within the allowed time."""


class FileLock:
    """A flock on `path` (exclusive, or shared with `shared=True`), created if missing.
    Not reentrant."""

    def __init__(self, path: Path, *, shared: bool = False) -> None:
        self.path = path
        self._mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def fileno(self) -> int:
        """The held lock's descriptor. A child process given it (`pass_fds`) keeps the lock
        held until it exits too, even if this process dies first."""
        if self._fd is None:
            raise ValueError(f"{self.path} is not held")
        return self._fd

    def _open(self) -> int:
        return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never wait."""
        fd = self._open()
        try:
            fcntl.flock(fd, self._mode | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def acquire(self, timeout: float | None = None) -> None:
        """Wait for the lock; with `timeout`, give up after that many seconds."""
        if timeout is None:
            fd = self._open()
            try:
                fcntl.flock(fd, self._mode)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return
        deadline = time.monotonic() + timeout
        delay = 0.001
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                raise LockTimeout(f"{self.path} is held by another process (waited {timeout:g}s)")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def release(self) -> None:
        """Drop the lock (the file stays, see the module docstring)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> FileLock:  # noqa: PYI034 - typing.Self needs Python 3.11
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def is_locked(path: Path) -> bool:
    """Does some live process hold a flock on `path`? False if the file does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
