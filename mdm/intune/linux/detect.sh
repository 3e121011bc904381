#!/bin/sh
# agent-bom agent: the discovery script of an Intune custom compliance policy for Linux
# (Endpoint security > Device compliance > Scripts). Prints one JSON object that compliance.json
# (the rules) checks: AgentVersion, ServiceState, Enrollment, ProxyCoverage (stdio MCP servers
# through the proxy / all stdio MCP servers), WrappedServers, StdioServers, Managed.
ROOT="${AGENT_BOM_ROOT:-}"   # a throwaway root, for tests only
BIN="$ROOT/opt/agent-bom/bin/agent-bom-agent"
STATE="$ROOT/var/lib/agent-bom"

if [ ! -x "$BIN" ]; then
    echo '{"AgentVersion":"","ServiceState":"not-installed","Enrollment":"not-installed","ProxyCoverage":"0/0","WrappedServers":0,"StdioServers":0,"Managed":"absent"}'
    exit 0
fi
facts="$("$BIN" detect --all-users --system-root "${ROOT:-/}" --state-dir "$STATE" 2>/dev/null)"
value() { printf '%s\n' "$facts" | sed -n "s/^$1=//p"; }
printf '{"AgentVersion":"%s","ServiceState":"%s","Enrollment":"%s","ProxyCoverage":"%s","WrappedServers":%s,"StdioServers":%s,"Managed":"%s"}\n' \
    "$(value version)" "$(value service)" "$(value enrollment)" "$(value proxy_coverage)" \
    "$(value wrapped_servers)" "$(value stdio_servers)" "$(value managed)"
