//! `scan`, `paths` and `watch`: local mode, no control plane involved.

use std::time::Duration;

use agent_bom_agent::uplink;
use agent_bom_discovery as discovery;
use agent_bom_discovery::watch::{self, ConfigWatcher};
use anyhow::Result;
use tokio_util::sync::CancellationToken;

use super::target::Target;

/// Print the inventory, as a table or one JSON object.
pub(crate) async fn scan(target: Target, json: bool) -> Result<()> {
    let inventory = uplink::scan_now(target.scan_options()?).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&inventory)?);
    } else {
        print!("{}", agent_bom_discovery::report::table(&inventory));
    }
    Ok(())
}

/// Print every config path looked at, found or missing.
pub(crate) fn paths(target: Target) -> Result<()> {
    for c in discovery::candidates(&target.scan_options()?) {
        let mark = if !c.concrete {
            "pattern"
        } else if std::fs::symlink_metadata(&c.path).is_ok() {
            "found  "
        } else {
            "missing"
        };
        println!("{mark} {:<16} {}", c.location.client, c.path.display());
    }
    Ok(())
}

/// Print config changes live until Ctrl-C.
pub(crate) async fn watch(target: Target, json: bool, rescan_interval: u64) -> Result<()> {
    let options = target.scan_options()?;
    let mut watcher =
        tokio::task::spawn_blocking(move || ConfigWatcher::start(options, watch::DEFAULT_DEBOUNCE))
            .await??;
    eprintln!(
        "watching {} directories for {} servers; Ctrl-C to stop",
        watcher.watched_dirs(),
        watcher.inventory().servers.len()
    );
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        super::shutdown_signal().await;
        signal.cancel();
    });
    let interval = Duration::from_secs(rescan_interval.max(1));
    loop {
        let deltas = tokio::select! {
            _ = shutdown.cancelled() => break,
            d = watcher.next_change() => match d {
                Some(d) => d,
                None => break,
            },
            _ = tokio::time::sleep(interval) => watcher.rescan().await,
        };
        for d in deltas {
            if json {
                println!("{}", serde_json::to_string(&d)?);
            } else {
                println!("{d}");
            }
        }
    }
    Ok(())
}
