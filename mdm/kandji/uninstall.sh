#!/bin/sh
# agent-bom agent: remove from a Mac (a Kandji Custom Script, or by hand as root).
#
#   $1  "forget" to also delete the identity, spools and settings (default: keep them, so a
#       reinstall comes back as the same endpoint)
#
# Every wrapped MCP server configuration of every user is restored first: the proxy leaves with
# the agent, and MCP clients must keep working. Remove the Custom Profile and the Custom App
# from the Blueprint too, or a reinstall enrolls again at once. Running this twice uninstalls once.
set -eu
FORGET="${1:-}"
ROOT="${AGENT_BOM_ROOT:-}"   # a throwaway root, for tests only
PREFIX="$ROOT/usr/local/agent-bom"
BIN="$PREFIX/bin/agent-bom-agent"
STATE="$ROOT/Library/Application Support/agent-bom"

say() { echo "agent-bom uninstall: $*"; }

if [ -x "$BIN" ]; then
    "$BIN" unwrap --all-users --system-root "${ROOT:-/}" --state-dir "$STATE" || say "unwrap reported problems (see above)"
    if [ -z "$ROOT" ]; then
        "$BIN" service uninstall || say "no service to remove"
    fi
fi
rm -rf "$PREFIX"
rm -f "$ROOT/usr/local/bin/agent-bom-agent" "$ROOT/Library/LaunchDaemons/com.agent-bom.agent.plist"
if [ "$FORGET" = forget ]; then
    rm -rf "$STATE"
    say "identity and settings deleted"
fi
if [ -z "$ROOT" ]; then
    pkgutil --forget com.agent-bom.agent >/dev/null 2>&1 || true
fi
say "removed"
