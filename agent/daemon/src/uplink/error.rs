//! What the uplink and its transport can fail with.

use std::time::Duration;

use agent_bom_protocol::{ErrorCode, FrameError};
use agent_bom_state::dir::StateError;

/// Errors of the uplink.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    /// State directory problem.
    #[error(transparent)]
    State(#[from] StateError),
    /// The collector address could not be resolved or used.
    #[error("collector address {addr}: {message}")]
    Address {
        /// The address given.
        addr: String,
        /// Why it failed.
        message: String,
    },
    /// Connecting failed (network, TLS, pin mismatch).
    #[error("cannot connect to collector {addr}: {message}")]
    Connect {
        /// The collector.
        addr: String,
        /// Why.
        message: String,
    },
    /// The collector refused the request.
    #[error("collector refused: {code}: {message}")]
    Refused {
        /// The collector's code.
        code: ErrorCode,
        /// The collector's message.
        message: String,
        /// Suggested retry delay.
        retry_after: Option<Duration>,
    },
    /// The exchange broke off or the collector answered nonsense.
    #[error("uplink protocol error: {0}")]
    Protocol(String),
    /// Local crypto or TLS setup failed.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// The session ran on the TLS/TCP fallback long enough; reconnect to try QUIC again.
    #[error("reconnecting to try QUIC again")]
    RetryQuic,
    /// The session must start over (e.g. to use a rotated credential).
    #[error("reconnecting: {0}")]
    Reconnect(&'static str),
    /// No CA pin was given and trust on first use was not chosen.
    #[error(
        "refusing to enroll without --ca-pin: pass the control plane's CA fingerprint (the ca.pin file in its data directory), or --trust-on-first-use to trust whatever CA the collector presents this once (only on a network you trust)"
    )]
    NoCaPin,
    /// The device is already enrolled.
    #[error(
        "already enrolled as {agent_id} (state dir {dir}); pass --force to replace this identity"
    )]
    AlreadyEnrolled {
        /// Existing id.
        agent_id: String,
        /// State dir.
        dir: String,
    },
}

impl From<FrameError> for UplinkError {
    fn from(e: FrameError) -> Self {
        Self::Protocol(e.to_string())
    }
}
