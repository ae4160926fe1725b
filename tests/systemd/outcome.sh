#!/bin/sh
# A job of scripts/test-systemd that tries to erase its own outcome: it
# kills its parent (the exec shim, its supervisor), plants a forged
# status.json in its work dir and exits 3. The shim is not the job's user,
# so the outcome stays the one waitid() saw: exit code 3.
if kill -9 "$PPID" 2>/dev/null; then
  echo "killed its parent $PPID"
else
  echo "could not kill its parent $PPID"
fi
echo '{"pid":1,"exit_code":0,"signal":null,"started_at":1,"ended_at":2}' >status.json
exit 3
