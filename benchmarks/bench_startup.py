"""Start-up cost: whole-process wall time of the commands people and agents run most.

Measures `stigmergy --version` (no typer import: the entry point's fast path) and
`stigmergy task list` / `task list --json` on a pool of 5 tasks, against a 150 ms bar; then
`task import` of 100 tasks into an empty pool (no typer either), which every idle agent waits
for; then shows where a `task list` spends its import time (`python -X importtime`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from _common import (
    CACHE_SETTLE,
    CLI,
    PYTHON,
    caller_env,
    header,
    import_yaml,
    main_guard,
    median,
    millis,
    of_bar,
    parse_args,
    percentile,
    repeat,
    run,
    stigmergy,
    temp_repo,
)

from stigmergy_cli.paths import Layout

BAR = 0.150  # seconds, whole process
POOL = 5
IMPORTED = 100
TOP_IMPORTS = 8


@dataclass(frozen=True)
class ImportLine:
    module: str
    depth: int  # 0 for a top-level import, deeper for imports made while importing another
    self_us: int
    cumulative_us: int


def parse_importtime(stderr: str) -> list[ImportLine]:
    """The lines of `-X importtime` output (`import time: self | cumulative | name`)."""
    found = []
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        fields = line[len("import time:") :].split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue  # the column header line
        name = fields[2].rstrip()
        stripped = name.lstrip()
        depth = (len(name) - len(stripped) - 1) // 2
        found.append(ImportLine(stripped, depth, int(fields[0]), int(fields[1])))
    return found


def show_imports(repo: Path, runs: int) -> None:
    plain: list[str | Path] = [PYTHON, "-m", "stigmergy_cli", "task", "list"]
    args: list[str | Path] = [PYTHON, "-X", "importtime", *plain[1:]]
    run(args, repo)  # untimed, so every module's bytecode is cached
    wall = median(repeat(plain, repo, runs=runs))
    samples = [parse_importtime(run(args, repo).stderr) for _ in range(runs)]
    # Median over the runs, module by module: one run is noisy at this scale.
    by_module: dict[str, list[ImportLine]] = {}
    for sample in samples:
        for item in sample:
            by_module.setdefault(item.module, []).append(item)
    order = [item.module for item in samples[0]]
    lines = [
        ImportLine(
            name,
            by_module[name][0].depth,
            round(median([i.self_us for i in by_module[name]])),
            round(median([i.cumulative_us for i in by_module[name]])),
        )
        for name in order
    ]
    total = sum(i.cumulative_us for i in lines if i.depth == 0)
    print(
        f"\nWhere `task list` spends its imports (python -X importtime, median of {runs} runs; "
        f"all imports {total / 1000:.0f} ms of a {wall * 1000:.0f} ms process without "
        "importtime, whose bookkeeping inflates the figures below):"
    )
    print(f"   {'cumulative':>10}  {'self':>7}  module (indented = imported by the one above)")
    for item in sorted(lines, key=lambda i: i.cumulative_us, reverse=True)[:TOP_IMPORTS]:
        indent = "  " * item.depth
        print(
            f"   {item.cumulative_us / 1000:7.1f} ms  {item.self_us / 1000:4.1f} ms  "
            f"{indent}{item.module}"
        )
    roots = ("stigmergy_cli", "typer", "rich", "yaml", "_yaml", "click", "pydantic")
    own = {root: sum(i.self_us for i in lines if i.module.split(".")[0] == root) for root in roots}
    other = sum(i.self_us for i in lines) - sum(own.values())
    parts = ", ".join(f"{k} {v / 1000:.1f} ms" for k, v in own.items() if v)
    print(f"   self time by package: {parts}, everything else (stdlib) {other / 1000:.1f} ms")


def body() -> None:
    args = parse_args(__doc__ or "")
    quick: bool = args.quick
    runs, warmup = (5, 1) if quick else (20, 2)
    header("Start-up: whole-process wall time", quick)
    cli = str(CLI)
    with temp_repo("startup") as repo:
        for i in range(1, POOL + 1):
            stigmergy("task", "add", f"Startup task {i}", "--id", f"s{i}", cwd=repo)
        time.sleep(CACHE_SETTLE)  # let the list cache trust the new files
        cases: list[tuple[str, list[str | Path], bool, dict[str, str] | None]] = [
            ("python -c pass (interpreter floor)", [PYTHON, "-c", "pass"], False, None),
            ("stigmergy --version", [cli, "--version"], True, None),
            (f"stigmergy task list, {POOL} tasks", [cli, "task", "list"], True, None),
            (
                f"stigmergy task list --json, {POOL} tasks",
                [cli, "task", "list", "--json"],
                True,
                None,
            ),
        ]
        if os.environ.get("PYTHONDONTWRITEBYTECODE"):
            cases.append(
                (
                    "task list, caller's env (PYTHONDONTWRITEBYTECODE: no .pyc)",
                    [cli, "task", "list"],
                    True,
                    caller_env(),
                )
            )
        print(
            f"   {runs} timed runs each after {warmup} warm-up runs, the commands taking turns "
            "so that all of them see the same machine load\n"
        )
        for _label, argv, _bar, env in cases:
            repeat(argv, repo, runs=0, warmup=warmup, env=env)
        times: list[list[float]] = [[] for _ in cases]
        for _ in range(runs):
            for i, (_label, argv, _bar, env) in enumerate(cases):
                times[i].append(run(argv, repo, env=env).seconds)
        width = max(len(c[0]) for c in cases)
        for (label, _argv, has_bar, _env), samples in zip(cases, times, strict=True):
            med, p90 = median(samples), percentile(samples, 90)
            bar = f" {of_bar(med, BAR, millis)}" if has_bar else ""
            print(
                f"{label:<{width}}: median {millis(med)}{bar}, p90 {millis(p90)}, "
                f"min {millis(min(samples))}"
            )
        import_startup(runs, warmup)
        show_imports(repo, 3 if quick else 5)


def import_startup(runs: int, warmup: int) -> None:
    """`task import` of IMPORTED tasks into an empty pool, the pool emptied after each run.

    The imported files and the list cache the import filled are moved out of the pool, not
    deleted: deleting them would slow the next run's file creation on an ext4 without a
    journal (see `_common.filesystem`), and a cache kept would grow with every run."""
    with temp_repo("startup-import") as repo:
        source = repo.parent / "import.yaml"
        source.write_text(import_yaml(IMPORTED))
        layout = Layout(repo)
        pending, cache = layout.state_dir("pending"), layout.task_cache("pending")
        samples = []
        for k in range(warmup + runs):
            seconds = run([CLI, "task", "import", source], repo).seconds
            moved = repo.parent / f"imported-{k}"
            moved.mkdir()
            for path in [*pending.glob("*.yaml"), cache]:
                path.rename(moved / path.name)
            if k >= warmup:
                samples.append(seconds)
    print(
        f"stigmergy task import, {IMPORTED} tasks: median {millis(median(samples))}, p90 "
        f"{millis(percentile(samples, 90))}, min {millis(min(samples))} (idle agents wait for "
        "it; no bar of its own)"
    )


if __name__ == "__main__":
    main_guard(body)
