"""The command as a user runs it: a real process, and a wheel installed in a fresh venv."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from .conftest import git

STIGMERGY = Path(sys.executable).parent / "stigmergy"


def _run(*args: str, cwd: Path, exe: Path = STIGMERGY) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_installed_command_and_the_module_agree(tmp_path: Path) -> None:
    by_script = _run("--version", cwd=tmp_path)
    by_module = subprocess.run(
        [sys.executable, "-m", "stigmergy_cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert by_script.returncode == 0
    assert by_script.stdout == by_module.stdout
    assert by_script.stdout.startswith("stigmergy 0.")


def test_bad_input_through_a_real_process(env_root: Path) -> None:
    before = sorted(p.relative_to(env_root) for p in (env_root / ".stigmergy").rglob("*"))
    result = _run("task", "add", "Escape", "--id", "../../etc/passwd", cwd=env_root)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: invalid task id '../../etc/passwd'")
    assert result.stderr.count("\n") == 1
    assert sorted(p.relative_to(env_root) for p in (env_root / ".stigmergy").rglob("*")) == before


def test_a_closed_pipe_is_not_an_error_report(env_root: Path) -> None:
    (env_root / "many.yaml").write_text(
        "".join(f"- {{id: t{n}, title: Task {n}}}\n" for n in range(500))
    )
    assert _run("task", "import", "many.yaml", cwd=env_root).returncode == 0
    proc = subprocess.run(
        f"'{STIGMERGY}' task list | head -1",
        shell=True,
        cwd=env_root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.stdout.startswith("ID")
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_built_wheel_runs_init_from_a_fresh_venv(tmp_path: Path, repo: Path) -> None:
    source = Path(__file__).resolve().parents[1]
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("stigmergy_cli-*.whl")
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(fresh / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    # Dependencies come from this test's environment; the package itself only from the wheel.
    fresh_site = Path(
        subprocess.check_output(
            [
                str(fresh / "bin" / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            text=True,
        ).strip()
    )
    (fresh_site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.check_output(
        [
            str(fresh / "bin" / "python"),
            "-c",
            "import stigmergy_cli; print(stigmergy_cli.__file__)",
        ],
        cwd=tmp_path,
        text=True,
    )
    assert where.startswith(str(fresh))
    result = _run("init", cwd=repo, exe=fresh / "bin" / "stigmergy")
    assert result.returncode == 0, result.stderr
    assert "target: main" in (repo / ".stigmergy" / "config.yaml").read_text()
    assert (repo / ".stigmergy" / ".gitignore").read_text().startswith("# Runtime state")
    assert git(repo, "status", "--porcelain").count(".stigmergy/") == 1


def test_the_command_line_reference_is_generated_from_the_app() -> None:
    """docs/cli.md must be what the app says today (`make docs` regenerates it)."""
    typer_cli = Path(sys.executable).parent / "typer"
    generated = subprocess.run(
        [
            str(typer_cli),
            "stigmergy_cli.cli.app",
            "utils",
            "docs",
            "--name",
            "stigmergy",
            "--title",
            "stigmergy command line",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    committed = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    assert generated.strip() == committed.strip(), "docs/cli.md is stale: run `make docs`"
