#!/bin/sh
# A job of scripts/test-systemd: starts sleepers, at most $1, until a fork is
# refused by the job unit's TasksMax (work.pids_max). dash gives up at the
# first refused fork ("Cannot fork", exit 2); where no pids controller
# enforces the limit all $1 start and it exits 0. The sleepers go with the
# unit when the exec shim exits.
i=0
while [ "$i" -lt "$1" ]; do
  sleep 120 &
  i=$((i + 1))
done
