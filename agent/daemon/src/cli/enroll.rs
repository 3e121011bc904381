//! `enroll`: exchange an enrollment token for this endpoint's identity.

use std::path::PathBuf;

use agent_bom_agent::settings::env;
use agent_bom_agent::uplink::{self, EnrollOptions};
use agent_bom_state::StateDir;
use agent_bom_state::layout::default_state_dir;
use anyhow::{Context, Result, bail};

/// What `enroll` was given.
pub(crate) struct EnrollArgs {
    pub(crate) collector: String,
    pub(crate) token: Option<String>,
    pub(crate) token_file: Option<PathBuf>,
    pub(crate) ca_pin: Option<String>,
    pub(crate) state_dir: Option<PathBuf>,
    pub(crate) force: bool,
}

/// Enroll and print the endpoint id.
pub(crate) async fn enroll(args: EnrollArgs) -> Result<()> {
    let EnrollArgs {
        collector,
        token,
        token_file,
        ca_pin,
        state_dir,
        force,
    } = args;
    let token = match (token, token_file) {
        (Some(t), _) => t,
        (None, Some(f)) => std::fs::read_to_string(&f)
            .with_context(|| format!("reading token file {}", f.display()))?
            .trim()
            .to_string(),
        (None, None) => bail!(
            "an enrollment token is required: --token, --token-file or {}",
            env::ENROLL_TOKEN
        ),
    };
    let state = StateDir::open(&state_dir.unwrap_or_else(default_state_dir))?;
    let record = uplink::enroll(
        &state,
        &EnrollOptions {
            collector,
            token,
            ca_pin,
            force,
        },
    )
    .await?;
    println!(
        "enrolled as {} (state in {})",
        record.agent_id,
        state.path().display()
    );
    Ok(())
}
