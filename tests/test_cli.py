"""The CLI end to end, in-process: what a user types, what they see, what lands on disk."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import Cli, snapshot


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_version(cli: Cli) -> None:
    result = cli("--version")
    assert result.code == 0
    assert result.out.startswith("stigmergy ")


def test_a_first_session(cli: Cli, in_repo: Path) -> None:
    assert cli("task", "add", "Set up the schema", "--id", "schema", "--priority", "high").code == 0
    added = cli(
        "task",
        "add",
        "Implement JWT auth",
        "--dep",
        "schema",
        "--verify",
        "pytest -q",
        "--label",
        "backend",
        "--role",
        "dev",
        "--input",
        "src/",
        "--output",
        "src/jwt.py",
        "--timeout",
        "600",
        "--max-attempts",
        "5",
        "--description",
        "Two\nlines",
        "--json",
    )
    assert added.code == 0, added.err
    task = json.loads(added.out)
    assert task["id"].startswith("implement-jwt-auth-")
    assert task["status"] == "pending"
    assert task["depends_on"] == ["schema"]
    assert task["blocked"] == "waits for schema (pending)"
    for key in ("id", "title", "status", "priority", "score", "depends_on", "attempts", "role"):
        assert key in task
    assert (task["verify"], task["timeout"], task["max_attempts"]) == ("pytest -q", 600.0, 5)

    listed = json.loads(cli("task", "list", "--json").out)
    assert [t["id"] for t in listed] == ["schema", task["id"]]
    assert [t["id"] for t in json.loads(cli("task", "list", "--ready", "--json").out)] == ["schema"]
    blocked = cli("task", "list", "--blocked")
    assert "schema (pending)" in blocked.out
    assert json.loads(cli("task", "list", "--role", "dev", "--json").out)[0]["id"] == task["id"]
    assert json.loads(cli("task", "list", "--label", "nope", "--json").out) == []

    table = cli("task", "list")
    assert table.code == 0
    assert "Set up the schema" in table.out
    assert "ready" in table.out
    assert "blocked" in table.out

    shown = cli("task", "show", task["id"])
    assert "Implement JWT auth" in shown.out
    assert "waits for schema (pending)" in shown.out
    assert json.loads(cli("task", "show", "schema", "--json").out)["ready"] is True

    log = (in_repo / ".stigmergy" / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in log] == ["task_added", "task_added"]


def test_cancel_retry_and_boost(cli: Cli, in_repo: Path) -> None:
    cli("task", "add", "A", "--id", "a", "--priority", "10")
    cli("task", "add", "B", "--id", "b", "--priority", "20")
    assert cli("task", "boost", "a").code == 0
    assert [t["id"] for t in json.loads(cli("task", "list", "--json").out)] == ["a", "b"]
    assert cli("task", "cancel", "a").out == "a is now cancelled.\n"
    refused = cli("task", "boost", "a")
    assert refused.code == 1
    assert "cannot boost task 'a': it is cancelled" in _one_error_line(refused.err)
    assert cli("task", "retry", "a").code == 0
    assert json.loads(cli("task", "show", "a", "--json").out)["status"] == "pending"
    events = [
        json.loads(x)["event"]
        for x in (in_repo / ".stigmergy" / "events.jsonl").read_text().splitlines()
    ]
    assert events[-3:] == ["boosted", "cancelled", "retried"]


def test_urgent_jumps_the_queue(cli: Cli, in_repo: Path) -> None:
    cli("task", "add", "Important", "--id", "important", "--priority", "urgent")
    cli("task", "add", "Fire", "--id", "fire", "--priority", "low", "--urgent")
    assert [t["id"] for t in json.loads(cli("task", "list", "--json").out)] == ["fire", "important"]


def test_import_from_a_file_and_from_stdin(cli: Cli, in_repo: Path) -> None:
    (in_repo / "batch.yaml").write_text(
        "- {id: one, title: One}\n- {id: two, title: Two, depends_on: [one], priority: high}\n"
    )
    result = cli("task", "import", "batch.yaml")
    assert (result.code, result.out) == (0, "Imported 2 tasks.\n")
    piped = cli(
        "task",
        "import",
        "-",
        "--json",
        stdin="tasks:\n  - title: From stdin\n    depends_on: [two]\n",
    )
    assert piped.code == 0, piped.err
    assert json.loads(piped.out)[0]["depends_on"] == ["two"]


def test_an_import_with_or_without_typer(cli: Cli, in_repo: Path, tmp_path: Path) -> None:
    """`task import` runs without typer (cli/fastpath.py) in the forms programs use; `--`
    makes typer parse it, and both must answer alike."""
    (in_repo / "one.yaml").write_text("- {id: one, title: One}\n")
    (in_repo / "bad.yaml").write_text("- {id: a, title: [\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = str(in_repo)
    first = cli("--root", root, "task", "import", "--json", f"{root}/one.yaml", cwd=elsewhere)
    assert first.code == 0, first.err
    assert [t["id"] for t in json.loads(first.out)] == ["one"]
    for name in ("one.yaml", "bad.yaml", "absent.yaml"):
        before = snapshot(in_repo)
        quick = cli(f"--root={root}", "task", "import", f"{root}/{name}")
        parsed = cli(f"--root={root}", "task", "import", "--", f"{root}/{name}")
        assert quick.code == parsed.code != 0
        assert (quick.out, quick.err) == (parsed.out, parsed.err)
        assert snapshot(in_repo) == before


def test_an_import_does_not_load_typer(in_repo: Path) -> None:
    (in_repo / "one.yaml").write_text("- {id: one, title: One}\n")
    probe = (
        "import sys\n"
        "from stigmergy_cli.cli import main\n"
        "code = main(['task', 'import', 'one.yaml'])\n"
        "print(code, sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'rich')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=in_repo, capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines()[-1] == "0 []", done.stderr


def test_a_corrupt_task_file_is_reported_and_the_rest_listed(cli: Cli, in_repo: Path) -> None:
    cli("task", "add", "Fine", "--id", "fine")
    (in_repo / ".stigmergy" / "tasks" / "pending" / "broken.yaml").write_text("title: [")
    result = cli("task", "list", "--json")
    assert result.code == 0
    assert [t["id"] for t in json.loads(result.out)] == ["fine"]
    assert "skipped .stigmergy/tasks/pending/broken.yaml: invalid YAML" in result.err
    assert len(result.err.splitlines()) == 1


def test_works_from_a_subdirectory_and_with_root(cli: Cli, in_repo: Path, tmp_path: Path) -> None:
    sub = in_repo / "deep" / "er"
    sub.mkdir(parents=True)
    assert cli("task", "add", "From below", "--id", "below", cwd=sub).code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert "below" in cli("--root", str(in_repo), "task", "list", cwd=elsewhere).out


BAD_INPUTS: list[tuple[list[str], int, str]] = [
    (["task", "add", "x", "--id", "../x"], 2, "invalid task id '../x'"),
    (["task", "add", "x", "--id", "-rf"], 2, "invalid task id '-rf'"),
    (["task", "add", "x", "--id", "--upload-pack=evil"], 2, "invalid task id '--upload-pack=evil'"),
    (["task", "add", "x", "--id", "a\nb"], 2, "whitespace"),
    (["task", "add", "x", "--id", "a" * 300], 2, "300 characters"),
    (["task", "add", "x", "--id", "existing"], 1, "already exists"),
    (["task", "add", "x", "--dep", "ghost"], 1, "unknown dependency 'ghost'"),
    (["task", "add", "x", "--id", "loop", "--dep", "loop"], 2, "cannot depend on itself"),
    (["task", "add", "x", "--dep", "../up"], 2, "invalid dependency id"),
    (["task", "add", "x", "--priority", "101"], 2, "must be from 0 to 100"),
    (["task", "add", "x", "--priority", "-1"], 2, "must be from 0 to 100"),
    (["task", "add", "x", "--priority", "hihg"], 2, "invalid priority 'hihg'"),
    (["task", "add", "x", "--timeout", "-5"], 2, "timeout"),
    (["task", "add", "x", "--max-attempts", "0"], 2, "max_attempts"),
    (["task", "add", ""], 2, "title must not be empty"),
    (["task", "add", "two\nlines"], 2, "newlines"),
    (["task", "add", "x", "--role", "a b"], 2, "invalid role"),
    (["task", "add", "x", "--label", ""], 2, "invalid label"),
    (["task", "add", "x", "--input", "/etc/passwd"], 2, "relative path"),
    (["task", "add", "x", "--bogus"], 2, "No such option: --bogus"),
    (["task", "add", "x", "--timeout", "soon"], 2, "soon"),
    (["task", "add", "x", "--timeout", "nan"], 2, "must be a finite number"),
    (["agent", "run", "--id", "a", "--wake-threshold", "nan"], 2, "must be a finite number"),
    (["agent", "run", "--id", "a", "--idle-exit", "nan"], 2, "must be a finite number"),
    (["task", "import", "nan.yaml"], 2, "task 1: timeout must be a finite number"),
    (["task", "show", "../x"], 2, "invalid task id"),
    (["task", "show", "ghost"], 1, "no task with id 'ghost'"),
    (["task", "cancel", "ghost"], 1, "no task with id 'ghost'"),
    (["task", "retry", "existing"], 1, "cannot retry task 'existing': it is pending"),
    (["task", "list", "--status", "bogus"], 2, "unknown status 'bogus'"),
    (["task", "import", "absent.yaml"], 2, "cannot read absent.yaml"),
    (["task", "import", "bad.yaml"], 2, "invalid YAML at line"),
    (["task", "import", "map.yaml"], 2, "expected a YAML list of tasks"),
    (["task", "import", "empty.yaml"], 2, "the list of tasks is empty"),
    (["task", "import", "one-bad.yaml"], 2, "one-bad.yaml: task 2: invalid task id"),
    (["task", "import", "cycle.yaml"], 1, "dependency cycle"),
    (["task", "import", "dupe.yaml"], 1, "task id 'existing' already exists"),
    (["task", "import", "scalar.yaml"], 2, "task 1: expected a mapping"),
    (["init", "--target", "nope"], 1, "already initialized with target 'main'"),
    (["bogus"], 2, "No such command 'bogus'"),
]


@pytest.mark.parametrize(
    ("args", "code", "message"), BAD_INPUTS, ids=[" ".join(a)[:40] for a, _, _ in BAD_INPUTS]
)
def test_bad_input_is_one_line_and_changes_nothing(
    cli: Cli, in_repo: Path, args: list[str], code: int, message: str
) -> None:
    cli("task", "add", "Existing", "--id", "existing")
    files = {
        "bad.yaml": "- {id: a, title: [\n",
        "map.yaml": "title: not a list\n",
        "empty.yaml": "[]\n",
        "one-bad.yaml": "- {id: fine, title: Fine}\n- {id: ../bad, title: Bad}\n",
        "cycle.yaml": (
            "- {id: c1, title: C1, depends_on: [c2]}\n- {id: c2, title: C2, depends_on: [c1]}\n"
        ),
        "dupe.yaml": "- {id: fresh, title: Fresh}\n- {id: existing, title: Again}\n",
        "scalar.yaml": "- just a string\n",
        "nan.yaml": "- {id: n, title: N, timeout: .nan}\n",
    }
    for name, text in files.items():
        (in_repo / name).write_text(text)
    before = snapshot(in_repo)
    result = cli(*args)
    assert result.code == code, result.err
    assert message in _one_error_line(result.err)
    assert result.out == ""
    assert snapshot(in_repo) == before


def test_commands_outside_an_environment(cli: Cli, repo: Path, tmp_path: Path) -> None:
    result = cli("task", "list", cwd=repo)
    assert result.code == 1
    assert "has no .stigmergy/ yet; run `stigmergy init`" in _one_error_line(result.err)
    outside = tmp_path / "plain"
    outside.mkdir()
    result = cli("init", cwd=outside)
    assert result.code == 1
    assert "not inside a git repository" in _one_error_line(result.err)
    assert list(outside.iterdir()) == []


def test_a_broken_config_is_named(cli: Cli, in_repo: Path) -> None:
    config = in_repo / ".stigmergy" / "config.yaml"
    config.write_text(config.read_text().replace("lease: 60", "lease: sixty"))
    result = cli("task", "list")
    assert result.code == 1
    assert "'agent.lease' must be a number" in _one_error_line(result.err)


@settings(
    max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(task_id=st.text(max_size=80), title=st.text(max_size=120))
def test_random_ids_and_titles_never_crash(
    cli: Cli, in_repo: Path, task_id: str, title: str
) -> None:
    if "\x00" in task_id + title:  # argv cannot carry NUL bytes at all
        return
    before = snapshot(in_repo)
    result = cli("task", "add", title, "--id", task_id)
    assert result.code in (0, 1, 2), result.err
    if result.code:
        _one_error_line(result.err)
        assert snapshot(in_repo) == before


def test_a_self_driving_agent_claims_and_gives_back(cli: Cli, in_repo: Path) -> None:
    cli("task", "add", "First", "--id", "first", "--priority", "high")
    cli("task", "add", "Second", "--id", "second", "--dep", "first")
    claimed = cli("task", "claim", "--agent", "alpha", "--json")
    assert claimed.code == 0, claimed.err
    doc = json.loads(claimed.out)
    assert (doc["id"], doc["status"], doc["agent"]) == ("first", "active", "alpha")
    assert doc["token"].startswith("1.")
    nothing = cli("task", "claim", "--agent", "beta")
    assert nothing.code == 1
    assert "nothing to claim for agent 'beta': 1 pending (1 blocked)" in _one_error_line(
        nothing.err
    )
    locks = json.loads(cli("lock", "list", "--json").out)
    assert [(r["task"], r["agent"], r["stale"]) for r in locks] == [("first", "alpha", False)]
    agents = {r["agent"]: r for r in json.loads(cli("agent", "list", "--json").out)}
    assert agents["alpha"]["state"] == "alive"
    assert agents["alpha"]["task"] == "first"
    assert "alpha" in cli("agent", "list").out
    assert cli("agent", "heartbeat", "--id", "alpha").code == 0

    stolen = cli("task", "release", "first", "--agent", "beta")
    assert stolen.code == 1
    assert "claimed by agent 'alpha', not 'beta'" in _one_error_line(stolen.err)
    wrong_token = cli("task", "fail", "first", "--agent", "alpha", "--token", "1.nope")
    assert wrong_token.code == 1
    assert cli("task", "fail", "first", "--agent", "alpha", "--reason", "tests red").code == 0
    assert json.loads(cli("task", "show", "first", "--json").out)["attempts"] == 1
    assert cli("task", "claim", "first", "--agent", "alpha").code == 0
    released = cli("task", "release", "first", "--agent", "alpha", "--token", doc["token"])
    assert released.code == 1  # that token belonged to the first claim
    assert cli("task", "release", "first", "--agent", "alpha").code == 0
    shown = json.loads(cli("task", "show", "first", "--json").out)
    assert (shown["status"], shown["skip_count"], shown["attempts"]) == ("pending", 1, 1)
    assert cli("lock", "list").out == "No claims.\n"


def test_sweep_from_the_command_line(cli: Cli, in_repo: Path) -> None:
    assert cli("sweep").out.startswith("Nothing to sweep (0 live claims)")
    cli("task", "add", "T", "--id", "t")
    cli("task", "claim", "--agent", "alpha")
    report = json.loads(cli("sweep", "--dry-run", "--json").out)
    assert report == {"dry_run": True, "live_locks": 1, "actions": []}


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"agent": 1}', b"\xff"])
def test_corrupt_claims_and_heartbeats_are_listed_not_fatal(
    cli: Cli, in_repo: Path, content: bytes
) -> None:
    lock_dir = in_repo / ".stigmergy" / "locks" / "t.lock"
    lock_dir.mkdir()
    (lock_dir / "owner.json").write_bytes(content)
    (in_repo / ".stigmergy" / "agents" / "alpha.json").write_bytes(content)
    for args in (
        ("lock", "list"),
        ("lock", "list", "--json"),
        ("agent", "list"),
        ("agent", "list", "--json"),
        ("sweep", "--json"),
    ):
        result = cli(*args)
        assert result.code == 0, (args, result.err)
    assert json.loads(cli("agent", "list", "--json").out)[0]["state"] == "unreadable"
    assert json.loads(cli("lock", "list", "--json").out)[0]["problem"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["task", "claim", "--agent", "../x"], "invalid agent id"),
        (["task", "claim"], "Missing option '--agent'"),
        (["task", "claim", "ghost", "--agent", "a"], "no task with id 'ghost'"),
        (["task", "claim", "--agent", "a", "--role", "a b"], "invalid role"),
        (["task", "release", "t", "--agent", "a"], "does not hold a claim"),
        (["task", "fail", "-x", "--agent", "a"], "No such option"),
        (["agent", "heartbeat", "--id", "A B"], "invalid agent id"),
    ],
)
def test_bad_claim_input_changes_nothing(
    cli: Cli, in_repo: Path, args: list[str], message: str
) -> None:
    cli("task", "add", "T", "--id", "t")
    before = snapshot(in_repo)
    result = cli(*args)
    assert result.code in (1, 2)
    assert message in _one_error_line(result.err)
    assert snapshot(in_repo) == before
