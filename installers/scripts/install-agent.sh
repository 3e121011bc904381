#!/bin/sh
# agent-bom agent installer for Linux and macOS, served by the agent-bom control plane at
# @PUBLIC_URL@/install/agent.sh and bound to it (URL, collector, CA pin, release keys).
#
#   curl -fsSL @PUBLIC_URL@/install/agent.sh -o install-agent.sh
#   sudo sh install-agent.sh --token-file /path/to/enrollment.token
#
# The enrollment token comes from --token-file FILE, the AGENT_BOM_ENROLL_TOKEN variable
# (sudo --preserve-env=AGENT_BOM_ENROLL_TOKEN), or --token VALUE (avoid it: an argument shows
# in the process list and the shell history). The token is handed to the agent on standard
# input and lands only in the agent's state directory (mode 0600) until the agent has enrolled.
#
# Steps: download the newest build of the channel for this OS and architecture, check its
# SHA-256 and its ed25519 release signature (OpenSSL 3), place it in PREFIX/bin, then
# `agent-bom-agent service install` (system service; --user for a user service).
#
# Options: --user  --channel NAME  --prefix DIR  --no-start  --download-only DIR
#          --no-verify-signature (digest only, when no OpenSSL 3 is available)
set -eu
umask 077

PUBLIC_URL='@PUBLIC_URL@'
COLLECTOR='@COLLECTOR@'
CA_PIN='@CA_PIN@'
RELEASE_KEYS='@RELEASE_KEYS@'
CHANNEL='@CHANNEL@'

USER_SERVICE=0
PREFIX=''
NO_START=0
DOWNLOAD_ONLY=''
VERIFY_SIGNATURE=1
TOKEN_FILE=''
TOKEN="${AGENT_BOM_ENROLL_TOKEN:-}"

die() { echo "agent-bom install: $*" >&2; exit 1; }
say() { echo "agent-bom install: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --user) USER_SERVICE=1 ;;
        --channel) shift; CHANNEL="${1:?--channel needs a name}" ;;
        --prefix) shift; PREFIX="${1:?--prefix needs a directory}" ;;
        --no-start) NO_START=1 ;;
        --download-only) shift; DOWNLOAD_ONLY="${1:?--download-only needs a directory}" ;;
        --no-verify-signature) VERIFY_SIGNATURE=0 ;;
        --token-file) shift; TOKEN_FILE="${1:?--token-file needs a file}" ;;
        --token)
            shift; TOKEN="${1:?--token needs a value}"
            say "warning: --token shows in the process list and shell history; prefer --token-file" ;;
        -h|--help) sed -n '2,21p' "$0" 2>/dev/null || true; exit 0 ;;
        *) die "unknown option $1" ;;
    esac
    shift
done

case "$(uname -s)" in
    Linux) OS=linux; DEFAULT_PREFIX=/opt/agent-bom ;;
    Darwin) OS=macos; DEFAULT_PREFIX=/usr/local/agent-bom ;;
    *) die "unsupported OS $(uname -s): use the packages or agent.ps1" ;;
esac
case "$(uname -m)" in
    x86_64|amd64) ARCH=x86_64 ;;
    aarch64|arm64) ARCH=aarch64 ;;
    *) die "unsupported architecture $(uname -m)" ;;
esac
if [ "$USER_SERVICE" = 1 ]; then
    DEFAULT_PREFIX="${HOME:?}/.local/share/agent-bom"
fi
PREFIX="${PREFIX:-$DEFAULT_PREFIX}"

fetch() { # URL FILE
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --retry 3 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -O "$2" "$1"
    else
        die "curl or wget is needed"
    fi
}

json_field() { # FILE NAME: a string or number field of a flat JSON object
    sed -n "s/.*\"$2\":\"\{0,1\}\([^\",}]*\)\"\{0,1\}[,}].*/\1/p" "$1" | head -n 1
}

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

hex2bin() { # HEX -> bytes on stdout
    hex="$1"
    while [ -n "$hex" ]; do
        byte="${hex%"${hex#??}"}"
        hex="${hex#??}"
        # shellcheck disable=SC2059
        printf "\\$(printf '%03o' "$((0x$byte))")"
    done
}

u64be() { # N -> 8 bytes, big-endian
    n="$1"; i=7
    while [ "$i" -ge 0 ]; do
        # shellcheck disable=SC2059
        printf "\\$(printf '%03o' "$(( (n >> (i * 8)) & 255 ))")"
        i=$((i - 1))
    done
}

field() { # TEXT: length-prefixed, as the release signature covers it
    u64be "${#1}"
    printf '%s' "$1"
}

verify_signature() { # DIR VERSION SHA256 SIZE SIGNATURE
    command -v openssl >/dev/null 2>&1 || die "no openssl to check the release signature (install OpenSSL 3, or --no-verify-signature)"
    {
        field 'agent-bom release v1'
        field "$2"; field "$OS"; field "$ARCH"; field "$3"
        u64be 8; u64be "$4"
    } > "$1/manifest.bin"
    hex2bin "$5" > "$1/signature.bin"
    old_ifs="$IFS"; IFS=','
    for key in $RELEASE_KEYS; do
        IFS="$old_ifs"
        # SubjectPublicKeyInfo of an ed25519 key: a fixed 12-byte DER prefix, then the key.
        { hex2bin 302a300506032b6570032100; hex2bin "$key"; } > "$1/key.der"
        if openssl pkey -pubin -inform DER -in "$1/key.der" -out "$1/key.pem" 2>/dev/null \
            && openssl pkeyutl -verify -pubin -inkey "$1/key.pem" -rawin \
                -in "$1/manifest.bin" -sigfile "$1/signature.bin" >/dev/null 2>&1; then
            say "release signature verified with key ${key%"${key#????????????????}"}..."
            return 0
        fi
    done
    IFS="$old_ifs"
    die "the build's release signature does not verify with this control plane's release keys"
}

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT INT TERM

say "asking $PUBLIC_URL for the newest $CHANNEL build for $OS/$ARCH"
fetch "$PUBLIC_URL/install/latest?os=$OS&arch=$ARCH&channel=$CHANNEL" "$WORK/latest.json" \
    || die "no $CHANNEL build for $OS/$ARCH on $PUBLIC_URL"
VERSION="$(json_field "$WORK/latest.json" version)"
SHA256="$(json_field "$WORK/latest.json" sha256)"
SIZE="$(json_field "$WORK/latest.json" size)"
SIGNATURE="$(json_field "$WORK/latest.json" signature)"
URL="$(json_field "$WORK/latest.json" url)"
[ -n "$VERSION" ] && [ -n "$SHA256" ] && [ -n "$SIGNATURE" ] && [ -n "$URL" ] \
    || die "unexpected answer from $PUBLIC_URL/install/latest"

say "downloading agent-bom-agent $VERSION"
fetch "$URL" "$WORK/agent-bom-agent"
ACTUAL="$(sha256_of "$WORK/agent-bom-agent")"
[ "$ACTUAL" = "$SHA256" ] || die "SHA-256 mismatch: got $ACTUAL, the release states $SHA256"
if [ "$VERIFY_SIGNATURE" = 1 ]; then
    [ -n "$RELEASE_KEYS" ] || die "this control plane has no release key to check the build with"
    verify_signature "$WORK" "$VERSION" "$SHA256" "$SIZE" "$SIGNATURE"
else
    say "warning: release signature not checked (--no-verify-signature)"
fi
chmod 0755 "$WORK/agent-bom-agent"

if [ -n "$DOWNLOAD_ONLY" ]; then
    mkdir -p "$DOWNLOAD_ONLY"
    mv "$WORK/agent-bom-agent" "$DOWNLOAD_ONLY/agent-bom-agent"
    say "verified build in $DOWNLOAD_ONLY/agent-bom-agent"
    exit 0
fi

mkdir -p "$PREFIX/bin"
mv "$WORK/agent-bom-agent" "$PREFIX/bin/agent-bom-agent.new"
mv -f "$PREFIX/bin/agent-bom-agent.new" "$PREFIX/bin/agent-bom-agent"
BIN="$PREFIX/bin/agent-bom-agent"
if [ "$USER_SERVICE" = 0 ] && [ -d /usr/local/bin ]; then
    ln -sf "$BIN" /usr/local/bin/agent-bom-agent
fi

set -- service install --collector "$COLLECTOR" --ca-pin "$CA_PIN" \
    --control-plane-url "$PUBLIC_URL" --channel "$CHANNEL"
old_ifs="$IFS"; IFS=','
for key in $RELEASE_KEYS; do set -- "$@" --release-key "$key"; done
IFS="$old_ifs"
[ "$USER_SERVICE" = 1 ] && set -- "$@" --user
[ "$NO_START" = 1 ] && set -- "$@" --no-start

if [ -n "$TOKEN_FILE" ]; then
    "$BIN" "$@" --token-file "$TOKEN_FILE"
elif [ -n "$TOKEN" ]; then
    # printf is a shell builtin: the token reaches the agent on a pipe, on no command line.
    printf '%s\n' "$TOKEN" | AGENT_BOM_ENROLL_TOKEN= "$BIN" "$@" --token-file -
else
    say "no enrollment token given: the service waits until you run agent-bom-agent enroll"
    AGENT_BOM_ENROLL_TOKEN= "$BIN" "$@"
fi
TOKEN=''
say "installed agent-bom-agent $VERSION"
