#!/bin/sh
# A Node.js job of scripts/test-systemd: V8's JIT needs writable and
# executable memory, which the agent's own sandbox (MemoryDenyWriteExecute=)
# would refuse. The command prefixes resolve symlinks, so a wrapper under
# /opt/phonefarm/jobs/ runs Debian's node.
exec node "$@"
