#!/bin/sh
# agent-bom-agent package scripts, shared by the .deb (postinst, prerm, postrm) and the .rpm
# (%post, %preun, %postun call this with the same words). Installed at
# /opt/agent-bom/lib/maintainer.sh; the package scripts are thin wrappers.
#
#   maintainer.sh configure FIRST|UPGRADE   after files are in place
#   maintainer.sh remove                     before files go (not on upgrade)
#
# What runs after the files went (leftovers of self-update, purge) is in the package's own
# postrm / %postun, since this file is gone by then.
#
# Paths honour DPKG_ROOT (dpkg --root --force-script-chrootless), which is how CI installs the
# package into a throwaway root. systemd is driven only on a systemd host outside such a root.
set -e
ROOT="${DPKG_ROOT:-}"
BIN_DIR="$ROOT/opt/agent-bom/bin"
BIN="$BIN_DIR/agent-bom-agent"
STATE="$ROOT/var/lib/agent-bom"
ETC="$ROOT/etc/agent-bom"
UNIT=agent-bom-agent.service

systemd_host() {
    [ -d "$ROOT/run/systemd/system" ] && command -v systemctl >/dev/null 2>&1
}

case "$1" in
    configure)
        install -d -m 0700 "$STATE"
        # An MDM may drop the control plane's details and a token before installing:
        # /etc/agent-bom/install.env (AGENT_BOM_COLLECTOR, AGENT_BOM_CA_PIN,
        # AGENT_BOM_CONTROL_PLANE_URL, AGENT_BOM_RELEASE_KEYS) and /etc/agent-bom/enroll.token.
        # They move into the agent's 0600 state and the token file is deleted.
        if [ -f "$ETC/install.env" ] || [ -f "$ETC/enroll.token" ]; then
            (
                set -a
                # shellcheck disable=SC1091
                [ -f "$ETC/install.env" ] && . "$ETC/install.env"
                set +a
                if [ -f "$ETC/enroll.token" ]; then
                    "$BIN" service configure --state-dir "$STATE" --token-file "$ETC/enroll.token"
                else
                    "$BIN" service configure --state-dir "$STATE"
                fi
            ) && rm -f "$ETC/enroll.token"
        fi
        if systemd_host; then
            systemctl daemon-reload || true
            if [ "$2" = FIRST ]; then
                systemctl enable "$UNIT" || true
                systemctl start "$UNIT" || true
            else
                # An upgrade: a running agent restarts into the new build.
                systemctl try-restart "$UNIT" || true
            fi
        fi
        ;;
    remove)
        if systemd_host; then
            systemctl stop "$UNIT" || true
            systemctl disable "$UNIT" || true
        fi
        # The proxy leaves with the package: restore every wrapped MCP server configuration so
        # the users' MCP clients keep working.
        if [ -x "$BIN" ]; then
            "$BIN" unwrap --all-users --system-root "${ROOT:-/}" --state-dir "$STATE" || true
        fi
        ;;
    *)
        echo "maintainer.sh: unknown step $1" >&2
        exit 1
        ;;
esac
exit 0
