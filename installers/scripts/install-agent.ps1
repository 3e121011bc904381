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
# Checks: the build's SHA-256 against the control plane's release record. Windows PowerShell has
# no ed25519, so this script cannot check the release signature itself: on networks you do not
# trust, install the MSI signed with your code-signing certificate instead. Self-updates are
# checked against the pinned release key by the agent.
[CmdletBinding()]
param(
    [string]$TokenFile = "",
    [string]$Token = "",
    [string]$Channel = "@CHANNEL@",
    [string]$InstallDir = "$env:ProgramFiles\agent-bom",
    [switch]$NoStart
)
$ErrorActionPreference = "Stop"
$ProgressPreference = "SilentlyContinue"

$PublicUrl = "@PUBLIC_URL@"
$Collector = "@COLLECTOR@"
$CaPin = "@CA_PIN@"
$ReleaseKeys = "@RELEASE_KEYS@".Split(",") | Where-Object { $_ -ne "" }

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
