#!/bin/sh
# Executor for Claude Code, run unattended by `stigmergy agent run`:
#   stigmergy agent run --id alpha --exec "$PWD/examples/claude-code.sh"
# It runs in the agent's own worktree; the task arrives in $STIGMERGY_PROMPT (never on the
# command line of stigmergy itself). -p prints one result and exits; skipping permission
# prompts is what lets it work with nobody at the keyboard, so run agents in a sandbox, VM
# or container you are happy for them to change. Claude Code refuses that flag as root
# (the agent then stops and says so); inside a container run as root, set IS_SANDBOX=1.
# Leave the changes in the worktree: stigmergy verifies, commits and merges them.
set -eu
exec claude -p "$STIGMERGY_PROMPT" \
  --dangerously-skip-permissions \
  --output-format text
