#!/bin/sh
# agent-bom agent: install or reinstall on a Mac from a Jamf Pro policy.
#
# Jamf script parameters (Settings > Computer Management > Scripts > Options):
#   $4  control-plane URL (https://agent-bom.example.com): downloads the control plane's signed
#       install script, which fetches the newest build of the channel and checks its SHA-256 and
#       release signature before installing.
#   $5  release channel (default: the control plane's)
#   $6  path of an agent-bom-agent .pkg that a Jamf package payload cached instead (optional;
#       when set, the package is installed and nothing is downloaded)
#
# The enrollment token is not a parameter: it comes with the configuration profile
# (agent-bom.mobileconfig, domain com.agentbom.agent), so it is in no script, log or process
# list. Install the profile first or after: the agent waits for it and enrolls when it arrives.
# Running this twice installs once.
set -eu
URL="${4:-}"
CHANNEL="${5:-}"
PKG="${6:-}"
ROOT="${AGENT_BOM_ROOT:-}"   # a throwaway root, for tests only
BIN="$ROOT/usr/local/agent-bom/bin/agent-bom-agent"

say() { echo "agent-bom install: $*"; }
die() { echo "agent-bom install: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || [ -n "$ROOT" ] || die "run as root (a Jamf policy does)"
if [ -n "$PKG" ]; then
    [ -f "$PKG" ] || die "no package at $PKG"
    installer -pkg "$PKG" -target "${ROOT:-/}" || die "installer refused $PKG"
elif [ -n "$URL" ]; then
    case "$URL" in https://*|http://127.0.0.1*|http://localhost*) ;; *) die "the control-plane URL must be https://" ;; esac
    script="$(mktemp)"
    trap 'rm -f "$script"' EXIT
    curl -fsSL --proto '=https,http' "${URL%/}/install/agent.sh" -o "$script" || die "cannot download ${URL%/}/install/agent.sh"
    if [ -n "$CHANNEL" ]; then
        sh "$script" --channel "$CHANNEL"
    else
        sh "$script"
    fi
else
    die "give the control-plane URL (\$4) or a package path (\$6)"
fi
[ -x "$BIN" ] || die "the agent is not at $BIN after installing"
say "installed $("$BIN" --version)"
"$BIN" detect --all-users --system-root "${ROOT:-/}" || true
