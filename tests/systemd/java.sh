#!/bin/sh
# A Java job of scripts/test-systemd: HotSpot maps its code cache writable
# and executable at start, which the agent's own sandbox
# (MemoryDenyWriteExecute=) refuses ("Failed to mark memory page as
# executable"). The JRE has no compiler, so the job is the VM's own start.
exec java "$@"
