"""Listing a large pool: `task list` on 10,000 tasks, cold (list cache being built) and warm.

Builds the pool with one `stigmergy task import FILE` (timed too), waits out the list cache's
2-second window for recently changed files, then times each listing as a whole process and
measures its peak RSS in one extra run. "Cold" means the list cache is cold: every task file is
parsed and the cache written. The files themselves were just written, so the OS page cache is
warm in every run here.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from _common import (
    CACHE_SETTLE,
    CLI,
    count,
    header,
    import_yaml,
    main_guard,
    median,
    megabytes,
    of_bar,
    parse_args,
    repeat,
    run,
    secs,
    temp_repo,
)

BAR = 1.0  # seconds, any listing of 10,000 tasks
AIM = 0.5
RSS_BAR = 150.0  # MB, peak RSS of the warm `--json` listing


def listing(
    label: str,
    argv: list[str | Path],
    repo: Path,
    runs: int,
    *,
    json_out: bool,
    rss_bar: bool = False,
) -> None:
    """Time `argv` `runs` times, then once more for peak RSS and the number of tasks shown."""
    times = repeat(argv, repo, runs=runs)
    extra = run(argv, repo, capture=True, rss=True)
    shown = len(json.loads(extra.stdout)) if json_out else extra.stdout.count("\n") - 1
    rss = extra.rss_mb or 0.0
    rss_note = f" {of_bar(rss, RSS_BAR, megabytes)}" if rss_bar else ""
    med = median(times)
    print(
        f"{label}: median {secs(med)} {of_bar(med, BAR, secs, AIM)} "
        f"[{secs(min(times))}-{secs(max(times))} over {runs}], "
        f"{count(shown)} shown, peak RSS {megabytes(rss)}{rss_note}"
    )


def body() -> None:
    args = parse_args(__doc__ or "")
    quick: bool = args.quick
    n, runs = (1_000, 3) if quick else (10_000, 5)
    header(f"task list on {count(n)} tasks", quick)
    print("   for scale: Backlog.md 0.82 s for 1,000 tasks; Task Master 4.2 s\n")
    cli = str(CLI)
    with temp_repo("list") as repo:
        source = repo.parent / "tasks.yaml"
        source.write_text(import_yaml(n))
        imported = run([cli, "task", "import", source], repo, rss=True)
        deps = n // 3
        print(
            f"task import, {count(n)} tasks ({count(deps)} with a dependency, "
            f"{source.stat().st_size / 2**20:.1f} MB of YAML): {secs(imported.seconds)}, "
            f"{n / imported.seconds:,.0f} tasks/s, peak RSS {megabytes(imported.rss_mb or 0)} "
            "(under /usr/bin/time: adds about 1 ms)"
        )
        time.sleep(CACHE_SETTLE)

        as_json: list[str | Path] = [cli, "task", "list", "--json"]
        cold = run(as_json, repo).seconds
        cached = [f for f in (repo / ".stigmergy" / "cache").glob("*") if f.is_file()]
        size = (
            f"{len(cached)} file(s), {sum(f.stat().st_size for f in cached) / 2**20:.1f} MB"
            if cached
            else "no cache file written!"
        )
        print(
            f"task list --json, {count(n)} tasks, cold (builds the list cache, {size}): "
            f"{secs(cold)} {of_bar(cold, BAR, secs, AIM)}"
        )
        listing(
            f"task list --json, {count(n)} tasks, warm",
            as_json,
            repo,
            runs,
            json_out=True,
            rss_bar=True,
        )
        listing(
            f"task list (table, stdout to /dev/null), {count(n)} tasks, warm",
            [cli, "task", "list"],
            repo,
            runs,
            json_out=False,
        )
        listing(
            "task list --ready --json, warm",
            [cli, "task", "list", "--ready", "--json"],
            repo,
            runs,
            json_out=True,
        )
        listing(
            "task list --status done --json, warm (every task here is pending: it scans "
            "and scores them all, shows none)",
            [cli, "task", "list", "--status", "done", "--json"],
            repo,
            runs,
            json_out=True,
        )


if __name__ == "__main__":
    main_guard(body)
