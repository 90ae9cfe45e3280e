"""The built-in sample project of `stigmergy demo`: a small statistics package to write.

Each task adds one function and its unittest; some depend on others (variance needs mean);
two documentation tasks append to the same place in README.md, so with two or more agents
they are worked on from the same tip and the second one to merge conflicts.
"""

from __future__ import annotations

from dataclasses import dataclass

README = "# stats\n\nA tiny statistics package, written by stigmergy agents.\n"


@dataclass(frozen=True)
class Piece:
    """One task of the sample: what it writes, and what it needs first."""

    task_id: str
    title: str
    files: dict[str, str]
    depends_on: tuple[str, ...] = ()
    priority: int = 50
    verify_module: str | None = None  # tests.test_<name>, run with unittest
    verify_grep: str | None = None  # a line README.md must contain


def _function(
    name: str, title: str, code: str, test: str, deps: tuple[str, ...] = (), priority: int = 50
) -> Piece:
    imports = "".join(f"from stats.{dep} import {dep}\n" for dep in deps)
    gap = "\n" if imports else ""
    module = f'"""{title}."""\n\n{imports}{gap}{code.strip()}\n'
    tests = (
        f"import unittest\n\nfrom stats.{name} import {name}\n\n\n"
        f"class Test{name.title().replace('_', '')}(unittest.TestCase):\n"
        f"    def test_{name}(self) -> None:\n"
        + "".join(f"        {line}\n" for line in test.strip().splitlines())
        + "\n\nif __name__ == '__main__':\n    unittest.main()\n"
    )
    return Piece(
        task_id=name.replace("_", "-"),
        title=title,
        files={f"stats/{name}.py": module, f"tests/test_{name}.py": tests},
        depends_on=tuple(d.replace("_", "-") for d in deps),
        priority=priority,
        verify_module=f"tests.test_{name}",
    )


PIECES: tuple[Piece, ...] = (
    _function(
        "mean",
        "Write mean(): the arithmetic mean",
        "def mean(values):\n    return sum(values) / len(values)",
        "self.assertEqual(mean([1, 2, 3, 4]), 2.5)",
        priority=70,
    ),
    _function(
        "median",
        "Write median(): the middle value",
        "def median(values):\n    s = sorted(values)\n    n = len(s)\n"
        "    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2",
        "self.assertEqual(median([3, 1, 2]), 2)\nself.assertEqual(median([4, 1, 2, 3]), 2.5)",
        priority=70,
    ),
    _function(
        "mode",
        "Write mode(): the most common value",
        "def mode(values):\n    return max(sorted(set(values)), key=values.count)",
        "self.assertEqual(mode([1, 2, 2, 3]), 2)",
    ),
    _function(
        "variance",
        "Write variance(): the population variance",
        "def variance(values):\n    m = mean(values)\n"
        "    return sum((v - m) ** 2 for v in values) / len(values)",
        "self.assertEqual(variance([1, 2, 3, 4]), 1.25)",
        deps=("mean",),
        priority=60,
    ),
    _function(
        "stdev",
        "Write stdev(): the population standard deviation",
        "def stdev(values):\n    return variance(values) ** 0.5",
        "self.assertAlmostEqual(stdev([2, 4, 4, 4, 5, 5, 7, 9]), 2.0)",
        deps=("variance",),
        priority=60,
    ),
    _function(
        "zscore",
        "Write zscore(): how many deviations from the mean",
        "def zscore(value, values):\n    return (value - mean(values)) / stdev(values)",
        "self.assertAlmostEqual(zscore(9, [2, 4, 4, 4, 5, 5, 7, 9]), 2.0)",
        deps=("mean", "stdev"),
    ),
    _function(
        "clamp",
        "Write clamp(): keep a value within bounds",
        "def clamp(value, low, high):\n    return max(low, min(high, value))",
        "self.assertEqual(clamp(5, 0, 3), 3)\nself.assertEqual(clamp(-1, 0, 3), 0)",
    ),
    _function(
        "normalize",
        "Write normalize(): scale values into [0, 1]",
        "def normalize(values):\n    low, high = min(values), max(values)\n"
        "    return [clamp((v - low) / (high - low), 0, 1) for v in values]",
        "self.assertEqual(normalize([2, 4, 6]), [0.0, 0.5, 1.0])",
        deps=("clamp",),
    ),
    _function(
        "percentile",
        "Write percentile(): the value below which p percent fall",
        "def percentile(values, p):\n    s = sorted(values)\n"
        "    k = (len(s) - 1) * p / 100\n    f = int(k)\n"
        "    return s[f] + (s[min(f + 1, len(s) - 1)] - s[f]) * (k - f)",
        "self.assertEqual(percentile([1, 2, 3, 4, 5], 50), 3)",
    ),
    _function(
        "iqr",
        "Write iqr(): the interquartile range",
        "def iqr(values):\n    return percentile(values, 75) - percentile(values, 25)",
        "self.assertEqual(iqr([1, 2, 3, 4, 5]), 2)",
        deps=("percentile",),
    ),
    _function(
        "moving_average",
        "Write moving_average(): means over a sliding window",
        "def moving_average(values, window):\n"
        "    return [mean(values[i:i + window]) for i in range(len(values) - window + 1)]",
        "self.assertEqual(moving_average([1, 2, 3, 4], 2), [1.5, 2.5, 3.5])",
        deps=("mean",),
    ),
    _function(
        "describe",
        "Write describe(): a summary of a sample",
        "def describe(values):\n"
        "    return {'mean': mean(values), 'median': median(values), "
        "'stdev': stdev(values), 'iqr': iqr(values)}",
        "self.assertEqual(describe([1, 2, 3, 4, 5])['median'], 3)",
        deps=("mean", "median", "stdev", "iqr"),
        priority=40,
    ),
    # These two append to the end of README.md: the deliberate conflict.
    Piece(
        "docs-averages",
        "Document the averages in the README",
        {"README.md": README + "\n## Averages\n\nmean, median and mode.\n"},
        priority=95,
        verify_grep="## Averages",
    ),
    Piece(
        "docs-spread",
        "Document the spread measures in the README",
        {"README.md": README + "\n## Spread\n\nvariance, stdev and iqr.\n"},
        priority=95,
        verify_grep="## Spread",
    ),
)

SKELETON = {
    "README.md": README,
    "stats/__init__.py": '"""A tiny statistics package."""\n',
    "tests/__init__.py": "",
}
