# agent-bom agent: the uninstall command of the Intune Win32 app
#   powershell.exe -ExecutionPolicy Bypass -NoProfile -File uninstall.ps1 [-Forget]
# Restores every wrapped MCP server configuration of every user first (the proxy leaves with the
# agent and MCP clients must keep working), then removes the MSI. -Forget also deletes the
# identity and spools (%ProgramData%\agent-bom); without it a reinstall is the same endpoint.
# Unassign the policy profile too, or a reinstall enrolls again at once.
param([switch]$Forget)
$ErrorActionPreference = 'Stop'
$agent = Join-Path $env:ProgramFiles 'agent-bom\agent-bom-agent.exe'
if (Test-Path $agent) {
    $arguments = @('service', 'uninstall', '--unwrap')
    if ($Forget) { $arguments += '--forget' }
    & $agent @arguments
    if ($LASTEXITCODE -ne 0) { Write-Warning "agent-bom uninstall: service uninstall exited $LASTEXITCODE" }
}
$product = Get-CimInstance -ClassName Win32_Product -Filter "Name = 'agent-bom agent'" -ErrorAction SilentlyContinue
foreach ($p in @($product)) {
    if ($p) {
        $process = Start-Process -FilePath msiexec.exe -Wait -PassThru -ArgumentList @('/x', $p.IdentifyingNumber, '/qn', '/norestart')
        if ($process.ExitCode -ne 0 -and $process.ExitCode -ne 3010) { exit $process.ExitCode }
    }
}
exit 0
