# agent-bom agent: the detection rule of the Intune Win32 app (Detection rules > Use a custom
# detection script; run as 64-bit). Intune counts the app as installed when this exits 0 AND
# writes to standard output. Set $MinVersion with each new MSI so older agents are upgraded.
# The same facts (version, service, enrollment, proxy coverage, managed) are what
# `agent-bom-agent detect` prints; they are written here for the Intune log.
$MinVersion = [version]'0.1.0'
$agent = Join-Path $env:ProgramFiles 'agent-bom\agent-bom-agent.exe'
if (-not (Test-Path $agent)) { exit 1 }
$facts = & $agent detect --all-users 2>$null
if ($LASTEXITCODE -ne 0) { exit 1 }
$version = ($facts | Where-Object { $_ -like 'version=*' }) -replace '^version=', ''
try { $installed = [version]$version } catch { exit 1 }
if ($installed -lt $MinVersion) { exit 1 }
Write-Output ($facts -join '; ')
exit 0
