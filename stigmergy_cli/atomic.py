"""Crash-safe writes: temp file in the same directory, fsync, then rename, then fsync the dir.

A reader sees either the old file or the new one, never a torn one; after the directory fsync
the change survives a power cut (see docs/design.md, "Durability").
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    """Make a rename or create inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_name(path: Path) -> Path:
    # Dot-prefixed and suffixed so listings (which want *.yaml / *.json) never pick it up.
    return path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")


def _create(path: Path, data: bytes, *, fsync: bool) -> None:
    """Write `data` to `path`, which must not exist (never through a planted symlink); gone
    again if the write fails."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise


def _write_temp(path: Path, data: bytes, *, fsync: bool = True) -> Path:
    tmp = _temp_name(path)
    _create(tmp, data, fsync=fsync)
    return tmp


def write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace `path` with `data` atomically; `durable` also survives a power cut.

    Without `durable` (caches, heartbeats: data that is stale after a crash anyway) readers
    still never see a torn file, but nothing is fsynced.
    """
    tmp = _write_temp(path, data, fsync=durable)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)


def write_new(path: Path, data: bytes) -> None:
    """Create `path` (it must not exist) with `data`, durably, with no temp file: only for a
    directory nobody reads yet, such as a stage that one rename will publish whole."""
    _create(path, data, fsync=True)
    fsync_dir(path.parent)


def create_bytes(path: Path, data: bytes) -> bool:
    """Publish `data` at `path` only if nothing is there yet; False if something was.

    `link()` fails with EEXIST instead of replacing, which `rename()` would silently do.
    """
    tmp = _write_temp(path, data)
    try:
        os.link(tmp, path)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            return False
        raise
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    fsync_dir(path.parent)
    return True


def json_bytes(obj: Any) -> bytes:
    """`obj` as our JSON files hold it: indented, keys sorted, a final newline."""
    return json.dumps(obj, indent=2, sort_keys=True).encode() + b"\n"


def write_json(path: Path, obj: Any, *, durable: bool = True) -> None:
    """Replace `path` with `obj` as JSON atomically."""
    write_bytes(path, json_bytes(obj), durable=durable)


def move(src: Path, dst: Path) -> None:
    """Rename `src` to `dst` (one atomic step) and make both directories durable."""
    os.rename(src, dst)
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)
