#!/bin/sh
# The job of scripts/test-systemd: a small tree — a child, a child in its own
# session (setsid), a double-forked orphan, a nested shell with its child —
# under a leader that waits for them: six processes, each carrying the
# PHONEFARM_* environment the agent gave the leader. Only a kill ends it.
sleep 3600 &
setsid sleep 3600 &
(sleep 3600 &)
sh -c 'sleep 3600; :' &
wait
