//! Host facts from sysinfo. The hardware UUID is deliberately not collected here yet: it is an
//! attribute, never the device identity (the identity is the enrolled key pair).

use agent_bom_protocol::HostFacts;

use crate::discovery::catalog::Os;

/// Collect facts about this machine. Cheap: reads memory totals and static system strings only.
pub fn collect() -> HostFacts {
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
        agent_version: Some(crate::AGENT_VERSION.to_string()),
    }
}

/// This machine's hostname, or `unknown`.
pub fn hostname() -> String {
    sysinfo::System::host_name().unwrap_or_else(|_| "unknown".into())
}
