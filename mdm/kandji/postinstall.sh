#!/bin/sh
# agent-bom agent: the post-install script of a Kandji Custom App. The package already put the
# agent and its LaunchDaemon in place; this makes sure the daemon runs and shows what it sees.
# The enrollment token and every other setting come with the Custom Profile
# (agent-bom.mobileconfig), not from here.
ROOT="${AGENT_BOM_ROOT:-}"   # a throwaway root, for tests only
BIN="$ROOT/usr/local/agent-bom/bin/agent-bom-agent"
STATE="$ROOT/Library/Application Support/agent-bom"

[ -x "$BIN" ] || { echo "agent-bom: the package left no agent at $BIN" >&2; exit 1; }
if [ -z "$ROOT" ]; then
    launchctl kickstart -k system/com.agent-bom.agent 2>/dev/null \
        || launchctl bootstrap system /Library/LaunchDaemons/com.agent-bom.agent.plist
fi
"$BIN" detect --all-users --system-root "${ROOT:-/}" --state-dir "$STATE" || true
exit 0
