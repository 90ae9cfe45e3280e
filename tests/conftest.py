"""Shared fixtures: real git repositories in tmp_path, isolated from the user's git config."""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stigmergy_cli import tasks
from stigmergy_cli.agent_loop import Agent, AgentOptions
from stigmergy_cli.cli import main
from stigmergy_cli.environment import Environment, initialize, open_environment
from stigmergy_cli.paths import Layout


def pytest_configure(config: pytest.Config) -> None:
    """The suite runs as it would in a terminal, whatever started it.

    A shell starts a background job (`make test &`) with SIGINT and SIGQUIT ignored, and
    `nohup` ignores SIGHUP; children inherit an ignored signal, so a test's Ctrl-C would not
    reach the commands it starts. A handler is not inherited: each child starts with the
    default. And every process a test starts, however far down, becomes our child when its
    parent dies (a subreaper), so that `_no_process_left` can find it."""
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else _exit)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1)


_PR_SET_CHILD_SUBREAPER = 36


def _exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _descendants() -> set[int]:
    """Every living process below this one (ours, their children, orphans we adopted)."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if fields[0] != b"Z":  # a zombie has let go of everything; reaped below
            parents[int(name)] = int(fields[1])
    found: set[int] = set()
    frontier = {os.getpid()}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.fixture(autouse=True)
def _no_process_left() -> Iterator[None]:
    """However a test ends, no process it started outlives it (agents, executors and what
    they left behind, servers). A test that must check for leftovers does so itself."""
    before = _descendants()
    yield
    for _ in range(50):
        left = _descendants() - before
        if not left:
            break
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:  # reap the orphans we adopted
            pass


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reads the user's git config or environment, or writes outside tmp dirs."""
    home = tmp_path_factory.mktemp("home")
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Test\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NO_COLOR", "1")
    for var in list(os.environ):
        # Identities, dates, paths, editors, trace switches: a user's GIT_AUTHOR_NAME wins
        # over any repository's config, as git intends, and would change what tests see.
        if var.startswith(("STIGMERGY_", "GIT_")) or var in ("LANGUAGE", "EMAIL"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.chdir(home)


def configured(root: Path, **settings: object) -> Environment:
    """The environment at `root`, with `settings` (keys of config.yaml's sections, by their
    last word) changed in its config file first."""
    config = root / ".stigmergy" / "config.yaml"
    text = config.read_text()
    for key, value in settings.items():
        text = text.replace(f"  {key}: ", f"  {key}: {value} #", 1)
    config.write_text(text)
    return open_environment(root, None, {})


def add_task(env: Environment, task_id: str, **fields: object) -> None:
    doc = {"id": task_id, "title": f"Task {task_id}", **fields}
    env.store.add(tasks.new_task(doc, now=time.time(), created_by="t"), time.time())


def make_agent(env: Environment, command: str | None, **options: object) -> Agent:
    """An in-process agent (default id alpha); what it says is kept in `agent.said`."""
    said: list[str] = []
    opts = AgentOptions(agent=str(options.pop("agent", "alpha")), command=command, **options)  # type: ignore[arg-type]
    agent = Agent(env, opts, say=said.append)
    agent.said = said  # type: ignore[attr-defined]
    return agent


def start_agent(
    root: Path, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """`stigmergy agent run ARGS` as a process in `root`, its output on a pipe."""
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "stigmergy"), "agent", "run", *args],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(extra_env or {})},
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


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
