"""Tunable defaults. Each one is also documented in templates/config.yaml."""

from __future__ import annotations

CONFIG_SCHEMA = 1
TASK_SCHEMA = 1

TARGET_BRANCH = "main"

# Agents
HEARTBEAT_INTERVAL = 5.0  # seconds between heartbeats written by the agent process
LEASE = 60.0  # seconds without a heartbeat before a claim is stale
SESSION_LEASE = 1800.0  # seconds a self-driving agent (`task claim`) may go without any call
POLL_INTERVAL = 0.1  # seconds between looks (two stat calls) at the pool while idle
SWEEP_INTERVAL = 30.0  # an agent sweeps stale claims itself at most this often (0: never)
# An executor stopped by its model provider's rate limit (or overload) is not a failure: the
# task goes back without an attempt and the agent waits, doubling from RATE_LIMIT_BACKOFF up
# to the max. An account out of credit or quota stops the agent instead (triage.py).
RATE_LIMIT_EXIT_CODES: tuple[int, ...] = ()
RATE_LIMIT_PATTERNS: tuple[str, ...] = (
    # Read in the last lines of the output only, never in an echo of the prompt (triage.py).
    r"(?i)rate[ _-]?limit(ed|error|exceeded)?\b",  # Aider (litellm.RateLimitError), APIs
    r"(?i)\(429\)|\b429 too many requests|status:? 429\b",  # Claude Code, Codex
    r"(?i)usage limit (reached|exceeded)",  # Claude Code / Codex plans
    r"(?i)\b529\b|overloaded",  # Anthropic API, Claude Code
    r"(?i)api error:? \(?5\d\d\b|experiencing high demand|exceeded retry limit",  # 5xx
)
RATE_LIMIT_BACKOFF = 30.0
RATE_LIMIT_BACKOFF_MAX = 900.0
# An agent whose tasks fail one after another, each within QUICK_FAILURE seconds of starting,
# is more likely broken than its tasks: it stops after MAX_QUICK_FAILURES of them in a row.
MAX_QUICK_FAILURES = 3
QUICK_FAILURE = 10.0
WAKE_THRESHOLD = 0.0  # an idle agent works only when the best claimable score reaches this

# Tasks
MAX_ATTEMPTS = 3  # attempts before a task moves to failed/
TASK_TIMEOUT = 3600.0  # seconds an executor may run before its process group is killed
ALLOW_EMPTY = False  # is a task whose executor changed nothing done? (a task's allow_empty)

# Pressure: signals deposit pressure on tasks; it decays lazily from `pressure_at`.
PRESSURE_STRATEGY = "exponential"
PRESSURE_HALF_LIFE = 1800.0  # exponential and stochastic: seconds for pressure to halve
PRESSURE_RATE = 0.0005  # linear: pressure lost per second
PRESSURE_STEP = 0.1  # step: pressure lost at each interval
PRESSURE_STEP_INTERVAL = 600.0  # step: seconds between steps
PRESSURE_JITTER = 0.2  # stochastic: relative jitter of the half-life, 0..1
PRESSURE_SEED = 0  # stochastic: seed, so runs are reproducible
PRESSURE_EPSILON = 0.01  # `stigmergy decay` evaporates pressure below this
SIGNAL_SKIP = 0.05  # deposited when a task is passed over or released unfinished
SIGNAL_FAILURE = 0.1  # deposited when an attempt fails, so retries rise in the queue
SIGNAL_DEPENDENCY_DONE = 0.05  # deposited on dependants when a dependency completes
SIGNAL_CONFLICT = 0.2  # on the task created to resolve a merge conflict
SIGNAL_URGENT = 1.0  # `task add --urgent`: above any wake threshold
SIGNAL_BOOST = 0.25  # `task boost`

# Merge
CONFLICT_PRIORITY = 95

# A lock directory without a readable owner.json, a half-built stage or a temp file is left
# alone for this long (someone may be writing it), then cleaned by the sweep.
CLAIM_GRACE = 10.0
# Locks broken by the sweep are kept as tombstones this long, for forensics.
TOMBSTONE_RETENTION = 86400.0

# Task files whose ctime is this recent are re-read rather than trusted from the list cache,
# because a coarse filesystem clock may not tell two writes apart (git's "racy clean" problem).
CACHE_RACY_WINDOW = 2.0
