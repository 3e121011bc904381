#!/usr/bin/env bash
# Check the packages installers/build.sh made: their file lists, metadata and scripts, and,
# for the .deb, a whole life cycle in a throwaway root (dpkg --root with chroot-less scripts):
# install with an MDM's configuration drop, upgrade keeping an edited config file, remove,
# purge, with systemctl replaced by a recorder. The .rpm is installed into a throwaway root
# with rpm --root (its scripts are the .deb's maintainer.sh, exercised above); the MSI's tables
# are read with msitools (Windows binaries cannot run here).
#
#   installers/check.sh DIST_DIR
set -euo pipefail
dist="$(cd "${1:?usage: check.sh DIST_DIR}" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "check.sh: FAILED: $*" >&2; exit 1; }
ok() { echo "check.sh: ok: $*"; }
checks=0
pass() { ok "$*"; checks=$((checks + 1)); }

deb="$(ls "$dist"/agent-bom-agent_*.deb)"
rpm_file="$(ls "$dist"/agent-bom-agent-*.rpm)"
msi="$(ls "$dist"/agent-bom-agent-*.msi 2>/dev/null || true)"

# --- .deb: contents and metadata -------------------------------------------------------------
listing="$(dpkg-deb -c "$deb")"
for f in ./opt/agent-bom/bin/agent-bom-agent ./opt/agent-bom/lib/maintainer.sh \
    ./usr/bin/agent-bom-agent ./lib/systemd/system/agent-bom-agent.service \
    ./etc/agent-bom/agent.toml ./usr/share/doc/agent-bom-agent/README; do
    grep -q " $f" <<<"$listing" || fail "deb lacks $f"
done
grep -q '^-rwxr-xr-x root/root .* ./opt/agent-bom/bin/agent-bom-agent$' <<<"$listing" \
    || fail "deb: the binary is not root-owned 0755"
pass "deb file list"
[ "$(dpkg-deb -f "$deb" Package)" = agent-bom-agent ] || fail "deb package name"
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx /etc/agent-bom/agent.toml \
    || fail "deb: agent.toml is not a conffile"
for s in postinst prerm postrm; do
    dpkg-deb --ctrl-tarfile "$deb" | tar -xO "./$s" > "$work/$s"
    sh -n "$work/$s" || fail "deb $s does not parse"
done
pass "deb metadata, conffiles, scripts parse"

# --- .deb: the unit it ships ----------------------------------------------------------------
root="$work/root"
mkdir -p "$root"
dpkg-deb -x "$deb" "$work/x"
unit="$work/x/lib/systemd/system/agent-bom-agent.service"
grep -qx 'Type=notify' "$unit" || fail "unit: no readiness"
grep -qx 'ExecStart=/opt/agent-bom/bin/agent-bom-agent run --all-users --state-dir /var/lib/agent-bom --config /etc/agent-bom/agent.toml' "$unit" \
    || fail "unit: unexpected ExecStart"
if command -v systemd-analyze >/dev/null; then
    # verify needs the ExecStart binary to exist: point it at the extracted one.
    mkdir -p "$work/unit"
    sed "s#/opt/agent-bom/bin/agent-bom-agent#$work/x/opt/agent-bom/bin/agent-bom-agent#" "$unit" \
        > "$work/unit/agent-bom-agent.service"
    systemd-analyze verify "$work/unit/agent-bom-agent.service" \
        || fail "systemd-analyze verify refuses the unit"
    pass "unit passes systemd-analyze verify"
fi

# --- .deb: a life cycle in a throwaway root ---------------------------------------------------
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/triggers" \
    "$root/run/systemd/system" "$root/etc/agent-bom" "$work/bin"
: > "$root/var/lib/dpkg/status"
: > "$root/var/lib/dpkg/available"
# systemctl, recorded instead of run.
cat > "$work/bin/systemctl" <<STUB
#!/bin/sh
echo "systemctl \$*" >> "$work/systemctl.log"
STUB
chmod +x "$work/bin/systemctl"
# An MDM's configuration drop, before the install.
cat > "$root/etc/agent-bom/install.env" <<ENV
AGENT_BOM_COLLECTOR=collector.example.com:4433
AGENT_BOM_CA_PIN=$(printf 'ab%.0s' $(seq 32))
AGENT_BOM_CONTROL_PLANE_URL=https://agent-bom.example.com
AGENT_BOM_RELEASE_KEYS=$(printf 'cd%.0s' $(seq 32))
ENV
printf 'abe_mdm-token-for-check\n' > "$root/etc/agent-bom/enroll.token"
chmod 0600 "$root/etc/agent-bom/enroll.token"
dpkg_root() {
    PATH="$work/bin:$PATH" dpkg --root="$root" --force-script-chrootless --force-not-root \
        --force-depends --log=/dev/null "$@"
}
dpkg_root -i "$deb" >/dev/null
[ -x "$root/opt/agent-bom/bin/agent-bom-agent" ] || fail "install: no binary"
[ -L "$root/usr/bin/agent-bom-agent" ] || fail "install: no /usr/bin link"
[ "$(stat -c %a "$root/var/lib/agent-bom")" = 700 ] || fail "install: state dir is not 0700"
[ "$(stat -c %a "$root/var/lib/agent-bom/enroll.token")" = 600 ] || fail "install: staged token is not 0600"
[ ! -e "$root/etc/agent-bom/enroll.token" ] || fail "install: the dropped token was not removed"
grep -q collector.example.com:4433 "$root/var/lib/agent-bom/install.json" || fail "install: collector not recorded"
grep -q "$(printf 'cd%.0s' $(seq 32))" "$root/var/lib/agent-bom/install.json" || fail "install: release key not pinned"
grep -qx 'systemctl daemon-reload' "$work/systemctl.log" || fail "install: no daemon-reload"
grep -qx 'systemctl enable agent-bom-agent.service' "$work/systemctl.log" || fail "install: not enabled"
grep -qx 'systemctl start agent-bom-agent.service' "$work/systemctl.log" || fail "install: not started"
pass "deb install: files, 0700 state, token staged 0600 and the drop removed, service enabled and started"

# Upgrade (the same package again): the edited config survives, the service restarts.
echo 'rescan_interval_secs = 120  # edited' >> "$root/etc/agent-bom/agent.toml"
: > "$work/systemctl.log"
dpkg_root --force-confold -i "$deb" >/dev/null
grep -q 'edited' "$root/etc/agent-bom/agent.toml" || fail "upgrade: the edited agent.toml was replaced"
grep -qx 'systemctl try-restart agent-bom-agent.service' "$work/systemctl.log" || fail "upgrade: no restart"
! grep -q 'systemctl start\|systemctl stop' "$work/systemctl.log" || fail "upgrade: service stopped or started instead of restarted"
pass "deb upgrade: edited config kept, running service restarted"

# Remove: stopped, disabled, wrapped configs restored, binary gone, config and state kept.
touch "$root/opt/agent-bom/bin/agent-bom-agent.prev"
: > "$work/systemctl.log"
dpkg_root -r agent-bom-agent >/dev/null 2>&1
grep -qx 'systemctl stop agent-bom-agent.service' "$work/systemctl.log" || fail "remove: not stopped"
grep -qx 'systemctl disable agent-bom-agent.service' "$work/systemctl.log" || fail "remove: not disabled"
[ ! -e "$root/opt/agent-bom/bin/agent-bom-agent" ] || fail "remove: binary left"
[ ! -e "$root/opt/agent-bom/bin/agent-bom-agent.prev" ] || fail "remove: self-update leftovers"
[ -f "$root/etc/agent-bom/agent.toml" ] || fail "remove: config removed"
[ -d "$root/var/lib/agent-bom" ] || fail "remove: identity removed (only purge forgets it)"
pass "deb remove: stopped, disabled, binary and leftovers gone, config and identity kept"

dpkg_root -P agent-bom-agent >/dev/null 2>&1
[ ! -e "$root/var/lib/agent-bom" ] || fail "purge: state left"
[ ! -e "$root/etc/agent-bom/agent.toml" ] || fail "purge: config left"
[ ! -e "$root/opt/agent-bom" ] || fail "purge: /opt/agent-bom left"
pass "deb purge: identity, config and directories gone"

# --- .rpm -------------------------------------------------------------------------------------
rpm_list="$(rpm -qlp "$rpm_file" 2>/dev/null)"
for f in /opt/agent-bom/bin/agent-bom-agent /opt/agent-bom/lib/maintainer.sh /usr/bin/agent-bom-agent \
    /usr/lib/systemd/system/agent-bom-agent.service /etc/agent-bom/agent.toml; do
    grep -qx "$f" <<<"$rpm_list" || fail "rpm lacks $f"
done
rpm -qcp "$rpm_file" 2>/dev/null | grep -qx /etc/agent-bom/agent.toml || fail "rpm: agent.toml is not %config"
scripts="$(rpm -qp --scripts "$rpm_file" 2>/dev/null)"
grep -q 'maintainer.sh configure' <<<"$scripts" || fail "rpm: %post does not configure"
grep -q 'maintainer.sh remove' <<<"$scripts" || fail "rpm: %preun does not remove"
pass "rpm file list, %config, scriptlets"
rroot="$work/rpmroot"
mkdir -p "$rroot"
rpm --root "$rroot" --initdb 2>/dev/null
rpm --root "$rroot" -i --nodeps --noscripts --nosignature "$rpm_file" 2>/dev/null
[ -x "$rroot/opt/agent-bom/bin/agent-bom-agent" ] || fail "rpm --root install: no binary"
rpm --root "$rroot" -q agent-bom-agent >/dev/null 2>&1 || fail "rpm --root: not registered"
rpm --root "$rroot" -e --nodeps --noscripts agent-bom-agent 2>/dev/null
[ ! -e "$rroot/opt/agent-bom/bin/agent-bom-agent" ] || fail "rpm --root erase: binary left"
[ ! -e "$rroot/etc/agent-bom/agent.toml" ] || fail "rpm erase: the unedited agent.toml was left"
[ ! -e "$rroot/etc/agent-bom/agent.toml.rpmsave" ] || fail "rpm erase: an unedited agent.toml was saved"
pass "rpm installs into and erases from a throwaway root (an unedited agent.toml goes)"

# RPM's removal semantics in place of a purge: an edited config is saved, a stray MDM token
# goes, the identity stays (and %postun says how to forget it).
rpm -qlvp "$rpm_file" 2>/dev/null | grep -Eq '^drwx------ .* /var/lib/agent-bom$' \
    || fail "rpm: /var/lib/agent-bom is not an owned 0700 directory"
grep -q 'rm -rf /var/lib/agent-bom /var/lib/agent-bom-users' <<<"$scripts" \
    || fail "rpm: %postun does not say how to forget the identity"
rpm --root "$rroot" -i --nodeps --noscripts --nosignature "$rpm_file" 2>/dev/null
echo 'collector = "edited.example:4433"' >> "$rroot/etc/agent-bom/agent.toml"
echo 'stray-token' > "$rroot/etc/agent-bom/enroll.token"
echo 'identity' > "$rroot/var/lib/agent-bom/identity.test"
rpm --root "$rroot" -e --nodeps --noscripts agent-bom-agent 2>/dev/null
grep -q edited.example "$rroot/etc/agent-bom/agent.toml.rpmsave" 2>/dev/null \
    || fail "rpm erase: the edited agent.toml was not kept as .rpmsave"
[ ! -e "$rroot/etc/agent-bom/enroll.token" ] || fail "rpm erase: a stray enrollment token was left"
[ -f "$rroot/var/lib/agent-bom/identity.test" ] || fail "rpm erase: the identity was removed (RPM keeps state)"
pass "rpm erase: edited config kept as .rpmsave, stray token removed, identity kept until forgotten"

# --- .msi -------------------------------------------------------------------------------------
if [ -n "$msi" ]; then
    tables="$(msiinfo tables "$msi")"
    for t in File Component ServiceInstall ServiceControl Property Upgrade Registry LaunchCondition; do
        grep -qx "$t" <<<"$tables" || fail "msi lacks table $t"
    done
    svc="$(msiinfo export "$msi" ServiceInstall)"
    grep -q 'agent-bom-agent' <<<"$svc" || fail "msi: no agent-bom-agent service"
    grep -q 'service run' <<<"$svc" || fail "msi: the service does not run the dispatcher"
    grep -q 'LocalSystem' <<<"$svc" || fail "msi: the service is not LocalSystem"
    awk -F'\t' 'NR>3 && $2=="agent-bom-agent" && $5=="2" {found=1} END {exit !found}' <<<"$svc" \
        || fail "msi: the service does not start automatically"
    ctl="$(msiinfo export "$msi" ServiceControl)"
    grep -q 'agent-bom-agent' <<<"$ctl" || fail "msi: no ServiceControl"
    files="$(msiinfo export "$msi" File)"
    grep -q 'agent-bom-agent.exe' <<<"$files" || fail "msi: no agent-bom-agent.exe"
    grep -q 'agent.toml.default' <<<"$files" || fail "msi: no default agent.toml"
    props="$(msiinfo export "$msi" Property)"
    grep -q '^UpgradeCode' <<<"$props" || fail "msi: no UpgradeCode"
    grep -q '^ProductVersion' <<<"$props" || fail "msi: no ProductVersion"
    msiinfo suminfo "$msi" | grep -q 'x64' || fail "msi: not an x64 package"
    # MDM configuration: each property lands in the installer record the service adopts; the
    # token itself is refused (only a file path is accepted).
    reg="$(msiinfo export "$msi" Registry)"
    for pair in collector=COLLECTOR ca_pin=CA_PIN enrollment_token_file=TOKEN_FILE \
        control_plane_url=CONTROL_PLANE_URL release_keys=RELEASE_KEYS update_channel=CHANNEL; do
        awk -F'\t' -v name="${pair%%=*}" -v value="[${pair#*=}]" \
            'NR>3 && $2=="2" && $3=="SOFTWARE\\agent-bom\\Installer\\" && $4==name && $5==value {found=1} END {exit !found}' \
            <<<"$reg" || fail "msi: no HKLM installer-record value ${pair%%=*} = [${pair#*=}]"
    done
    grep -Eq '\[TOKEN\]' <<<"$reg" && fail "msi: a registry value holds the token"
    grep -q '^SecureCustomProperties.*WIX_UPGRADE_DETECTED.*COLLECTOR;CA_PIN;TOKEN_FILE;CONTROL_PLANE_URL;RELEASE_KEYS;CHANNEL' <<<"$props" \
        || fail "msi: the configuration properties are not secure (passed to the elevated install)"
    msiinfo export "$msi" LaunchCondition | grep -q '^NOT TOKEN' || fail "msi: TOKEN= is not refused"
    msiextract -C "$work/msi" "$msi" >/dev/null
    exe="$(find "$work/msi" -name agent-bom-agent.exe | head -n 1)"
    [ -n "$exe" ] && [ "$(head -c 2 "$exe")" = MZ ] || fail "msi: agent-bom-agent.exe is not a Windows program"
    pass "msi tables (File, ServiceInstall: auto, LocalSystem, 'service run'; ServiceControl; Upgrade), x64, PE binary"
    pass "msi properties COLLECTOR, CA_PIN, TOKEN_FILE, CONTROL_PLANE_URL, RELEASE_KEYS, CHANNEL -> HKLM installer record; TOKEN refused"
fi
echo "$checks passed, 0 failed"
