//! `wrap` and `unwrap`: print what changed, per client config file.

use agent_bom_agent::wrap;
use anyhow::{Result, bail};

/// Print the outcome of a wrap or unwrap; an error when any file failed.
pub(crate) fn print_changes(
    changes: Vec<Result<wrap::FileChange, wrap::WrapError>>,
    verb: &str,
) -> Result<()> {
    let mut failed = 0;
    if !changes
        .iter()
        .any(|c| c.as_ref().is_ok_and(|c| !c.servers.is_empty()))
    {
        println!("nothing to {verb}");
    }
    for change in changes {
        if let Ok(c) = &change {
            for s in &c.skipped {
                println!(
                    "skipped {} in {} ({}): {}",
                    s.server,
                    c.path.display(),
                    c.client,
                    s.reason
                );
            }
        }
        match change {
            Ok(c) if c.servers.is_empty() => {}
            Ok(c) if !c.written => print!("{}", c.diff),
            Ok(c) => println!(
                "{verb}ped {} server(s) in {} ({}){}: {}",
                c.servers.len(),
                c.path.display(),
                c.client,
                if c.exact {
                    ", original bytes restored"
                } else {
                    ""
                },
                c.servers.join(", ")
            ),
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} file(s) could not be {verb}ped");
    }
    Ok(())
}
