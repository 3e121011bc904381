#!/bin/sh
# agent-bom agent: bring a Mac to the newest signed build of its channel, from a Jamf Pro policy
# (for fleets that keep the agent's self-update off, or to catch up a stale machine).
#
# The agent asks its control plane (the URL and release keys recorded at install), downloads
# the build, checks its digest and its release signature against the pinned keys, swaps it in
# and restarts the service; a build that does not reconnect is rolled back. Exit 0 when the
# newest build runs (already, or now), 1 when the agent is missing or the update failed.
set -eu
ROOT="${AGENT_BOM_ROOT:-}"   # a throwaway root, for tests only
BIN="$ROOT/usr/local/agent-bom/bin/agent-bom-agent"
STATE="$ROOT/Library/Application Support/agent-bom"

[ -x "$BIN" ] || { echo "agent-bom upgrade: not installed; run install.sh" >&2; exit 1; }
echo "agent-bom upgrade: installed $("$BIN" --version)"
"$BIN" update apply --state-dir "$STATE"
echo "agent-bom upgrade: now $("$BIN" --version)"
