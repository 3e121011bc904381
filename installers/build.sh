#!/usr/bin/env bash
# Build the agent's packages from already built binaries: a .deb and an .rpm for Linux and an
# MSI for Windows. The service unit inside the Linux packages is rendered by the agent itself
# (`agent-bom-agent service render`), so it is the unit `service install` writes.
#
#   installers/build.sh --version 0.1.0 --linux-bin target/release-agent/agent-bom-agent \
#       [--windows-bin target/x86_64-pc-windows-gnu/release-agent/agent-bom-agent.exe] --out dist
#
# Needs dpkg-deb (dpkg), rpmbuild (rpm) and, for the MSI, wixl (msitools / wixl). macOS
# packages are built on a Mac: installers/macos/build-pkg.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version='' linux_bin='' windows_bin='' out=''
while [ $# -gt 0 ]; do
    case "$1" in
        --version) version="$2"; shift ;;
        --linux-bin) linux_bin="$2"; shift ;;
        --windows-bin) windows_bin="$2"; shift ;;
        --out) out="$2"; shift ;;
        *) echo "build.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$version" ] && [ -n "$linux_bin" ] && [ -n "$out" ] || {
    echo "usage: build.sh --version V --linux-bin PATH [--windows-bin PATH] --out DIR" >&2
    exit 2
}
mkdir -p "$out"
out="$(cd "$out" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

case "$(uname -m)" in
    x86_64) deb_arch=amd64; rpm_arch=x86_64 ;;
    aarch64) deb_arch=arm64; rpm_arch=aarch64 ;;
    *) echo "build.sh: unsupported build architecture" >&2; exit 2 ;;
esac

# The file tree both Linux packages install; $1 is where the unit goes.
stage_linux() {
    local root="$1" unit_dir="$2"
    install -d -m 0755 "$root/opt/agent-bom/bin" "$root/opt/agent-bom/lib" "$root/usr/bin" \
        "$root/$unit_dir" "$root/etc/agent-bom" "$root/usr/share/doc/agent-bom-agent"
    install -m 0755 "$linux_bin" "$root/opt/agent-bom/bin/agent-bom-agent"
    install -m 0755 "$here/linux/maintainer.sh" "$root/opt/agent-bom/lib/maintainer.sh"
    ln -s /opt/agent-bom/bin/agent-bom-agent "$root/usr/bin/agent-bom-agent"
    "$linux_bin" service render --manager systemd \
        --exe /opt/agent-bom/bin/agent-bom-agent --state-dir /var/lib/agent-bom \
        --config /etc/agent-bom/agent.toml > "$root/$unit_dir/agent-bom-agent.service"
    chmod 0644 "$root/$unit_dir/agent-bom-agent.service"
    install -m 0644 "$here/linux/agent.toml" "$root/etc/agent-bom/agent.toml"
    printf 'agent-bom agent %s\nInstall and upgrade: docs/install.md, docs/upgrade.md of the agent-bom repository.\nLicense: Apache-2.0\n' \
        "$version" > "$root/usr/share/doc/agent-bom-agent/README"
    chmod 0644 "$root/usr/share/doc/agent-bom-agent/README"
}

# .deb
deb_root="$work/deb"
stage_linux "$deb_root" lib/systemd/system
install -d -m 0755 "$deb_root/DEBIAN"
size_kb="$(du -sk --exclude=DEBIAN "$deb_root" | cut -f1)"
sed -e "s/@VERSION@/$version/" -e "s/@DEB_ARCH@/$deb_arch/" -e "s/@INSTALLED_SIZE@/$size_kb/" \
    "$here/linux/deb/control.in" > "$deb_root/DEBIAN/control"
install -m 0644 "$here/linux/deb/conffiles" "$deb_root/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "$here/linux/deb/$s" "$deb_root/DEBIAN/$s"; done
deb="$out/agent-bom-agent_${version}_${deb_arch}.deb"
dpkg-deb --root-owner-group -Zgzip --build "$deb_root" "$deb" >/dev/null
echo "built $deb"

# .rpm (RPM versions may not contain '-')
rpm_version="${version//-/~}"
rpm_root="$work/rpm-stage"
stage_linux "$rpm_root" usr/lib/systemd/system
# The .rpm owns the state directory (%dir, 0700); the .deb's configure step creates it.
install -d -m 0700 "$rpm_root/var/lib/agent-bom"
sed -e "s/@RPM_VERSION@/$rpm_version/" -e "s/@RPM_ARCH@/$rpm_arch/" \
    "$here/linux/rpm/agent-bom-agent.spec.in" > "$work/agent-bom-agent.spec"
rpmbuild -bb --quiet \
    --define "_topdir $work/rpmbuild" --define "_rpmdir $work/rpms" \
    --define "staging $rpm_root" --define "_binary_payload w6.gzdio" \
    --define "__strip /bin/true" --define "debug_package %{nil}" \
    "$work/agent-bom-agent.spec" >/dev/null
rpm_file="$(find "$work/rpms" -name '*.rpm' | head -n 1)"
cp "$rpm_file" "$out/"
echo "built $out/$(basename "$rpm_file")"

# .msi
if [ -n "$windows_bin" ]; then
    msi_src="$work/msi"
    install -d "$msi_src"
    cp "$windows_bin" "$msi_src/agent-bom-agent.exe"
    sed 's/$/\r/' "$here/linux/agent.toml" > "$msi_src/agent.toml.default"
    cp "$here/windows/agent-bom-agent.wxs" "$msi_src/"
    # MSI versions are numeric: 0.1.0-rc.1 installs as 0.1.0.
    msi_version="${version%%[-+]*}"
    msi="$out/agent-bom-agent-${version}-x64.msi"
    # wixl resolves File sources relative to the working directory.
    (cd "$msi_src" && wixl -a x64 -D "Version=$msi_version" -o "$msi" agent-bom-agent.wxs)
    # The MDM configuration properties must reach the elevated install: wixl writes
    # SecureCustomProperties itself (for MajorUpgrade) and has no Secure attribute, so they are
    # appended to its list here (msibuild, msitools).
    secure="$(msiinfo export "$msi" Property | awk -F'\t' '$1=="SecureCustomProperties" {print $2}')"
    msibuild "$msi" -q "UPDATE Property SET Value='${secure:+$secure;}COLLECTOR;CA_PIN;TOKEN_FILE;CONTROL_PLANE_URL;RELEASE_KEYS;CHANNEL' WHERE Property='SecureCustomProperties'"
    echo "built $msi"
fi
