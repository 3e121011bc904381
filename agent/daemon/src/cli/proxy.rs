//! `proxy`: relay one MCP stdio server through the inspecting proxy (what `wrap` writes into
//! client configs). It runs outside the shared runtime, on its own small one.

use std::ffi::OsString;
use std::path::PathBuf;

use agent_bom_proxy::ProxyOptions;
use agent_bom_proxy::policy::FailMode;
use agent_bom_state::layout::default_state_dir;

/// The proxy runs on a current-thread runtime: its pumps are their own threads, the runtime only
/// supervises (signals, timers, audit), so one more worker thread would be idle memory.
pub(crate) fn run_proxy(
    server_id: Option<String>,
    policy: Option<PathBuf>,
    fail: FailMode,
    state_dir: Option<PathBuf>,
    share_dir: Option<PathBuf>,
    mut command: Vec<OsString>,
) -> std::process::ExitCode {
    if command.is_empty() {
        eprintln!("error: proxy needs the server command (optionally after `--`)");
        return std::process::ExitCode::from(2);
    }
    let program = command.remove(0);
    let options = ProxyOptions {
        server_id,
        command: program,
        args: command,
        state_dir: state_dir.unwrap_or_else(default_state_dir),
        share_dir,
        policy,
        fail,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(agent_bom_proxy::run(options)) {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e}");
            // 127: the shell's "command not found", which is what a client would have seen.
            std::process::ExitCode::from(127)
        }
    }
}
