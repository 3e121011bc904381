#!/bin/sh
# agent-bom agent: an Intune custom attribute for macOS (Devices > macOS > Custom attributes,
# data type String). Prints one value: FIELD is version, service, enrollment, proxy_coverage or
# managed; make one attribute per field you want to report on ("not installed" when absent).
FIELD="enrollment"
ROOT="${AGENT_BOM_ROOT:-}"   # a throwaway root, for tests only
BIN="$ROOT/usr/local/agent-bom/bin/agent-bom-agent"
STATE="$ROOT/Library/Application Support/agent-bom"

if [ ! -x "$BIN" ]; then
    echo "not installed"
    exit 0
fi
"$BIN" detect --all-users --system-root "${ROOT:-/}" --state-dir "$STATE" --field "${AGENT_BOM_FIELD:-$FIELD}" 2>/dev/null \
    || echo "error"
