"""One error family; each class carries the exit code the CLI returns for it."""

from __future__ import annotations

# Exit codes (see docs/design.md): 0 ok, 1 refused or failed, 2 usage, 3 unexpected, 130 Ctrl-C.
EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNEXPECTED = 3
EXIT_INTERRUPTED = 130


class StigmergyError(Exception):
    """A refusal or failure the user can act on; the message is one line."""

    exit_code = EXIT_REFUSED


class InvalidInput(StigmergyError):
    """A value given by the user (flag, argument or import file) is malformed."""

    exit_code = EXIT_USAGE


class NotARepository(StigmergyError):
    """The directory is not inside a git repository."""


class NotInitialized(StigmergyError):
    """The repository has no .stigmergy/ environment yet."""


class ConfigError(StigmergyError):
    """config.yaml (or a STIGMERGY_* override) is missing, unreadable or invalid."""


class TaskNotFound(StigmergyError):
    """No task with that id exists in any state."""


class Conflict(StigmergyError):
    """The request conflicts with the current state (duplicate id, wrong state, cycle)."""


class GitError(StigmergyError):
    """A git command failed; the message names the command and git's own words."""
