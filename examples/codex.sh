#!/bin/sh
# Executor for the OpenAI Codex CLI, run unattended by `stigmergy agent run`:
#   stigmergy agent run --id beta --exec "$PWD/examples/codex.sh"
# `codex exec` is the non-interactive mode; --sandbox workspace-write lets it edit files and
# run commands inside its worktree without asking (recent versions removed --full-auto, and
# stigmergy stops an agent whose CLI refuses a flag, with the task given back). stdin is
# /dev/null (stigmergy closes it), so it does not wait for more input. Leave the changes
# uncommitted: stigmergy commits them.
set -eu
exec codex exec --sandbox workspace-write "$STIGMERGY_PROMPT"
