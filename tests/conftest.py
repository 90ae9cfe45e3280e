"""Shared fixtures: real git repositories in tmp_path, isolated from the user's git config."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from stigmergy_cli.cli import main
from stigmergy_cli.environment import initialize
from stigmergy_cli.paths import Layout


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reads the user's git config or environment, or writes outside tmp dirs."""
    home = tmp_path_factory.mktemp("home")
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Test\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("NO_COLOR", "1")
    for var in list(os.environ):
        if var.startswith("STIGMERGY_") or var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
            monkeypatch.delenv(var)
    monkeypatch.chdir(home)


def git(cwd: Path, *args: str) -> str:
    """Run git for a test, failing loudly."""
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository on branch main with one commit."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "README.md").write_text("sample\n")
    git(root, "add", "README.md")
    git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.fixture
def env_root(repo: Path) -> Path:
    """A repository with an initialized .stigmergy/ environment."""
    initialize(repo, None, {})
    return repo


@dataclass
class Result:
    code: int
    out: str
    err: str


class Cli:
    """Runs the CLI in-process, as a user would type it, from a chosen directory."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        self._monkeypatch = monkeypatch
        self._capsys = capsys

    def __call__(self, *args: str, cwd: Path | None = None, stdin: str | None = None) -> Result:
        if cwd is not None:
            self._monkeypatch.chdir(cwd)
        if stdin is not None:
            self._monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
        self._capsys.readouterr()
        code = main(list(args))
        captured = self._capsys.readouterr()
        return Result(code, captured.out, captured.err)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(monkeypatch, capsys)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under .stigmergy/ except the derived list cache, to prove nothing changed."""
    env = root / ".stigmergy"
    files: dict[str, bytes] = {}
    for path in sorted(env.rglob("*")):
        rel = path.relative_to(env).as_posix()
        if rel.startswith("cache"):
            continue
        files[rel] = path.read_bytes() if path.is_file() else b"<dir>"
    return files


def left_by_crash(layout: Layout, manifest: object) -> Path:
    """A batch directory holding `manifest`, as an import killed after its commit leaves it."""
    batch_dir = layout.staging / "batch-crashed"
    batch_dir.mkdir(parents=True)
    (batch_dir / "manifest.json").write_text(json.dumps(manifest))
    return batch_dir


@pytest.fixture
def in_repo(env_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run with the initialized repository as the working directory."""
    monkeypatch.chdir(env_root)
    return env_root
