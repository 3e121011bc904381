#!/bin/sh
# agent-bom agent: install on Linux from Intune (Devices > Linux > Scripts, run as root; Ubuntu
# and RHEL as Intune supports them). Intune for Linux has no configuration profiles for other
# software, so this script also writes the managed configuration, /etc/agent-bom/managed.toml
# (root, 0644; it wins over agent.toml and the environment). Set the values below before
# uploading; leave a value empty to not manage it.
#
# The enrollment token is not here. Put it, with whatever distributes your secrets, in
# TOKEN_FILE (root, 0600); the agent enrolls as soon as it is there. No token ever goes into
# this script, Intune's script store, a log or a process list.
#
# Then: the control plane's install script downloads the newest build of the channel, checks
# its SHA-256 and release signature, installs /opt/agent-bom/bin/agent-bom-agent and the
# systemd unit. AGENT_BOM_BINARY=FILE installs that binary instead (offline, tests). Running
# the script again installs once and rewrites the managed configuration.
set -eu
CONTROL_PLANE_URL="https://agent-bom.example.com"
COLLECTOR="agent-bom.example.com:4433"
CA_PIN=""                        # hex SHA-256 of the control plane's CA (its data dir's ca.pin)
TOKEN_FILE="/etc/agent-bom/enroll.token"
OWNER=""
ENVIRONMENT=""
TAGS=""                          # comma-separated: laptop,linux
WORKSPACE_ROOTS=""               # comma-separated absolute paths
MANAGED_WRAPPING="false"         # true: every stdio MCP server runs through the proxy
FAIL_MODE="open"                 # closed: without a valid policy, proxies refuse tool calls
UPDATE_CHANNEL=""

ROOT="${AGENT_BOM_ROOT:-}"   # a throwaway root, for tests only
ETC="$ROOT/etc/agent-bom"
PREFIX="$ROOT/opt/agent-bom"
BIN="$PREFIX/bin/agent-bom-agent"

say() { echo "agent-bom install: $*"; }
die() { echo "agent-bom install: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || [ -n "$ROOT" ] || die "run as root"

# A TOML basic string: backslashes and quotes escaped (printed with printf: dash's echo would
# undo the escapes).
toml_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
# A TOML list of strings from a comma-separated value.
toml_list() {
    out=""
    old_ifs="$IFS"; IFS=','
    for item in $1; do
        item="$(printf '%s' "$item" | sed 's/^ *//; s/ *$//')"
        [ -n "$item" ] || continue
        out="${out:+$out, }$(toml_str "$item")"
    done
    IFS="$old_ifs"
    printf '[%s]' "$out"
}

install -d -m 0755 "$ETC"
tmp="$ETC/.managed.toml.$$"
{
    echo "# Written by the Intune install script of agent-bom; edits are replaced on its next run."
    [ -z "$COLLECTOR" ] || printf '%s = %s\n' collector "$(toml_str "$COLLECTOR")"
    [ -z "$CA_PIN" ] || printf '%s = %s\n' ca_pin "$(toml_str "$CA_PIN")"
    [ -z "$TOKEN_FILE" ] || printf '%s = %s\n' enrollment_token_file "$(toml_str "$TOKEN_FILE")"
    [ -z "$OWNER" ] || printf '%s = %s\n' owner "$(toml_str "$OWNER")"
    [ -z "$ENVIRONMENT" ] || printf '%s = %s\n' environment "$(toml_str "$ENVIRONMENT")"
    [ -z "$TAGS" ] || printf '%s = %s\n' tags "$(toml_list "$TAGS")"
    [ -z "$WORKSPACE_ROOTS" ] || printf '%s = %s\n' workspace_roots "$(toml_list "$WORKSPACE_ROOTS")"
    case "$MANAGED_WRAPPING" in
        true|false) printf 'managed_wrapping = %s\n' "$MANAGED_WRAPPING" ;;
        "") ;;
        *) die "MANAGED_WRAPPING must be true or false" ;;
    esac
    [ -z "$FAIL_MODE" ] || printf '%s = %s\n' fail_mode "$(toml_str "$FAIL_MODE")"
    [ -z "$UPDATE_CHANNEL" ] || printf '%s = %s\n' update_channel "$(toml_str "$UPDATE_CHANNEL")"
} > "$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$ETC/managed.toml"
say "wrote $ETC/managed.toml"

if [ -n "${AGENT_BOM_BINARY:-}" ]; then
    install -d -m 0755 "$PREFIX/bin"
    install -m 0755 "$AGENT_BOM_BINARY" "$BIN"
    install -d -m 0755 "$ROOT/usr/bin"
    ln -sf /opt/agent-bom/bin/agent-bom-agent "$ROOT/usr/bin/agent-bom-agent"
    if [ -z "$ROOT" ]; then
        "$BIN" service install
    fi
else
    case "$CONTROL_PLANE_URL" in https://*|http://127.0.0.1*|http://localhost*) ;; *) die "CONTROL_PLANE_URL must be https://" ;; esac
    script="$(mktemp)"
    trap 'rm -f "$script"' EXIT
    curl -fsSL --proto '=https,http' "${CONTROL_PLANE_URL%/}/install/agent.sh" -o "$script" \
        || die "cannot download ${CONTROL_PLANE_URL%/}/install/agent.sh"
    if [ -n "$UPDATE_CHANNEL" ]; then
        sh "$script" --channel "$UPDATE_CHANNEL"
    else
        sh "$script"
    fi
fi
[ -x "$BIN" ] || die "the agent is not at $BIN after installing"
say "installed $("$BIN" --version)"
# The agent's own reading of the managed configuration: a refused value shows here.
AGENT_BOM_MANAGED_CONFIG="$ETC/managed.toml" "$BIN" detect --all-users --system-root "${ROOT:-/}" \
    --state-dir "$ROOT/var/lib/agent-bom" --field managed
