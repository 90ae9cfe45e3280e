"""config.yaml: the tunables, validated by type and range, with STIGMERGY_<KEY> overrides.

Every setting is declared once in SETTINGS; templates/config.yaml documents each of them and a
test keeps the two in step.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stigmergy_cli import __version__, atomic, defaults, yamlio
from stigmergy_cli.errors import ConfigError

BACKENDS = ("local", "git")
STRATEGIES = ("exponential", "linear", "step", "stochastic")
# git's own rules are richer (check-ref-format); this catches what can be checked offline.
_BRANCH_RE = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[^\x00-\x20~^:?*\[\\\x7f]+(?<![./])$")
# A git remote's name as stigmergy accepts it: no leading dash, no spaces or shell syntax.
REMOTE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")


@dataclass(frozen=True)
class Setting:
    key: str
    kind: type
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    nullable: bool = False
    exclusive_minimum: bool = False
    item: type | None = None  # for kind=list: the type of each entry (int or str)


SETTINGS: tuple[Setting, ...] = (
    Setting("schema", int, defaults.CONFIG_SCHEMA, minimum=1, maximum=defaults.CONFIG_SCHEMA),
    Setting("target", str, defaults.TARGET_BRANCH),
    Setting("backend", str, "local", choices=BACKENDS),
    Setting("remote", str, None, nullable=True),
    Setting("agent.command", str, None, nullable=True),
    Setting(
        "agent.heartbeat_interval",
        float,
        defaults.HEARTBEAT_INTERVAL,
        minimum=0,
        maximum=3600,
        exclusive_minimum=True,
    ),
    Setting("agent.lease", float, defaults.LEASE, minimum=0, maximum=86400, exclusive_minimum=True),
    Setting(
        "agent.session_lease",
        float,
        defaults.SESSION_LEASE,
        minimum=0,
        maximum=7 * 86400,
        exclusive_minimum=True,
    ),
    Setting(
        "agent.poll_interval",
        float,
        defaults.POLL_INTERVAL,
        minimum=0,
        maximum=60,
        exclusive_minimum=True,
    ),
    Setting("agent.wake_threshold", float, defaults.WAKE_THRESHOLD, minimum=0, maximum=100),
    Setting("agent.sweep_interval", float, defaults.SWEEP_INTERVAL, minimum=0, maximum=86400),
    Setting("agent.rate_limit_exit_codes", list, defaults.RATE_LIMIT_EXIT_CODES, item=int),
    Setting("agent.rate_limit_patterns", list, defaults.RATE_LIMIT_PATTERNS, item=str),
    Setting(
        "agent.rate_limit_backoff",
        float,
        defaults.RATE_LIMIT_BACKOFF,
        minimum=0,
        maximum=86400,
        exclusive_minimum=True,
    ),
    Setting(
        "agent.rate_limit_backoff_max",
        float,
        defaults.RATE_LIMIT_BACKOFF_MAX,
        minimum=0,
        maximum=86400,
        exclusive_minimum=True,
    ),
    Setting("agent.max_quick_failures", int, defaults.MAX_QUICK_FAILURES, minimum=0, maximum=1000),
    Setting("agent.quick_failure", float, defaults.QUICK_FAILURE, minimum=0, maximum=86400),
    Setting("tasks.max_attempts", int, defaults.MAX_ATTEMPTS, minimum=1, maximum=1000),
    Setting("tasks.allow_empty", bool, defaults.ALLOW_EMPTY),
    Setting(
        "tasks.timeout",
        float,
        defaults.TASK_TIMEOUT,
        minimum=0,
        maximum=7 * 86400,
        nullable=True,
        exclusive_minimum=True,
    ),
    Setting("pressure.strategy", str, defaults.PRESSURE_STRATEGY, choices=STRATEGIES),
    Setting(
        "pressure.half_life",
        float,
        defaults.PRESSURE_HALF_LIFE,
        minimum=0,
        maximum=365 * 86400,
        exclusive_minimum=True,
    ),
    Setting("pressure.rate", float, defaults.PRESSURE_RATE, minimum=0, maximum=1000),
    Setting("pressure.step", float, defaults.PRESSURE_STEP, minimum=0, maximum=100),
    Setting(
        "pressure.step_interval",
        float,
        defaults.PRESSURE_STEP_INTERVAL,
        minimum=0,
        maximum=365 * 86400,
        exclusive_minimum=True,
    ),
    Setting("pressure.jitter", float, defaults.PRESSURE_JITTER, minimum=0, maximum=1),
    Setting("pressure.seed", int, defaults.PRESSURE_SEED, minimum=0, maximum=2**63 - 1),
    Setting("pressure.epsilon", float, defaults.PRESSURE_EPSILON, minimum=0, maximum=1),
    Setting("pressure.signals.skip", float, defaults.SIGNAL_SKIP, minimum=-1, maximum=1),
    Setting("pressure.signals.failure", float, defaults.SIGNAL_FAILURE, minimum=-1, maximum=1),
    Setting(
        "pressure.signals.dependency_done",
        float,
        defaults.SIGNAL_DEPENDENCY_DONE,
        minimum=-1,
        maximum=1,
    ),
    Setting("pressure.signals.conflict", float, defaults.SIGNAL_CONFLICT, minimum=-1, maximum=1),
    Setting("pressure.signals.urgent", float, defaults.SIGNAL_URGENT, minimum=-1, maximum=1),
    Setting("pressure.signals.boost", float, defaults.SIGNAL_BOOST, minimum=-1, maximum=1),
    Setting("merge.conflict_priority", int, defaults.CONFLICT_PRIORITY, minimum=0, maximum=100),
)
_BY_KEY = {s.key: s for s in SETTINGS}
_SECTIONS = {s.key.rsplit(".", 1)[0] for s in SETTINGS if "." in s.key} | {"pressure.signals"}


@dataclass(frozen=True)
class PressureConfig:
    strategy: str = defaults.PRESSURE_STRATEGY
    half_life: float = defaults.PRESSURE_HALF_LIFE
    rate: float = defaults.PRESSURE_RATE
    step: float = defaults.PRESSURE_STEP
    step_interval: float = defaults.PRESSURE_STEP_INTERVAL
    jitter: float = defaults.PRESSURE_JITTER
    seed: int = defaults.PRESSURE_SEED
    epsilon: float = defaults.PRESSURE_EPSILON
    signal_skip: float = defaults.SIGNAL_SKIP
    signal_failure: float = defaults.SIGNAL_FAILURE
    signal_dependency_done: float = defaults.SIGNAL_DEPENDENCY_DONE
    signal_conflict: float = defaults.SIGNAL_CONFLICT
    signal_urgent: float = defaults.SIGNAL_URGENT
    signal_boost: float = defaults.SIGNAL_BOOST


@dataclass(frozen=True)
class Config:
    target: str = defaults.TARGET_BRANCH
    backend: str = "local"
    remote: str | None = None
    agent_command: str | None = None
    heartbeat_interval: float = defaults.HEARTBEAT_INTERVAL
    lease: float = defaults.LEASE
    session_lease: float = defaults.SESSION_LEASE
    poll_interval: float = defaults.POLL_INTERVAL
    wake_threshold: float = defaults.WAKE_THRESHOLD
    sweep_interval: float = defaults.SWEEP_INTERVAL
    rate_limit_exit_codes: tuple[int, ...] = defaults.RATE_LIMIT_EXIT_CODES
    rate_limit_patterns: tuple[str, ...] = defaults.RATE_LIMIT_PATTERNS
    rate_limit_backoff: float = defaults.RATE_LIMIT_BACKOFF
    rate_limit_backoff_max: float = defaults.RATE_LIMIT_BACKOFF_MAX
    max_quick_failures: int = defaults.MAX_QUICK_FAILURES
    quick_failure: float = defaults.QUICK_FAILURE
    max_attempts: int = defaults.MAX_ATTEMPTS
    allow_empty: bool = defaults.ALLOW_EMPTY
    task_timeout: float | None = defaults.TASK_TIMEOUT
    conflict_priority: int = defaults.CONFLICT_PRIORITY
    pressure: PressureConfig = PressureConfig()


def env_var(key: str) -> str:
    """The environment variable that overrides `key` for one run."""
    return "STIGMERGY_" + key.upper().replace(".", "_")


def _flatten(doc: Mapping[str, Any], prefix: str, out: dict[str, Any], where: str) -> None:
    for raw_key, value in doc.items():
        if not isinstance(raw_key, str):
            raise ConfigError(f"{where}: key {raw_key!r} is not a string")
        key = f"{prefix}{raw_key}"
        if isinstance(value, Mapping) and key in _SECTIONS:
            _flatten(value, f"{key}.", out, where)
        elif key in _BY_KEY:
            out[key] = value
        else:
            import difflib  # only on this error path: it is slow to import

            close = difflib.get_close_matches(key, [*_BY_KEY, *_SECTIONS], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{where}: unknown key '{key}'{hint}")


def _check_list(setting: Setting, value: Any, name: str) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{name} must be a list, not {value!r}")
    for entry in value:
        if setting.item is int and (isinstance(entry, bool) or not isinstance(entry, int)):
            raise ConfigError(f"{name} entries must be whole numbers, not {entry!r}")
        if setting.item is str:
            if not isinstance(entry, str) or not entry:
                raise ConfigError(f"{name} entries must be non-empty strings, not {entry!r}")
            try:
                re.compile(entry)
            except re.error as exc:
                raise ConfigError(f"{name} entry {entry!r} is not a valid pattern: {exc}") from None
    return tuple(value)


def _check(setting: Setting, value: Any, where: str) -> Any:
    name = f"{where}: '{setting.key}'"
    if value is None:
        if setting.nullable:
            return None
        raise ConfigError(f"{name} must be set")
    if setting.kind is list:
        return _check_list(setting, value, name)
    if setting.kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, not {value!r}")
        return value
    if setting.kind is str:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{name} must be a non-empty string, not {value!r}")
        if setting.choices and value not in setting.choices:
            raise ConfigError(f"{name} must be one of {', '.join(setting.choices)}, not {value!r}")
        if "\x00" in value:
            raise ConfigError(f"{name} contains a NUL character")
        return value
    # bool is an int in Python; `lease: yes` is a mistake, not 1 second.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, not {value!r}")
    if setting.kind is int and (isinstance(value, float) and not value.is_integer()):
        raise ConfigError(f"{name} must be a whole number, not {value!r}")
    number = setting.kind(value)
    if not math.isfinite(number):  # NaN passes every range check; nothing here is infinite
        raise ConfigError(f"{name} must be a finite number, not {value!r}")
    low, high = setting.minimum, setting.maximum
    too_low = low is not None and (number <= low if setting.exclusive_minimum else number < low)
    if too_low or (high is not None and number > high):
        low_word = f"greater than {low:g}" if setting.exclusive_minimum else f"at least {low:g}"
        raise ConfigError(f"{name} must be {low_word} and at most {high:g}, not {value!r}")
    return number


def parse(doc: Any, where: str, environ: Mapping[str, str] | None = None) -> Config:
    """Validate a parsed config document (plus overrides from `environ`) into a Config."""
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}: expected a mapping of settings, found {type(doc).__name__}")
    raw: dict[str, Any] = {}
    _flatten(doc, "", raw, where)
    values = {s.key: _check(s, raw[s.key], where) if s.key in raw else s.default for s in SETTINGS}
    for setting in SETTINGS:
        var = env_var(setting.key)
        if environ is not None and var in environ:
            try:
                override = yamlio.load(environ[var])
            except yamlio.YAMLSyntaxError:
                raise ConfigError(f"{var}: not a valid value: {environ[var]!r}") from None
            values[setting.key] = _check(setting, override, var)
    if not _BRANCH_RE.match(values["target"]) or values["target"].endswith(".lock"):
        raise ConfigError(f"{where}: 'target' is not a valid branch name: {values['target']!r}")
    if values["agent.lease"] < 2 * values["agent.heartbeat_interval"]:
        raise ConfigError(
            f"{where}: 'agent.lease' ({values['agent.lease']:g}s) must be at least twice "
            f"'agent.heartbeat_interval' ({values['agent.heartbeat_interval']:g}s)"
        )
    remote = values["remote"]
    if remote is not None and not REMOTE_RE.fullmatch(remote):
        # It is passed to git as an argument: "--upload-pack=..." must never get there.
        raise ConfigError(f"{where}: 'remote' is not a git remote name: {remote!r}")
    if values["backend"] == "git" and not values["remote"]:
        raise ConfigError(f"{where}: 'backend: git' needs 'remote' (the name of a git remote)")
    return Config(
        target=values["target"],
        backend=values["backend"],
        remote=values["remote"],
        agent_command=values["agent.command"],
        heartbeat_interval=values["agent.heartbeat_interval"],
        lease=values["agent.lease"],
        session_lease=values["agent.session_lease"],
        poll_interval=values["agent.poll_interval"],
        wake_threshold=values["agent.wake_threshold"],
        sweep_interval=values["agent.sweep_interval"],
        rate_limit_exit_codes=values["agent.rate_limit_exit_codes"],
        rate_limit_patterns=values["agent.rate_limit_patterns"],
        rate_limit_backoff=values["agent.rate_limit_backoff"],
        rate_limit_backoff_max=values["agent.rate_limit_backoff_max"],
        max_quick_failures=values["agent.max_quick_failures"],
        quick_failure=values["agent.quick_failure"],
        max_attempts=values["tasks.max_attempts"],
        allow_empty=values["tasks.allow_empty"],
        task_timeout=values["tasks.timeout"],
        conflict_priority=values["merge.conflict_priority"],
        pressure=PressureConfig(
            **{
                key.removeprefix("pressure.").replace("signals.", "signal_"): value
                for key, value in values.items()
                if key.startswith("pressure.")
            }
        ),
    )


def load(
    path: Path,
    environ: Mapping[str, str] | None = None,
    *,
    cache: Path | None = None,
    now: float | None = None,
) -> Config:
    """Read and validate config.yaml; every problem names the file and the key.

    With `cache` (and `now`), the parsed document is kept as JSON keyed by the file's stat
    signature, so most commands start without importing a YAML parser. As for task files, a
    file changed in the last seconds is always parsed (see store.scan).
    """
    try:
        st = path.stat()
        sig = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing; run `stigmergy init` to recreate it") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    doc = _cached_doc(cache, sig)
    if doc is not None:
        return parse(doc, str(path), environ)
    try:
        doc = yamlio.load(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yamlio.YAMLSyntaxError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    config = parse(doc, str(path), environ)
    racy = now is None or st.st_ctime_ns > (now - defaults.CACHE_RACY_WINDOW) * 1e9
    if cache is not None and not racy:
        _remember_doc(cache, sig, doc)
    return config


def _cached_doc(cache: Path | None, sig: list[int]) -> Any:
    if cache is None:
        return None
    try:
        entry = json.loads(cache.read_bytes())
    except (OSError, ValueError):
        return None
    if isinstance(entry, dict) and entry.get("version") == __version__ and entry.get("sig") == sig:
        return entry.get("doc")
    return None


def _remember_doc(cache: Path, sig: list[int], doc: Any) -> None:
    try:
        # Only documents that JSON carries unchanged: YAML's dates and the like are not.
        if json.loads(json.dumps(doc)) != doc:
            return
        cache.parent.mkdir(exist_ok=True)
        data = json.dumps({"version": __version__, "sig": sig, "doc": doc}).encode()
        atomic.write_bytes(cache, data, durable=False)
    except (OSError, TypeError, ValueError):
        pass  # a cache; listing must work on a read-only checkout
