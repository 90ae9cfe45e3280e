from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from stigmergy_cli import config, yamlio
from stigmergy_cli.errors import ConfigError
from stigmergy_cli.paths import template_dir


def _template() -> Any:
    text = (template_dir() / "config.yaml").read_text()
    return yamlio.load(
        text.replace("${target}", "main")
        .replace("${backend}", "local")
        .replace("${remote}", "null")
    )


def test_the_template_documents_every_setting_and_holds_the_defaults() -> None:
    parsed = config.parse(_template(), "template")
    assert parsed == config.Config()
    text = (template_dir() / "config.yaml").read_text()
    for setting in config.SETTINGS:
        leaf = setting.key.rsplit(".", 1)[-1]
        assert re.search(rf"^\s*{leaf}:", text, re.MULTILINE), (
            f"{setting.key} is not in the template"
        )


def test_an_empty_file_means_defaults() -> None:
    assert config.parse(None, "c") == config.Config()


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"agent": {"lease": "long"}}, "'agent.lease' must be a number"),
        ({"agent": {"lease": -5}}, "'agent.lease' must be greater than 0"),
        ({"agent": {"lease": True}}, "'agent.lease' must be a number"),
        ({"agent": {"lease": float("nan")}}, "'agent.lease' must be a finite number"),
        ({"pressure": {"signals": {"skip": float("nan")}}}, "must be a finite number"),
        ({"agent": {"sweep_interval": float("inf")}}, "must be a finite number"),
        ({"agent": {"heartbeat_interval": 0}}, "'agent.heartbeat_interval' must be greater than 0"),
        ({"agent": {"lease": 6, "heartbeat_interval": 5}}, "at least twice"),
        ({"agent": {"leese": 60}}, "unknown key 'agent.leese' \\(did you mean 'agent.lease'\\?\\)"),
        ({"tasks": {"max_attempts": 2.5}}, "'tasks.max_attempts' must be a whole number"),
        ({"tasks": {"max_attempts": 0}}, "'tasks.max_attempts' must be at least 1"),
        ({"pressure": {"strategy": "cubic"}}, "'pressure.strategy' must be one of"),
        ({"pressure": {"jitter": 2}}, "'pressure.jitter' must be at least 0 and at most 1"),
        ({"pressure": {"signals": {"skip": 5}}}, "'pressure.signals.skip'"),
        ({"merge": {"conflict_priority": 101}}, "'merge.conflict_priority'"),
        ({"target": ""}, "'target' must be a non-empty string"),
        ({"target": "bad..name"}, "not a valid branch name"),
        ({"target": "-x"}, "not a valid branch name"),
        ({"backend": "git"}, "needs 'remote'"),
        ({"backend": "git", "remote": "--upload-pack=touch pwned"}, "not a git remote name"),
        ({"remote": "origin; rm -rf /"}, "not a git remote name"),
        ({"remote": "team/../x"}, "not a git remote name"),
        ({"backend": "s3"}, "'backend' must be one of"),
        ({"schema": 2}, "'schema'"),
        ([1, 2], "expected a mapping"),
        ({1: "x"}, "is not a string"),
    ],
)
def test_bad_settings_name_the_key(doc: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.parse(doc, "config.yaml")


def test_environment_overrides_win_and_are_validated() -> None:
    parsed = config.parse({"agent": {"lease": 60}}, "c", {"STIGMERGY_AGENT_LEASE": "120"})
    assert parsed.lease == 120.0
    parsed = config.parse({}, "c", {"STIGMERGY_PRESSURE_SIGNALS_SKIP": "0.5"})
    assert parsed.pressure.signal_skip == 0.5
    with pytest.raises(
        ConfigError, match=r"STIGMERGY_AGENT_LEASE: 'agent\.lease' must be a number"
    ):
        config.parse({}, "c", {"STIGMERGY_AGENT_LEASE": "soon"})
    with pytest.raises(ConfigError, match="STIGMERGY_TASKS_MAX_ATTEMPTS: not a valid value"):
        config.parse({}, "c", {"STIGMERGY_TASKS_MAX_ATTEMPTS": "[unclosed"})


def test_load_reports_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing; run `stigmergy init`"):
        config.load(tmp_path / "config.yaml")
    bad = tmp_path / "config.yaml"
    bad.write_text("agent:\n  lease: [60\n")
    with pytest.raises(ConfigError, match="invalid YAML at line"):
        config.load(bad)
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError):
        config.load(bad)
