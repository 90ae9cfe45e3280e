#!/usr/bin/env bash
# Two "machines" sharing one pool through a git remote: a bare repository stands in for the
# team's server, and two clones for two computers, each running its own agent. No model is
# needed: each task's command writes a file. Run it from anywhere with stigmergy on PATH.
set -euo pipefail

scratch=$(mktemp -d "${TMPDIR:-/tmp}/stigmergy-two-machines.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"
step() { printf '\n\033[1m[%s] $ %s\033[0m\n' "$(basename "$PWD")" "$*"; "$@"; }
export GIT_AUTHOR_NAME=demo GIT_AUTHOR_EMAIL=demo@example.com
export GIT_COMMITTER_NAME=demo GIT_COMMITTER_EMAIL=demo@example.com

# The server: any git remote that takes custom refs and atomic pushes will do.
git init --quiet --bare --initial-branch=main team.git
git clone --quiet team.git seed 2>/dev/null
(cd seed && git commit --quiet --allow-empty -m "initial commit" && git push --quiet origin main)

for machine in laptop server; do
  git clone --quiet team.git "$machine"
  (cd "$machine" && step stigmergy init --remote origin)
done

cd laptop
cat > tasks.yaml <<'YAML'
- {id: parser, title: Write the parser, command: 'echo "parser by $STIGMERGY_AGENT" > parser.txt'}
- {id: lexer, title: Write the lexer, command: 'echo "lexer by $STIGMERGY_AGENT" > lexer.txt'}
- {id: docs, title: Document both, depends_on: [parser, lexer],
   command: 'cat parser.txt lexer.txt > DOCS.txt'}
- {id: tests, title: Add tests, command: 'echo "tests by $STIGMERGY_AGENT" > tests.txt'}
YAML
step stigmergy task import tasks.yaml
rm tasks.yaml
cd ..

# One agent per machine; each stops after 3 idle seconds.
(cd laptop && stigmergy agent run --id laptop-1 --idle-exit 3 > ../laptop.log 2>&1) &
(cd server && stigmergy agent run --id server-1 --idle-exit 3 > ../server.log 2>&1) &
wait
printf '\n\033[1mWhat each machine'"'"'s agent said:\033[0m\n'
cat laptop.log server.log

cd server
step stigmergy task list --refresh
step git pull --quiet origin main
step git log --oneline
step cat DOCS.txt
printf '\nDone. Everything lived in %s (now removed).\n' "$scratch"
