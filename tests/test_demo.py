"""The demo, in its small form, end to end: real agent processes on the sample project."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from stigmergy_cli.demo_executor import resolve_by_union

STIGMERGY = Path(sys.executable).parent / "stigmergy"


def test_the_demo_builds_the_sample_package(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(STIGMERGY), "demo", "--agents", "3", "--think", "0.1", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["done"] == summary["tasks"] >= 14
    assert summary["failed"] == 0
    assert summary["tests_passed"] is True
    assert summary["tests_summary"].startswith("Ran 12 tests")
    assert summary["merges"] >= 13
    assert summary["resolved"] == summary["conflicts"]
    assert summary["speedup"] > 1.0
    assert not Path(summary["root"]).exists()  # removed unless --keep


def test_the_scripted_resolver_keeps_both_sides() -> None:
    text = "# t\n<<<<<<< HEAD\n## A\n=======\n## B\n>>>>>>> theirs\nend\n"
    assert resolve_by_union(text) == "# t\n## A\n## B\nend\n"
