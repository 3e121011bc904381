#!/bin/sh
# agent-bom agent: the audit script of a Kandji Custom App (Library > Add > Custom App >
# Installation: "Audit and enforce"). Kandji runs it at every check-in and installs the app's
# package when it exits non-zero, which is also how an upgrade rolls out: raise MIN_VERSION
# with the new package.
#
# Exit 0 when the agent is installed at MIN_VERSION or newer and its service runs; 1 otherwise.
# Prints what it found (Kandji keeps the output in the device's activity).
MIN_VERSION="0.1.0"
ROOT="${AGENT_BOM_ROOT:-}"   # a throwaway root, for tests only
BIN="$ROOT/usr/local/agent-bom/bin/agent-bom-agent"
STATE="$ROOT/Library/Application Support/agent-bom"

if [ ! -x "$BIN" ]; then
    echo "agent-bom: not installed"
    exit 1
fi
facts="$("$BIN" detect --all-users --system-root "${ROOT:-/}" --state-dir "$STATE" 2>/dev/null)" || {
    echo "agent-bom: the agent does not run"
    exit 1
}
echo "$facts"
version="$(echo "$facts" | sed -n 's/^version=//p')"
service="$(echo "$facts" | sed -n 's/^service=//p')"
# Oldest first when sorted as versions: the installed one must not sort before MIN_VERSION.
oldest="$(printf '%s\n%s\n' "$MIN_VERSION" "$version" | sort -t. -k1,1n -k2,2n -k3,3n | head -n1)"
if [ "$oldest" != "$MIN_VERSION" ]; then
    echo "agent-bom: $version is older than $MIN_VERSION"
    exit 1
fi
if [ -z "$ROOT" ] && [ "$service" != running ]; then
    echo "agent-bom: the service is $service"
    exit 1
fi
exit 0
