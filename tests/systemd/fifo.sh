#!/bin/sh
# A job of scripts/test-systemd that plants a FIFO named status.json (and a
# directory status.json.tmp) in its work dir and exits: an agent that opened
# it with a blocking open() would freeze.
rm -f status.json
mkfifo status.json
mkdir status.json.tmp
exit 0
