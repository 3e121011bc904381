//! Host facts from sysinfo. The hardware UUID is collected as an attribute for the operator and
//! never used as the identity (cloned machines share it; the identity is the enrolled key pair).

use agent_bom_protocol::HostFacts;

use crate::catalog::Os;

/// Collect facts about this machine. Cheap: memory totals, static system strings, the user list.
pub fn collect(agent_version: &str) -> HostFacts {
    let memory_bytes = sysinfo::System::new().ok().map(|mut sys| {
        sys.refresh_memory();
        sys.total_memory()
    });
    HostFacts {
        hostname: hostname(),
        os: Os::current().as_str().to_string(),
        os_version: sysinfo::System::long_os_version().ok(),
        arch: std::env::consts::ARCH.to_string(),
        kernel_version: sysinfo::System::kernel_version().ok(),
        cpu_count: std::thread::available_parallelism()
            .ok()
            .and_then(|n| u32::try_from(n.get()).ok()),
        memory_bytes,
        uptime_secs: sysinfo::System::uptime().ok(),
        agent_version: Some(agent_version.to_string()),
        users: human_users(),
        hardware_uuid: hardware_uuid(),
        // Labels come from the agent's configuration, not from the machine.
        ..HostFacts::default()
    }
}

/// This machine's hostname, or `unknown`.
pub fn hostname() -> String {
    sysinfo::System::host_name().unwrap_or_else(|_| "unknown".into())
}

/// Local accounts that look like people (not system daemons), sorted.
fn human_users() -> Vec<String> {
    let Ok(users) = sysinfo::Users::new_with_refreshed_list() else {
        return Vec::new();
    };
    let mut names: Vec<String> = users
        .iter()
        .filter(|u| {
            let name = u.name();
            !name.starts_with('_')
                && !matches!(name, "nobody" | "daemon" | "sync" | "halt" | "shutdown")
        })
        .filter(|u| is_human_id(&u.id().to_string()))
        .map(|u| u.name().to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Unix: regular accounts start at uid 500 (macOS) / 1000 (Linux), plus root. Elsewhere every
/// listed account counts.
fn is_human_id(id: &str) -> bool {
    match id.parse::<u32>() {
        Ok(uid) => uid == 0 || (500..65_534).contains(&uid),
        Err(_) => true,
    }
}

/// The platform's hardware UUID, when it can be read without privileges we may not have.
fn hardware_uuid() -> Option<String> {
    let clean = |s: &str| {
        let s = s.trim().to_ascii_lowercase();
        (s.len() >= 32 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')).then_some(s)
    };
    match Os::current() {
        Os::Linux => std::fs::read_to_string("/sys/class/dmi/id/product_uuid")
            .ok()
            .and_then(|s| clean(&s)),
        Os::Macos => {
            let out = std::process::Command::new("/usr/sbin/ioreg")
                .args(["-rd1", "-c", "IOPlatformExpertDevice"])
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text.lines().find(|l| l.contains("IOPlatformUUID"))?;
            clean(line.rsplit('"').nth(1)?)
        }
        Os::Windows => {
            let out = std::process::Command::new("reg")
                .args([
                    "query",
                    r"HKLM\SOFTWARE\Microsoft\Cryptography",
                    "/v",
                    "MachineGuid",
                ])
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout);
            clean(text.split_whitespace().last()?)
        }
    }
}
