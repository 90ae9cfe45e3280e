#!/bin/sh
# Executor for the OpenAI Codex CLI, run unattended by `stigmergy agent run`:
#   stigmergy agent run --id beta --exec "$PWD/examples/codex.sh"
# `codex exec` is the non-interactive mode; --full-auto lets it edit files and run commands
# inside its workspace sandbox without asking. stdin is /dev/null (stigmergy closes it), so
# it does not wait for more input. Leave the changes uncommitted: stigmergy commits them.
set -eu
exec codex exec --full-auto "$STIGMERGY_PROMPT"
