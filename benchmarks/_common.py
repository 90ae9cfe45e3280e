"""Helpers shared by the benchmark scripts: a throw-away repository, timing, statistics, output.

Every measurement runs the installed `stigmergy` command as a separate process, the way an
agent or a person runs it, and times the whole process with time.perf_counter around
subprocess.run. Peak memory comes from `/usr/bin/time -f %M` (or, where that program is
missing, from getrusage(RUSAGE_CHILDREN) in a one-child helper process), always in a run of its
own so that no timed run pays for the wrapper.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import math
import os
import platform
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

PROJECT = Path(__file__).resolve().parent.parent
GNU_TIME = Path("/usr/bin/time")
# The list cache does not trust files whose ctime is within 2 s of the listing
# (defaults.CACHE_RACY_WINDOW); wait a little longer than that before a "warm" measurement.
CACHE_SETTLE = 2.5

# Used when /usr/bin/time is missing: the helper has exactly one child, so its
# RUSAGE_CHILDREN peak is that child's peak.
_RSS_HELPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[2:]).returncode\n"
    "with open(sys.argv[1], 'w') as fh:\n"
    "    fh.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(code)\n"
)


class BenchError(RuntimeError):
    """A command the benchmark depends on failed."""


def gather(procs: Sequence[BaseProcess], out: Queue[T], timeout: float) -> list[T]:
    """One result from each of `procs` through `out`. A process that died without sending its
    result ends the wait at once (its traceback is above), instead of after `timeout`."""
    results: list[T] = []
    deadline = time.monotonic() + timeout
    while len(results) < len(procs):
        try:
            results.append(out.get(timeout=1))
        except queue.Empty:
            dead = [proc.exitcode for proc in procs if proc.exitcode not in (None, 0)]
            late = time.monotonic() > deadline
            if dead or late:
                for proc in procs:
                    proc.terminate()
                why = f"{len(dead)} process(es) died (exit {dead[0]})" if dead else "timed out"
                raise BenchError(f"{why}; {len(results)} of {len(procs)} sent results") from None
    return results


def _find_cli() -> Path:
    """The installed `stigmergy`: next to this interpreter, in the project's .venv, or on PATH."""
    for candidate in (Path(sys.executable).parent / "stigmergy", PROJECT / ".venv/bin/stigmergy"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("stigmergy")
    if found is None:
        raise SystemExit("cannot find the `stigmergy` command: install the project in .venv")
    return Path(found)


CLI = _find_cli()
# The interpreter the CLI runs on (its shebang's venv), for `python -X importtime`.
PYTHON = CLI.parent / "python" if (CLI.parent / "python").exists() else Path(sys.executable)


# Where the throw-away repositories go: $STIGMERGY_BENCH_TMP if set (for a machine whose
# default temporary directory is slow to create files in), else the system's temporary directory.
BENCH_TMP_VAR = "STIGMERGY_BENCH_TMP"


def bench_tmp() -> str:
    """The directory temporary repositories are made in (see BENCH_TMP_VAR)."""
    chosen = os.environ.get(BENCH_TMP_VAR)
    if chosen:
        if not Path(chosen).is_dir():
            raise SystemExit(f"{BENCH_TMP_VAR}={chosen!r} is not a directory")
        return chosen
    return tempfile.gettempdir()


# Scratch directories are removed when the script exits, not as each measurement ends. On an
# ext4 without a journal, every inode freed in the last minutes makes each new file slower
# to create (see `filesystem`): removing one measurement's repository (thousands of files)
# just before the next one starts made that one pay for it. The next run of a script still
# does, which is why the header prints a file-creation probe.
_SCRATCH: list[str] = []


def _remove_scratch() -> None:
    for path in reversed(_SCRATCH):
        shutil.rmtree(path, ignore_errors=True)


atexit.register(_remove_scratch)


@contextlib.contextmanager
def scratch_dir(label: str) -> Iterator[Path]:
    """A new directory under the benchmark temp dir, removed when the script exits."""
    path = tempfile.mkdtemp(prefix=f"stigmergy-bench-{label}-", dir=bench_tmp())
    _SCRATCH.append(path)
    yield Path(path)


# Bytecode goes to a temporary tree (PYTHONPYCACHEPREFIX), so measured runs import from .pyc
# files as an installed tool does, even when the caller's shell sets PYTHONDONTWRITEBYTECODE,
# and no __pycache__ is written into the project.
_PYCACHE = tempfile.mkdtemp(prefix="stigmergy-bench-pyc-")
atexit.register(shutil.rmtree, _PYCACHE, ignore_errors=True)


def bench_env() -> dict[str, str]:
    """The environment for measured commands: ours, minus anything that redirects stigmergy."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("STIGMERGY_")
        and k not in {"PYTHONPROFILEIMPORTTIME", "PYTHONWARNINGS", "PYTHONDONTWRITEBYTECODE"}
    }
    env["PYTHONPYCACHEPREFIX"] = _PYCACHE
    env["NO_COLOR"] = "1"
    return env


def caller_env() -> dict[str, str]:
    """The caller's environment as it is (bytecode settings included), minus STIGMERGY_*."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STIGMERGY_")}


# -- running commands ------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One finished command: its wall time, its output if captured, its peak RSS if asked."""

    seconds: float
    stdout: str
    stderr: str
    rss_mb: float | None


def run(
    args: Sequence[str | Path],
    cwd: Path,
    *,
    capture: bool = False,
    rss: bool = False,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> Run:
    """Run `args` in `cwd` and time the whole process.

    stdout goes to /dev/null unless `capture`. With `rss`, the command runs under
    /usr/bin/time (about a millisecond more wall time), so use it for runs whose wall time is
    not reported or is seconds long.
    """
    argv = [str(a) for a in args]
    rss_file: Path | None = None
    if rss:
        fd, name = tempfile.mkstemp(prefix="stigmergy-bench-rss-")
        os.close(fd)
        rss_file = Path(name)
        if GNU_TIME.exists():
            argv = [str(GNU_TIME), "-f", "%M", "-o", name, *argv]
        else:
            argv = [sys.executable, "-c", _RSS_HELPER, name, *argv]
    try:
        start = time.perf_counter()
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=dict(env) if env is not None else bench_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - start
        rss_mb = None
        if rss_file is not None:
            # GNU time writes "Command exited with non-zero status N" first when it fails.
            lines = rss_file.read_text().split()
            rss_mb = int(lines[-1]) / 1024 if lines else None
    finally:
        if rss_file is not None:
            rss_file.unlink(missing_ok=True)
    if check and proc.returncode != 0:
        shown = " ".join(str(a) for a in args)
        raise BenchError(
            f"`{shown}` exited {proc.returncode} in {cwd}:\n{proc.stderr.strip()[-2000:]}"
        )
    return Run(seconds, proc.stdout or "", proc.stderr or "", rss_mb)


def stigmergy(*args: str | Path, cwd: Path, capture: bool = False, rss: bool = False) -> Run:
    """Run the installed `stigmergy` with `args` in `cwd`."""
    return run([CLI, *args], cwd, capture=capture, rss=rss)


def repeat(
    args: Sequence[str | Path],
    cwd: Path,
    *,
    runs: int,
    warmup: int = 0,
    env: Mapping[str, str] | None = None,
) -> list[float]:
    """Wall times of `runs` runs of `args` (stdout discarded), after `warmup` untimed runs."""
    for _ in range(warmup):
        run(args, cwd, env=env)
    return [run(args, cwd, env=env).seconds for _ in range(runs)]


def peak_rss_mb(args: Sequence[str | Path], cwd: Path) -> float:
    """Peak resident set size of one run of `args`, in MB (MiB)."""
    measured = run(args, cwd, rss=True).rss_mb
    if measured is None:
        raise BenchError(f"no peak RSS reported for {' '.join(map(str, args))}")
    return measured


def git(repo: Path, *args: str) -> None:
    """Run git in `repo` with a fixed identity, no signing and `main` as the first branch."""
    run(
        [
            "git",
            "-c",
            "user.name=stigmergy-bench",
            "-c",
            "user.email=bench@example.invalid",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
            *args,
        ],
        repo,
    )


@contextlib.contextmanager
def temp_repo(label: str, *, files: int = 0, allow_empty: bool = False) -> Iterator[Path]:
    """A fresh git repository with one commit and `stigmergy init` done; removed at exit.

    The commit is empty, or holds `files` small source files in a few directories (what an
    agent's worktree reset, status and commit have to look at in a small project).
    `allow_empty`: a task whose executor changes nothing is done (`tasks.allow_empty`), for
    benchmarks that time the tool around an executor that does nothing (`true`).
    """
    with scratch_dir(label) as tmp:
        repo = tmp / "repo"
        repo.mkdir()
        git(repo, "init", "-q")
        for i in range(files):
            source = repo / f"pkg{i % 4}" / f"module{i:03d}.py"
            source.parent.mkdir(exist_ok=True)
            source.write_text(
                "".join(f"def f{j}() -> int:\n    return {i * j}\n" for j in range(20))
            )
        if files:
            git(repo, "add", "-A")
        git(repo, "commit", "-q", "--allow-empty", "-m", "initial" if files else "empty")
        stigmergy("init", cwd=repo)
        if allow_empty:
            config = repo / ".stigmergy" / "config.yaml"
            text = config.read_text()
            config.write_text(text.replace("  allow_empty: false", "  allow_empty: true", 1))
        yield repo


# -- generated pools --------------------------------------------------------------------------

_LABELS: tuple[tuple[str, ...], ...] = (
    (),
    ("backend",),
    ("frontend", "ui"),
    (),
    ("infra",),
    ("backend", "api"),
)
_ROLES: tuple[str | None, ...] = (None, None, "reviewer", None, "builder")


def task_id(i: int, prefix: str = "t") -> str:
    """`t00001`."""
    return f"{prefix}{i:05d}"


def import_yaml(count: int, *, first: int = 1, prefix: str = "t") -> str:
    """A YAML list for `task import`: tasks `first`..`first + count - 1` with varied priorities,
    some labels, roles and descriptions; every third depends on the one before it."""
    out = []
    for i in range(first, first + count):
        out.append(f"- id: {task_id(i, prefix)}\n  title: Benchmark task number {i}\n")
        out.append(f"  priority: {(i * 37) % 101}\n")
        if i % 4 == 0:
            out.append(f"  description: Generated for a benchmark pool, task {i}.\n")
        labels = _LABELS[i % len(_LABELS)]
        if labels:
            out.append(f"  labels: [{', '.join(labels)}]\n")
        role = _ROLES[i % len(_ROLES)]
        if role:
            out.append(f"  role: {role}\n")
        if i % 3 == 0 and i > first:
            out.append(f"  depends_on: [{task_id(i - 1, prefix)}]\n")
    return "".join(out)


def plain_yaml(ids: Sequence[str]) -> str:
    """A YAML list for `task import` of plain tasks: id, title and a varied priority only, so
    every one is ready and open to an agent without a role."""
    return "".join(
        f"- id: {tid}\n  title: Plain benchmark task {n}\n  priority: {(n * 37) % 101}\n"
        for n, tid in enumerate(ids, 1)
    )


def import_plain(repo: Path, ids: Sequence[str]) -> float:
    """`task import` of `plain_yaml(ids)` into `repo`; returns its wall time."""
    source = repo.parent / f"import-{ids[0]}-{len(ids)}.yaml"
    source.write_text(plain_yaml(ids))
    try:
        return run([CLI, "task", "import", source], repo).seconds
    finally:
        source.unlink()


# -- statistics and output -------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], pct: float) -> float:
    """The `pct`-th percentile (0-100), interpolating linearly between ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def secs(value: float) -> str:
    """Seconds as `0.58 s`."""
    return f"{value:.2f} s"


def millis(value: float) -> str:
    """Seconds as `42 ms` (one decimal under 10 ms)."""
    ms = value * 1000
    return f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"


def megabytes(value: float) -> str:
    return f"{value:.0f} MB"


def of_bar(value: float, bar: float, fmt: Callable[[float], str], aim: float | None = None) -> str:
    """`(bar 1.00 s: 0.58x of bar)`, flagged when over the bar. Bars are reported, not asserted."""
    ratio = value / bar
    flag = " OVER" if ratio > 1 else ""
    goal = f", aim {fmt(aim)}" if aim is not None else ""
    return f"(bar {fmt(bar)}{goal}: {ratio:.2f}x of bar{flag})"


def of_floor(
    value: float, bar: float, fmt: Callable[[float], str], aim: float | None = None
) -> str:
    """`(bar at least 90%: 0.97x of bar UNDER)`: of_bar for figures where more is better."""
    ratio = value / bar
    flag = " UNDER" if ratio < 1 else ""
    goal = f", aim {fmt(aim)}" if aim is not None else ""
    return f"(bar at least {fmt(bar)}{goal}: {ratio:.2f}x of bar{flag})"


def count(n: int) -> str:
    """`10,000`."""
    return f"{n:,}"


def parse_args(
    description: str, more: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    """The common command line: `--quick` shrinks sizes for a smoke run; `more` adds a
    script's own options."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes and fewer runs, for a smoke test"
    )
    if more is not None:
        more(parser)
    return parser.parse_args()


def header(title: str, quick: bool) -> None:
    """What ran where: the benchmark, the CLI and the machine."""
    version = stigmergy("--version", cwd=PROJECT, capture=True).stdout.strip()
    mode = " (--quick: reduced sizes)" if quick else ""
    print(f"== {title}{mode}")
    print(
        f"   {version} at {CLI}; Python {platform.python_version()}; "
        f"{os.cpu_count()} CPUs; temp dir {bench_tmp()}{filesystem(bench_tmp())}"
        f"{'' if os.environ.get(BENCH_TMP_VAR) else f' (set {BENCH_TMP_VAR} to change)'}; "
        "bytecode cached under a temporary PYTHONPYCACHEPREFIX"
    )
    if hasattr(os, "getloadavg"):
        print(f"   load average at start: {os.getloadavg()[0]:.2f} (other work skews every figure)")
    print(f"   {cpu_speed()}; {file_speed()}")


def filesystem(path: str) -> str:
    """ " on <type>" for the filesystem holding `path` (Linux), and for ext4 whether it has a
    journal: without one, ext4 skips every inode freed in the last minutes when it allocates
    a new one (fs/ext4/ialloc.c, recently_deleted), so creating a file costs more the more
    files were deleted lately, by anyone. Empty where /proc does not say."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        st = Path(path).stat()
    except OSError:
        return ""
    real = os.path.realpath(path)
    best, kind = "", ""
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, fields[2]
    if kind != "ext4":
        return f" on {kind}" if kind else ""
    device = Path(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}").resolve().name
    journal = any(Path("/proc/fs/jbd2").glob(f"{device}-*"))
    return " on ext4" if journal else " on ext4 without a journal (file creation slows with churn)"


def file_speed() -> str:
    """How long creating a file in the temp dir takes right now (see `filesystem`)."""
    count = 200
    with scratch_dir("files") as tmp:
        start = time.perf_counter()
        for i in range(count):
            os.close(os.open(f"{tmp}/{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        each = (time.perf_counter() - start) / count
    return f"file creation probe ({count} empty files in the temp dir): {each * 1e6:.0f} µs each"


def cpu_speed() -> str:
    """How fast this CPU is right now: the same pure-Python work timed three times. On a
    shared virtual machine it can vary by half between runs minutes apart, and so does every
    figure that depends on CPU."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        sum(range(5_000_000))
        times.append(time.perf_counter() - start)
    return (
        "CPU speed probe (sum(range(5e6)), best of 3): "
        f"{millis(min(times))}, worst {millis(max(times))}"
    )


def main_guard(body: Callable[[], None]) -> None:
    """Run `body`; a failed command becomes one message and exit status 1."""
    try:
        body()
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
