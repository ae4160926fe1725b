#!/bin/sh
# A job of scripts/test-systemd that enters a user namespace, as Chrome's
# sandbox does (the agent's RestrictNamespaces= would refuse it).
exec unshare -U true
