"""Waking when entries come into or leave a few directories: inotify on Linux.

An idle agent used to look at the pool every `agent.poll_interval` (two stat calls), so a new
task waited half an interval on average before anyone noticed it. With inotify the kernel
wakes the agent the moment a task file is renamed into `pending/` or `done/`. Where inotify
is missing (not Linux, no libc, out of watches) `DirWatch.open` returns None and the caller
keeps polling.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
from collections.abc import Sequence
from pathlib import Path

# <sys/inotify.h>
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_MOVED_FROM = 0x40
_IN_MOVED_TO = 0x80
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_EVENTS = _IN_CREATE | _IN_DELETE | _IN_MOVED_FROM | _IN_MOVED_TO


def _libc() -> ctypes.CDLL | None:
    # The interpreter's own symbols include libc's; ctypes.util.find_library would start
    # ldconfig, which costs an agent a second at start-up.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1  # noqa: B018 - raises AttributeError where there is no inotify
    except (OSError, AttributeError):
        return None
    return libc


class DirWatch:
    """An inotify descriptor watching `paths` for entries created, deleted or moved."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._poller = select.poll()
        self._poller.register(fd, select.POLLIN)

    @classmethod
    def open(cls, paths: Sequence[Path]) -> DirWatch | None:
        """A watch on `paths`, or None where inotify cannot be had."""
        libc = _libc()
        if libc is None:
            return None
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            return None
        for path in paths:
            if libc.inotify_add_watch(fd, os.fsencode(path), _EVENTS) < 0:
                os.close(fd)
                return None
        return cls(fd)

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds; True if something changed (the events are read)."""
        if not self._poller.poll(max(0, int(timeout * 1000))):
            return False
        with contextlib.suppress(BlockingIOError):
            while os.read(self._fd, 65536):
                pass
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
