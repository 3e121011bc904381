#!/bin/sh
# agent-bom agent: a Jamf Pro extension attribute (Settings > Computer Management > Extension
# Attributes > New, input type Script). Reports, in one line:
#   version=0.1.0; service=running; enrollment=enrolled; proxy_coverage=3/4; managed=present
# (proxy_coverage: stdio MCP servers running through the agent's proxy / all stdio MCP servers
# of every user). For one value per attribute (smart groups on it), set FIELD to version,
# service, enrollment, proxy_coverage or managed in a copy of this script.
FIELD="all"
ROOT="${AGENT_BOM_ROOT:-}"   # a throwaway root, for tests only
BIN="$ROOT/usr/local/agent-bom/bin/agent-bom-agent"
STATE="$ROOT/Library/Application Support/agent-bom"

if [ ! -x "$BIN" ]; then
    echo "<result>not installed</result>"
    exit 0
fi
if [ "$FIELD" = all ]; then
    value="$("$BIN" detect --all-users --system-root "${ROOT:-/}" --state-dir "$STATE" 2>/dev/null \
        | grep -E '^(version|service|enrollment|proxy_coverage|managed)=' | paste -sd ';' - | sed 's/;/; /g')"
else
    value="$("$BIN" detect --all-users --system-root "${ROOT:-/}" --state-dir "$STATE" --field "$FIELD" 2>/dev/null)"
fi
echo "<result>${value:-error}</result>"
