# agent-bom agent: the install command of an Intune Win32 app (package this script with the
# signed agent-bom-agent-<version>-x64.msi using the Win32 Content Prep Tool; install command:
#   powershell.exe -ExecutionPolicy Bypass -NoProfile -File install.ps1
# install behavior: System). Installs or upgrades the MSI quietly (a newer MSI replaces the
# older: major upgrade) and starts the service. The enrollment token and the other settings come
# from the policy profile made from agent-bom.admx (HKLM\SOFTWARE\Policies\agent-bom\agent),
# never from this script: the agent reads them at start and whenever they change, and enrolls
# when it reaches the collector. Exit code: msiexec's (0 done, 3010 done, reboot suggested).
$ErrorActionPreference = 'Stop'
$msi = Get-ChildItem -Path $PSScriptRoot -Filter 'agent-bom-agent-*-x64.msi' | Sort-Object Name | Select-Object -Last 1
if (-not $msi) {
    Write-Error "agent-bom install: no agent-bom-agent-*-x64.msi next to install.ps1"
    exit 1603
}
$log = Join-Path $env:ProgramData 'agent-bom\logs\install-msi.log'
New-Item -ItemType Directory -Force -Path (Split-Path $log) | Out-Null
$process = Start-Process -FilePath msiexec.exe -Wait -PassThru -ArgumentList @(
    '/i', "`"$($msi.FullName)`"", '/qn', '/norestart', '/l*v', "`"$log`"")
if ($process.ExitCode -ne 0 -and $process.ExitCode -ne 3010) {
    Write-Error "agent-bom install: msiexec exited $($process.ExitCode); see $log"
    exit $process.ExitCode
}
$agent = Join-Path $env:ProgramFiles 'agent-bom\agent-bom-agent.exe'
& $agent --version
exit $process.ExitCode
