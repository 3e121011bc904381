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
    /// `--trust-on-first-use`: the operator chose to go without a pin.
    pub(crate) trust_on_first_use: bool,
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
        trust_on_first_use,
        state_dir,
        force,
    } = args;
    // Refused before the token is read or the state directory touched: without a pin the
    // agent would hand its token to, and trust, whoever answers at the address.
    if ca_pin.is_none() && !trust_on_first_use {
        return Err(uplink::UplinkError::NoCaPin.into());
    }
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
    let options = EnrollOptions {
        collector,
        token,
        ca_pin,
        force,
    };
    let record = if trust_on_first_use {
        uplink::enroll_trusting_first_use(&state, &options).await?
    } else {
        uplink::enroll(&state, &options).await?
    };
    println!(
        "enrolled as {} (state in {})",
        record.agent_id,
        state.path().display()
    );
    Ok(())
}
