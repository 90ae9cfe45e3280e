from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stigmergy_cli import atomic

WRITER = """
import sys
from pathlib import Path
from stigmergy_cli import atomic
path = Path(sys.argv[1])
versions = [bytes([65 + i]) * 300_000 for i in range(3)]
print("ready", flush=True)
while True:
    for data in versions:
        atomic.write_bytes(path, data)
"""


def test_write_replaces_and_create_refuses_to(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    atomic.write_json(path, {"a": 1})
    atomic.write_json(path, {"a": 2})
    assert path.read_text() == '{\n  "a": 2\n}\n'
    assert atomic.create_bytes(tmp_path / "new", b"one") is True
    assert atomic.create_bytes(tmp_path / "new", b"two") is False
    assert (tmp_path / "new").read_bytes() == b"one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json", "new"]  # no temp files left


def test_write_refuses_to_follow_a_planted_symlink_as_its_temp_file(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    path = tmp_path / "f"
    # Even if an attacker guessed the temp name, O_EXCL|O_NOFOLLOW refuses to open through it.
    for _ in range(3):
        atomic.write_bytes(path, b"data")
    assert victim.read_text() == "keep me"


@pytest.mark.slow
def test_a_write_killed_at_any_instant_leaves_a_whole_version(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.write_bytes(b"A" * 300_000)
    rng = random.Random(1234)
    valid = {bytes([65 + i]) * 300_000 for i in range(3)}
    for _ in range(25):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0, 0.05))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        assert path.read_bytes() in valid
