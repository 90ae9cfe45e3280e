#!/usr/bin/env bash
# A short tour of stigmergy on a scratch repository: init, add tasks with dependencies,
# import a batch, list and show. Run it with `make demo`.
set -euo pipefail

scratch=$(mktemp -d "${TMPDIR:-/tmp}/stigmergy-demo.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

git init --quiet --initial-branch=main
git -c user.name=demo -c user.email=demo@example.com commit --quiet --allow-empty -m "initial commit"

step stigmergy init
step stigmergy task add "Set up the database schema" --id db-schema --priority high
step stigmergy task add "Implement JWT auth" --id jwt-auth --priority high --dep db-schema \
  --verify "pytest -q tests/auth" --label backend
step stigmergy task add "Document the auth flow" --id auth-docs --priority low --dep jwt-auth --role writer
cat > tasks.yaml <<'YAML'
- title: Add rate limiting to the login endpoint
  id: rate-limit
  priority: medium
  depends_on: [jwt-auth]
- title: Fix the flaky clock test
  priority: urgent
  labels: [tests]
YAML
step stigmergy task import tasks.yaml
step stigmergy task list
step stigmergy task list --blocked
step stigmergy task show jwt-auth
step stigmergy task cancel auth-docs
step stigmergy task list --status cancelled --json
printf '\nBad input is refused with one line and nothing written:\n'
step stigmergy task add "Escape attempt" --id ../etc || true
step stigmergy task add "Loop" --id loop --dep loop || true
printf '\nDone. The environment lived in %s (now removed).\n' "$scratch"
