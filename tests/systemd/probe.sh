#!/bin/sh
# A job of scripts/test-systemd that probes its own sandbox and prints one
# "name=value" line per probe; the check compares them with the job profile
# (README, "Trust boundary").
field() { sed -n "s/^$1:[[:space:]]*//p" /proc/self/status; }
# NAME COMMAND...: "ok" when the command succeeds; "denied" only when it is
# refused for want of permission (EACCES, EPERM, EROFS, by their C-locale
# messages); any other failure, a missing path (ENOENT) above all, prints
# "failed: <the message>", which no check takes for a denial.
try() {
  name=$1
  shift
  if err=$(LC_ALL=C "$@" 2>&1 >/dev/null); then
    echo "$name=ok"
    return
  fi
  case $err in
    *"Permission denied"* | *"Operation not permitted"* | *"Read-only file system"*) echo "$name=denied" ;;
    *) echo "$name=failed: $(printf '%s\n' "$err" | head -n 1)" ;;
  esac
}
echo "capeff=$(field CapEff)"
echo "capprm=$(field CapPrm)"
echo "nonewprivs=$(field NoNewPrivs)"
try usr_write touch /usr/phonefarm-probe
try etc_write touch /etc/phonefarm-probe
try tokens_read cat /etc/phonefarm-agent/tokens
try db_read cat /var/lib/phonefarm-agent/agent.db
try control_dirs ls /var/lib/phonefarm-agent/executions
# The work dir's name is the execution id (PHONEFARM_CANCEL_FILE is in it).
exec_id=$(basename "$(dirname "$PHONEFARM_CANCEL_FILE")")
try own_control_dir ls "/var/lib/phonefarm-agent/executions/$exec_id"
try workdir_write touch "$(dirname "$PHONEFARM_CANCEL_FILE")/probe"
# Left for retention: a directory only its owner could enter (the unit's
# ExecStopPost opens it to the group after the job).
mkdir -m 0700 "$(dirname "$PHONEFARM_CANCEL_FILE")/locked" && touch "$(dirname "$PHONEFARM_CANCEL_FILE")/locked/file"
echo "workdir=$(dirname "$PHONEFARM_CANCEL_FILE")"
# Its own /tmp: the check leaves a file in the host's /tmp before the run.
if [ -e /tmp/phonefarm-systemd-check-host-tmp ]; then echo "tmp_private=no"; else echo "tmp_private=yes"; fi
# ProtectProc=invisible: processes of other users (the agent, the exec shim)
# are not in /proc.
visible=no
for status in /proc/[0-9]*/status; do
  if [ "$(sed -n 's/^Uid:[[:space:]]*\([0-9]*\).*/\1/p' "$status" 2>/dev/null)" = "$(id -u phonefarm)" ]; then visible=yes; fi
done
echo "agent_visible=$visible"
