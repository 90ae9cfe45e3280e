"""Who is this process, and is that one still alive? (host, boot id, pid + start time)

A pid alone is not an identity: pids are reused. The pair (pid, start time) is, within one
boot; the boot id tells a reboot apart.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass


@functools.cache
def hostname() -> str:
    """This machine's host name."""
    return os.uname().nodename  # what gethostname() returns, without importing socket


@functools.cache
def boot_id() -> str:
    """An id that changes at every boot ('' where the OS does not tell)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def start_time(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot; None if it is gone or unknowable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain ') '.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 overall
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class ProcessId:
    host: str
    boot_id: str
    pid: int
    start: int | None

    @classmethod
    def current(cls) -> ProcessId:
        """The identity of this process."""
        pid = os.getpid()
        return cls(hostname(), boot_id(), pid, start_time(pid))

    def is_local(self) -> bool:
        """Was this identity taken on this machine, in this boot?"""
        return self.host == hostname() and self.boot_id == boot_id()

    def is_alive(self) -> bool | None:
        """True/False for a process of this boot on this host; None when we cannot tell."""
        if not self.is_local():
            return None
        if self.start is not None:
            return start_time(self.pid) == self.start
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
