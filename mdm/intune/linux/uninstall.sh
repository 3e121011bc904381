#!/bin/sh
# agent-bom agent: remove from Linux (an Intune script run as root, or by hand).
#
#   FORGET=1  also delete the identity, spools and settings (default: keep them, so a
#             reinstall comes back as the same endpoint)
#
# Every wrapped MCP server configuration of every user is restored first: the proxy leaves with
# the agent, and MCP clients must keep working. A package install (.deb, .rpm) is removed with
# its package manager, which does the same. Running this twice uninstalls once.
set -eu
FORGET="${FORGET:-0}"
ROOT="${AGENT_BOM_ROOT:-}"   # a throwaway root, for tests only
PREFIX="$ROOT/opt/agent-bom"
BIN="$PREFIX/bin/agent-bom-agent"
STATE="$ROOT/var/lib/agent-bom"

say() { echo "agent-bom uninstall: $*"; }

if [ -z "$ROOT" ] && command -v dpkg-query >/dev/null 2>&1 \
    && dpkg-query -W -f '${Status}' agent-bom-agent 2>/dev/null | grep -q 'ok installed'; then
    if [ "$FORGET" = 1 ]; then apt-get purge -y agent-bom-agent; else apt-get remove -y agent-bom-agent; fi
    exit 0
fi
if [ -z "$ROOT" ] && command -v rpm >/dev/null 2>&1 && rpm -q agent-bom-agent >/dev/null 2>&1; then
    rpm -e agent-bom-agent
fi
if [ -x "$BIN" ]; then
    "$BIN" unwrap --all-users --system-root "${ROOT:-/}" --state-dir "$STATE" || say "unwrap reported problems (see above)"
    if [ -z "$ROOT" ]; then
        "$BIN" service uninstall || say "no service to remove"
    fi
fi
rm -rf "$PREFIX"
rm -f "$ROOT/usr/bin/agent-bom-agent" "$ROOT/etc/agent-bom/managed.toml"
if [ "$FORGET" = 1 ]; then
    rm -rf "$STATE" "$STATE-users" "$ROOT/etc/agent-bom"
    say "identity and settings deleted"
fi
say "removed"
