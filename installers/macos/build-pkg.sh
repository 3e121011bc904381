#!/bin/sh
# Build the macOS installer package of the agent. Runs on a Mac with Xcode's command-line tools
# (pkgbuild, productbuild, codesign, notarytool); it cannot run on the Linux CI, which is why
# CI builds no .pkg.
#
#   installers/macos/build-pkg.sh VERSION UNIVERSAL_BINARY OUT_DIR
#
# Optional, for a signed and notarized package (what MDMs require):
#   APP_SIGN_ID   "Developer ID Application: Your Org (TEAMID)"   signs the binary (hardened runtime)
#   PKG_SIGN_ID   "Developer ID Installer: Your Org (TEAMID)"     signs the package
#   NOTARY_PROFILE  a `xcrun notarytool store-credentials` profile name
#
# The binary: build both architectures and join them, e.g.
#   cargo build --profile release-agent -p agent-bom-agent --target aarch64-apple-darwin
#   cargo build --profile release-agent -p agent-bom-agent --target x86_64-apple-darwin
#   lipo -create -output agent-bom-agent target/aarch64-apple-darwin/release-agent/agent-bom-agent \
#       target/x86_64-apple-darwin/release-agent/agent-bom-agent
set -eu
version="${1:?version}"; binary="${2:?binary}"; out="${3:?out dir}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

root="$work/root"
mkdir -p "$root/usr/local/agent-bom/bin" "$root/Library/LaunchDaemons" \
    "$root/Library/Application Support/agent-bom" "$root/etc/newsyslog.d"
cp "$binary" "$root/usr/local/agent-bom/bin/agent-bom-agent"
chmod 0755 "$root/usr/local/agent-bom/bin/agent-bom-agent"
if [ -n "${APP_SIGN_ID:-}" ]; then
    codesign --force --options runtime --timestamp --sign "$APP_SIGN_ID" \
        "$root/usr/local/agent-bom/bin/agent-bom-agent"
fi
# The LaunchDaemon the agent itself renders, so it matches `service install`.
"$root/usr/local/agent-bom/bin/agent-bom-agent" service render --manager launchd \
    --exe /usr/local/agent-bom/bin/agent-bom-agent \
    --state-dir "/Library/Application Support/agent-bom" \
    --config "/Library/Application Support/agent-bom/agent.toml" \
    --log-file /Library/Logs/agent-bom/agent-bom-agent.log \
    > "$root/Library/LaunchDaemons/com.agent-bom.agent.plist" 2>/dev/null \
    || cp "$here/com.agent-bom.agent.plist" "$root/Library/LaunchDaemons/com.agent-bom.agent.plist"
chmod 0644 "$root/Library/LaunchDaemons/com.agent-bom.agent.plist"
cp "$here/../linux/agent.toml" "$root/Library/Application Support/agent-bom/agent.toml.default"
cp "$here/newsyslog-agent-bom.conf" "$root/etc/newsyslog.d/agent-bom.conf"

pkgbuild --root "$root" --scripts "$here/scripts" --identifier com.agent-bom.agent \
    --version "$version" --install-location / "$work/agent-bom-agent-component.pkg"
sed "s/@VERSION@/$version/g" "$here/distribution.xml" > "$work/distribution.xml"
mkdir -p "$out"
unsigned="$work/agent-bom-agent-$version.pkg"
productbuild --distribution "$work/distribution.xml" --package-path "$work" "$unsigned"
final="$out/agent-bom-agent-$version.pkg"
if [ -n "${PKG_SIGN_ID:-}" ]; then
    productsign --sign "$PKG_SIGN_ID" "$unsigned" "$final"
else
    cp "$unsigned" "$final"
fi
if [ -n "${NOTARY_PROFILE:-}" ]; then
    xcrun notarytool submit "$final" --keychain-profile "$NOTARY_PROFILE" --wait
    xcrun stapler staple "$final"
fi
pkgutil --check-signature "$final" || true
echo "built $final"
