"""`task add` as the pool grows: does the 1,000th add cost more than the 10th?

Each add is its own `stigmergy task add "Task N"` process with a generated id; every other one
also takes `--dep` on the task added just before it. Calls 1-50 run on a pool of 0-49 tasks and
calls 951-1000 on a pool of 950-999.

By default (1,000 sequential processes take minutes on a small machine) the late window runs in
a second repository filled to 950 tasks by one `task import`, and the two windows are
interleaved call by call, so both see the same machine load and the ratio measures the pool
size rather than the noise. `--full` instead adds all 1,000 one by one in a single repository
and prints the median per tenth. The output says which was done.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from _common import (
    CLI,
    count,
    header,
    import_yaml,
    main_guard,
    median,
    millis,
    of_bar,
    percentile,
    run,
    secs,
    temp_repo,
)

RATIO_BAR = 1.1  # late adds / early adds, medians; 1.0 means flat, the rest is noise
_ADDED = re.compile(r"^Added (\S+) \(")


class Adder:
    """Adds tasks one process at a time and remembers each call's wall time."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.calls = 0
        self.last_id: str | None = None
        self.times: dict[int, float] = {}  # call number -> seconds

    def add(self) -> None:
        self.calls += 1
        argv: list[str | Path] = [CLI, "task", "add", f"Task {self.calls}"]
        if self.calls % 2 == 0 and self.last_id is not None:
            argv += ["--dep", self.last_id]
        done = run(argv, self.repo, capture=True)
        found = _ADDED.match(done.stdout)
        if found is None:
            raise SystemExit(f"unexpected `task add` output: {done.stdout!r}")
        self.last_id = found.group(1)
        self.times[self.calls] = done.seconds

    def window(self, first: int, last: int) -> list[float]:
        return [self.times[i] for i in range(first, last + 1)]


Outcome = tuple[list[float], list[float], str, list[str]]  # early, late, method, details


def interleaved(total: int, width: int) -> Outcome:
    """Early and late windows in two repositories, alternating calls (ABBA order)."""
    late_first = total - width + 1
    with temp_repo("add-small") as small_repo, temp_repo("add-large") as large_repo:
        # Two untimed adds first, so no timed call writes bytecode; they count in the pool.
        warmups = 2
        for i in range(warmups):
            run([CLI, "task", "add", f"Warm-up {i}", "--id", f"warm-up-{i}"], large_repo)
        source = large_repo.parent / "bulk.yaml"
        source.write_text(import_yaml(late_first - 1 - warmups, prefix="bulk"))
        imported = run([CLI, "task", "import", source], large_repo).seconds
        small, large = Adder(small_repo), Adder(large_repo)
        large.calls = late_first - 1
        for k in range(width):
            pair = (small, large) if k % 2 == 0 else (large, small)
            for adder in pair:
                adder.add()
        early, late = small.window(1, width), large.window(late_first, total)
    estimate = total * median([*early, *late])
    how = (
        f"interleaved windows: calls 1-{width} in a fresh repository, calls "
        f"{late_first}-{total} in one filled to {count(late_first - 1)} tasks by "
        f"`task import` ({secs(imported)}), alternating call by call; {count(total)} "
        f"sequential adds would take about {estimate:.0f} s here (--full does that)"
    )
    return early, late, how, []


def sequential(total: int, width: int) -> Outcome:
    """Every add a process, in one repository; details give the median per tenth."""
    with temp_repo("add") as repo:
        run([CLI, "task", "list"], repo)  # untimed, so no timed call writes bytecode
        adder = Adder(repo)
        for _ in range(total):
            adder.add()
    tenth = total // 10
    details = [
        f"   calls {start}-{start + tenth - 1}: "
        f"median {millis(median(adder.window(start, start + tenth - 1)))}"
        for start in range(1, total + 1, tenth)
    ]
    how = f"all {count(total)} adds were separate `task add` processes, one after another"
    return adder.window(1, width), adder.window(total - width + 1, total), how, details


def body() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200 tasks, windows of 20")
    parser.add_argument(
        "--full", action="store_true", help="add every task by its own process, in one repository"
    )
    args = parser.parse_args()
    quick: bool = args.quick
    full: bool = args.full
    total, width = (200, 20) if quick else (1_000, 50)
    header(f"task add cost as the pool grows to {count(total)}", quick)
    print("   for scale: Backlog.md grows from 0.46 s to 1.08 s per call over 1,000 tasks\n")
    early, late, how, details = sequential(total, width) if full else interleaved(total, width)
    print(f"method: {how}")
    for line in details:
        print(line)
    late_first = total - width + 1
    for label, first, last, times in (
        ("early", 1, width, early),
        ("late", late_first, total, late),
    ):
        print(
            f"task add, calls {first}-{last} ({label}, pool of {first - 1}-{last - 1}): "
            f"median {millis(median(times))}, p90 {millis(percentile(times, 90))}, "
            f"min {millis(min(times))}, max {millis(max(times))}"
        )
    ratio = median(late) / median(early)
    print(
        f"late / early median: {ratio:.2f} {of_bar(ratio, RATIO_BAR, lambda x: f'{x:.2f}')} "
        f"(Backlog.md: {1.08 / 0.46:.2f})"
    )


if __name__ == "__main__":
    main_guard(body)
