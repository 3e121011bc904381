#!/bin/sh
# agent-bom agent: install on a Mac from Intune (Devices > macOS > Shell scripts; run as root,
# "Max number of times to retry if script fails": 3). Intune shell scripts take no parameters:
# set CONTROL_PLANE_URL below before uploading. The control plane's install script downloads
# the newest build of the channel, checks its SHA-256 and release signature, installs it and the
# LaunchDaemon. The enrollment token and the other settings come with the custom configuration
# profile (agent-bom.mobileconfig), never with this script. Running it again installs once; a
# newer build on the channel is installed (this is also the upgrade).
set -eu
CONTROL_PLANE_URL="https://agent-bom.example.com"
CHANNEL=""
ROOT="${AGENT_BOM_ROOT:-}"   # a throwaway root, for tests only
BIN="$ROOT/usr/local/agent-bom/bin/agent-bom-agent"

die() { echo "agent-bom install: $*" >&2; exit 1; }

URL="${AGENT_BOM_CONTROL_PLANE_URL:-$CONTROL_PLANE_URL}"
case "$URL" in https://*|http://127.0.0.1*|http://localhost*) ;; *) die "the control-plane URL must be https://" ;; esac
script="$(mktemp)"
trap 'rm -f "$script"' EXIT
curl -fsSL --proto '=https,http' "${URL%/}/install/agent.sh" -o "$script" || die "cannot download ${URL%/}/install/agent.sh"
if [ -n "$CHANNEL" ]; then
    sh "$script" --channel "$CHANNEL"
else
    sh "$script"
fi
[ -x "$BIN" ] || die "the agent is not at $BIN after installing"
echo "agent-bom install: $("$BIN" --version)"
