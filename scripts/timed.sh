#!/usr/bin/env bash
# Run a command and print how long it took: `scripts/timed.sh LABEL COMMAND...` (make test's steps, CI's log).
# The command's exit status is this script's.
label=$1
shift
start=$(date +%s)
status=0
"$@" || status=$?
echo "timed: $label took $(($(date +%s) - start)) s (exit $status)"
exit $status
