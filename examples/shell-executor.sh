#!/bin/sh
# The smallest executor: any program can be one. It runs with /bin/sh -c in the agent's
# worktree and learns about its task only from the environment:
#   STIGMERGY_TASK_ID, STIGMERGY_TASK_TITLE, STIGMERGY_TASK_FILE (the YAML), STIGMERGY_PROMPT,
#   STIGMERGY_AGENT, STIGMERGY_ROOT, STIGMERGY_WORKTREE, STIGMERGY_ATTEMPT.
# Exit 0 for success (then the task's `verify` runs), anything else for a failed attempt.
#   stigmergy agent run --id scripted --exec "$PWD/examples/shell-executor.sh"
set -eu
echo "agent $STIGMERGY_AGENT working on $STIGMERGY_TASK_ID: $STIGMERGY_TASK_TITLE"
mkdir -p notes
printf '%s\n' "$STIGMERGY_TASK_TITLE" > "notes/$STIGMERGY_TASK_ID.md"
