"""Run every benchmarks/bench_*.py in turn; exit non-zero if any of them crashed.

Bars are reported by each script, not asserted: missing one does not fail this run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script")
    parser.add_argument(
        "only", nargs="*", help="run only scripts whose name contains one of these words"
    )
    args = parser.parse_args()
    quick: bool = args.quick
    only: list[str] = args.only
    scripts = sorted(HERE.glob("bench_*.py"))
    if only:
        scripts = [s for s in scripts if any(word in s.name for word in only)]
    if not scripts:
        print("no benchmark scripts matched", file=sys.stderr)
        return 2
    results: list[tuple[str, int, float]] = []
    for script in scripts:
        print(f"\n### {script.name}{' --quick' if quick else ''}", flush=True)
        start = time.perf_counter()
        try:
            code = subprocess.run(
                [sys.executable, str(script), *(["--quick"] if quick else [])],
                cwd=HERE.parent,
                check=False,
            ).returncode
        except KeyboardInterrupt:
            return 130
        results.append((script.name, code, time.perf_counter() - start))
    print("\n### summary")
    for name, code, seconds in results:
        status = "ok" if code == 0 else f"CRASHED (exit {code})"
        print(f"{name:<20} {status:<20} {seconds:6.1f} s")
    return 1 if any(code != 0 for _, code, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
