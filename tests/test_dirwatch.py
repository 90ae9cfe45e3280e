"""Waking on directory changes (inotify), the idle agent's alarm clock."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from stigmergy_cli.dirwatch import DirWatch


def _watch(tmp_path: Path) -> tuple[DirWatch, Path, Path]:
    pending, done = tmp_path / "pending", tmp_path / "done"
    pending.mkdir()
    done.mkdir()
    watch = DirWatch.open([pending, done])
    if watch is None:
        pytest.skip("no inotify on this machine")
    return watch, pending, done


def test_a_file_renamed_in_wakes_the_watch_at_once(tmp_path: Path) -> None:
    watch, pending, _ = _watch(tmp_path)
    try:
        assert watch.wait(0.05) is False  # nothing happened
        staged = tmp_path / "t.yaml"
        staged.write_text("id: t\n")
        timer = threading.Timer(0.2, os.rename, args=(staged, pending / "t.yaml"))
        started = time.monotonic()
        timer.start()
        assert watch.wait(10) is True
        assert time.monotonic() - started < 5  # woken by the rename, not the timeout
        assert watch.wait(0.05) is False  # the events were read
    finally:
        timer.cancel()
        watch.close()


def test_changes_before_the_wait_are_not_lost(tmp_path: Path) -> None:
    watch, pending, done = _watch(tmp_path)
    try:
        (pending / "t.yaml").write_text("id: t\n")
        os.rename(pending / "t.yaml", done / "t.yaml")
        assert watch.wait(0) is True
    finally:
        watch.close()


def test_a_watch_on_a_missing_directory_is_refused(tmp_path: Path) -> None:
    assert DirWatch.open([tmp_path / "missing"]) is None
