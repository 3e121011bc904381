# agent-bom agent installer for Windows, served by the agent-bom control plane at
# @PUBLIC_URL@/install/agent.ps1 and bound to it (URL, collector, CA pin, release keys).
#
#   Invoke-WebRequest @PUBLIC_URL@/install/agent.ps1 -OutFile install-agent.ps1
#   powershell -ExecutionPolicy Bypass -File install-agent.ps1 -TokenFile C:\path\enrollment.token
#
# Run it as an administrator. The enrollment token comes from -TokenFile, the
# AGENT_BOM_ENROLL_TOKEN variable, or -Token (avoid it: an argument shows in the process list
# and the console history). The token is handed to the agent on standard input and lands only
# in the agent's state directory (%ProgramData%\agent-bom, SYSTEM and Administrators only)
# until the agent has enrolled.
#
# Checks, before the downloaded build is run or installed: its SHA-256 and size against the
# release record, and the record's ed25519 release signature against the release keys this
# script was served with. Windows PowerShell has no ed25519, so the check is done here, in
# script (Test-Ed25519Signature: RFC 8032 verification over System.Numerics.BigInteger and
# .NET's SHA-512); the downloaded binary is never asked to check itself. Trust chain: the
# script comes from your control plane over HTTPS (or is copied from it and distributed like
# any other admin script), it pins the release public keys; the build is installed only if one
# of them signed (version, os, arch, sha256, size) and the bytes hash to that sha256. Once
# installed, self-updates are checked by the agent against the same pinned keys.
[CmdletBinding()]
param(
    [string]$TokenFile = "",
    [string]$Token = "",
    [string]$Channel = "@CHANNEL@",
    [string]$InstallDir = "$env:ProgramFiles\agent-bom",
    [switch]$NoStart,
    [switch]$VerifyOnly
)
$ErrorActionPreference = "Stop"
$ProgressPreference = "SilentlyContinue"

$PublicUrl = "@PUBLIC_URL@"
$Collector = "@COLLECTOR@"
$CaPin = "@CA_PIN@"
$ReleaseKeys = "@RELEASE_KEYS@".Split(",") | Where-Object { $_ -ne "" }

# --- ed25519 signature verification (RFC 8032, 5.1.7) ---------------------------------------
# Points are extended coordinates @(X, Y, Z, T), x = X/Z, y = Y/Z, x*y = T/Z. Every operation
# goes through BigInteger's static methods so that no PowerShell operator conversion applies.
Add-Type -AssemblyName System.Numerics
$Ed = @{}
$Ed.P = [System.Numerics.BigInteger]::Subtract([System.Numerics.BigInteger]::Pow(2, 255), 19)
$Ed.L = [System.Numerics.BigInteger]::Add([System.Numerics.BigInteger]::Pow(2, 252),
    [System.Numerics.BigInteger]::Parse("27742317777372353535851937790883648493"))

function Ed-Mod([System.Numerics.BigInteger]$x, [System.Numerics.BigInteger]$m) {
    $r = [System.Numerics.BigInteger]::Remainder($x, $m)
    if ($r.Sign -lt 0) { $r = [System.Numerics.BigInteger]::Add($r, $m) }
    return $r
}
function Ed-Mul($a, $b) { Ed-Mod ([System.Numerics.BigInteger]::Multiply($a, $b)) $Ed.P }
function Ed-Add($a, $b) { Ed-Mod ([System.Numerics.BigInteger]::Add($a, $b)) $Ed.P }
function Ed-Sub($a, $b) { Ed-Mod ([System.Numerics.BigInteger]::Subtract($a, $b)) $Ed.P }
function Ed-Inv($a) {
    [System.Numerics.BigInteger]::ModPow($a, [System.Numerics.BigInteger]::Subtract($Ed.P, 2), $Ed.P)
}
# A little-endian unsigned integer (BigInteger reads two's complement: add a zero byte).
function Ed-Int([byte[]]$bytes) {
    $buffer = New-Object byte[] ($bytes.Length + 1)
    [Array]::Copy($bytes, $buffer, $bytes.Length)
    return New-Object System.Numerics.BigInteger -ArgumentList (, $buffer)
}
$Ed.D = Ed-Mul (Ed-Sub 0 121665) (Ed-Inv 121666)
$Ed.D2 = Ed-Add $Ed.D $Ed.D
$Ed.SqrtM1 = [System.Numerics.BigInteger]::ModPow(2,
    [System.Numerics.BigInteger]::Divide([System.Numerics.BigInteger]::Subtract($Ed.P, 1), 4), $Ed.P)

function Ed-PointAdd($p, $q) {
    $a = Ed-Mul (Ed-Sub $p[1] $p[0]) (Ed-Sub $q[1] $q[0])
    $b = Ed-Mul (Ed-Add $p[1] $p[0]) (Ed-Add $q[1] $q[0])
    $c = Ed-Mul (Ed-Mul $p[3] $Ed.D2) $q[3]
    $d = Ed-Mul (Ed-Add $p[2] $p[2]) $q[2]
    $e = Ed-Sub $b $a; $f = Ed-Sub $d $c; $g = Ed-Add $d $c; $h = Ed-Add $b $a
    return , @((Ed-Mul $e $f), (Ed-Mul $g $h), (Ed-Mul $f $g), (Ed-Mul $e $h))
}
function Ed-ScalarMul([System.Numerics.BigInteger]$s, $p) {
    $q = @([System.Numerics.BigInteger]::Zero, [System.Numerics.BigInteger]::One,
        [System.Numerics.BigInteger]::One, [System.Numerics.BigInteger]::Zero)
    while ($s.Sign -gt 0) {
        if (-not $s.IsEven) { $q = Ed-PointAdd $q $p }
        $p = Ed-PointAdd $p $p
        $s = [System.Numerics.BigInteger]::Divide($s, 2)
    }
    return , $q
}
function Ed-PointEqual($p, $q) {
    return ((Ed-Sub (Ed-Mul $p[0] $q[2]) (Ed-Mul $q[0] $p[2])).IsZero -and
        (Ed-Sub (Ed-Mul $p[1] $q[2]) (Ed-Mul $q[1] $p[2])).IsZero)
}
# x from y and the sign bit, or $null when y is not on the curve.
function Ed-RecoverX([System.Numerics.BigInteger]$y, [int]$sign) {
    if ([System.Numerics.BigInteger]::Compare($y, $Ed.P) -ge 0) { return $null }
    $yy = Ed-Mul $y $y
    $x2 = Ed-Mul (Ed-Sub $yy 1) (Ed-Inv (Ed-Add (Ed-Mul $Ed.D $yy) 1))
    if ($x2.IsZero) {
        if ($sign -ne 0) { return $null }
        return [System.Numerics.BigInteger]::Zero
    }
    $exp = [System.Numerics.BigInteger]::Divide([System.Numerics.BigInteger]::Add($Ed.P, 3), 8)
    $x = [System.Numerics.BigInteger]::ModPow($x2, $exp, $Ed.P)
    if (-not (Ed-Sub (Ed-Mul $x $x) $x2).IsZero) { $x = Ed-Mul $x $Ed.SqrtM1 }
    if (-not (Ed-Sub (Ed-Mul $x $x) $x2).IsZero) { return $null }
    if ([int]($x.IsEven -eq $false) -ne $sign) { $x = Ed-Sub 0 $x }
    return $x
}
function Ed-Decompress([byte[]]$bytes) {
    if ($bytes.Length -ne 32) { return $null }
    $copy = [byte[]]$bytes.Clone()
    $sign = ($copy[31] -shr 7) -band 1
    $copy[31] = $copy[31] -band 0x7f
    $y = Ed-Int $copy
    $x = Ed-RecoverX $y $sign
    if ($null -eq $x) { return $null }
    return , @($x, $y, [System.Numerics.BigInteger]::One, (Ed-Mul $x $y))
}
$Ed.G = Ed-Decompress ([byte[]](@(0x58) + @(0x66) * 31))

# True when $Signature (64 bytes) is $PublicKey's (32 bytes) ed25519 signature of $Message.
function Test-Ed25519Signature([byte[]]$PublicKey, [byte[]]$Message, [byte[]]$Signature) {
    if ($PublicKey.Length -ne 32 -or $Signature.Length -ne 64) { return $false }
    $a = Ed-Decompress $PublicKey
    if ($null -eq $a) { return $false }
    $rBytes = [byte[]]($Signature[0..31])
    $r = Ed-Decompress $rBytes
    if ($null -eq $r) { return $false }
    $s = Ed-Int ([byte[]]($Signature[32..63]))
    if ([System.Numerics.BigInteger]::Compare($s, $Ed.L) -ge 0) { return $false }
    $sha = [System.Security.Cryptography.SHA512]::Create()
    try {
        $digest = $sha.ComputeHash([byte[]]($rBytes + $PublicKey + $Message))
    } finally {
        $sha.Dispose()
    }
    $k = Ed-Mod (Ed-Int $digest) $Ed.L
    return Ed-PointEqual (Ed-ScalarMul $s $Ed.G) (Ed-PointAdd $r (Ed-ScalarMul $k $a))
}

function ConvertFrom-Hex([string]$hex) {
    if ($hex.Length % 2 -ne 0 -or $hex -notmatch '^[0-9a-fA-F]*$') { throw "agent-bom install: not hex: $hex" }
    $bytes = New-Object byte[] ($hex.Length / 2)
    for ($i = 0; $i -lt $bytes.Length; $i++) { $bytes[$i] = [Convert]::ToByte($hex.Substring(2 * $i, 2), 16) }
    return , $bytes
}
# The bytes a release signature covers: each text field as an 8-byte big-endian length and its
# UTF-8 bytes, then the size as a length-8 field (protocol/src/release.rs, install-agent.sh).
function Get-ReleaseManifestBytes([string]$Version, [string]$Os, [string]$Arch, [string]$Sha256, [uint64]$Size) {
    $out = New-Object System.Collections.Generic.List[byte]
    $u64 = {
        param([uint64]$n)
        $b = [BitConverter]::GetBytes($n)
        if ([BitConverter]::IsLittleEndian) { [Array]::Reverse($b) }
        $out.AddRange([byte[]]$b)
    }
    foreach ($text in @("agent-bom release v1", $Version, $Os, $Arch, $Sha256)) {
        $bytes = [Text.Encoding]::UTF8.GetBytes($text)
        & $u64 ([uint64]$bytes.Length)
        $out.AddRange([byte[]]$bytes)
    }
    & $u64 ([uint64]8)
    & $u64 $Size
    return , $out.ToArray()
}
# The key that signed the release, or an error.
function Assert-ReleaseSignature($Latest, [string]$Os, [string]$Arch, [string[]]$Keys) {
    if ($Keys.Count -eq 0) { throw "agent-bom install: this control plane has no release key to check the build with" }
    $manifest = Get-ReleaseManifestBytes $Latest.version $Os $Arch $Latest.sha256 ([uint64]$Latest.size)
    $signature = ConvertFrom-Hex $Latest.signature
    foreach ($key in $Keys) {
        if (Test-Ed25519Signature (ConvertFrom-Hex $key) $manifest $signature) { return $key }
    }
    throw "agent-bom install: the build's release signature does not verify with this control plane's release keys"
}
# Dot-sourced with -VerifyOnly (tests, audits): define the functions above and stop.
if ($VerifyOnly) { return }

$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw "agent-bom install: run as an administrator (the agent is a system service)"
}
if ($Token -ne "") {
    Write-Warning "-Token shows in the process list and console history; prefer -TokenFile"
} elseif ($env:AGENT_BOM_ENROLL_TOKEN) {
    $Token = $env:AGENT_BOM_ENROLL_TOKEN
}
$Arch = switch ($env:PROCESSOR_ARCHITECTURE) {
    "AMD64" { "x86_64" }
    "ARM64" { "aarch64" }
    default { throw "agent-bom install: unsupported architecture $env:PROCESSOR_ARCHITECTURE" }
}

Write-Host "agent-bom install: asking $PublicUrl for the newest $Channel build for windows/$Arch"
$latest = Invoke-RestMethod -UseBasicParsing "$PublicUrl/install/latest?os=windows&arch=$Arch&channel=$Channel"
$work = Join-Path ([IO.Path]::GetTempPath()) ("agent-bom-" + [guid]::NewGuid())
New-Item -ItemType Directory -Path $work | Out-Null
try {
    $download = Join-Path $work "agent-bom-agent.exe"
    Invoke-WebRequest -UseBasicParsing -Uri $latest.url -OutFile $download
    $actual = (Get-FileHash -Algorithm SHA256 -Path $download).Hash.ToLowerInvariant()
    if ($actual -ne $latest.sha256) {
        throw "agent-bom install: SHA-256 mismatch: got $actual, the release states $($latest.sha256)"
    }
    if ((Get-Item $download).Length -ne [int64]$latest.size) {
        throw "agent-bom install: size mismatch: the release states $($latest.size) bytes"
    }
    $signer = Assert-ReleaseSignature $latest "windows" $Arch $ReleaseKeys
    Write-Host "agent-bom install: release signature verified with key $($signer.Substring(0, 16))..."
    New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
    $exe = Join-Path $InstallDir "agent-bom-agent.exe"
    $service = Get-Service -Name "agent-bom-agent" -ErrorAction SilentlyContinue
    if ($service -and $service.Status -eq "Running") { Stop-Service -Name "agent-bom-agent" }
    Move-Item -Force -Path $download -Destination $exe

    $arguments = @("service", "install", "--collector", $Collector, "--ca-pin", $CaPin,
        "--control-plane-url", $PublicUrl, "--channel", $Channel)
    foreach ($key in $ReleaseKeys) { $arguments += @("--release-key", $key) }
    if ($NoStart) { $arguments += "--no-start" }
    if ($TokenFile -ne "") {
        $arguments += @("--token-file", $TokenFile)
        & $exe @arguments
    } elseif ($Token -ne "") {
        # Piped to standard input: the token is on no command line.
        $arguments += @("--token-file", "-")
        $env:AGENT_BOM_ENROLL_TOKEN = $null
        $Token | & $exe @arguments
    } else {
        Write-Host "agent-bom install: no enrollment token given: the service waits until you run agent-bom-agent enroll"
        & $exe @arguments
    }
    if ($LASTEXITCODE -ne 0) { throw "agent-bom install: service install failed ($LASTEXITCODE)" }
    $Token = ""
    Write-Host "agent-bom install: installed agent-bom-agent $($latest.version) in $InstallDir"
} finally {
    Remove-Item -Recurse -Force -Path $work -ErrorAction SilentlyContinue
}
