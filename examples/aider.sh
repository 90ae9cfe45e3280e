#!/bin/sh
# Executor for Aider, run unattended by `stigmergy agent run`:
#   stigmergy agent run --id gamma --exec "$PWD/examples/aider.sh"
# --message does one instruction and exits; --yes-always answers its confirmations;
# --no-auto-commits leaves committing (with the Stigmergy-Task trailer) to stigmergy.
set -eu
exec aider --yes-always --no-auto-commits --no-check-update --message "$STIGMERGY_PROMPT"
