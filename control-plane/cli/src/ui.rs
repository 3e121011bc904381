//! `agent-bom ui`: the dashboard alone, in front of a remote API (the UI companion of cluster
//! mode); and the dashboard `serve` and `up` put on the API's own origin.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use agent_bom_ui::{Ui, UiConfig};
use anyhow::{Context, Result};
use clap::Args;
use tokio_util::sync::CancellationToken;

/// Default listen address of the companion.
pub(crate) const DEFAULT_UI_LISTEN: &str = "127.0.0.1:8423";

/// Flags of `ui`.
#[derive(Args)]
pub(crate) struct UiArgs {
    /// Base URL of the agent-bom API (e.g. https://cp.internal); the dashboard uses only its
    /// public /v1 routes.
    #[arg(long, env = "AGENT_BOM_UI_API")]
    api: String,
    /// Listen address.
    #[arg(long, env = "AGENT_BOM_UI_LISTEN", default_value = DEFAULT_UI_LISTEN)]
    listen: SocketAddr,
    /// PEM file with the CA certificate(s) that sign the API's TLS certificate, trusted besides
    /// the system roots (a private CA).
    #[arg(long, env = "AGENT_BOM_UI_API_CA")]
    api_ca: Option<PathBuf>,
    /// Browsers reach the dashboard over HTTPS (a TLS-terminating ingress): the session cookie
    /// is then `Secure` and `__Host-` prefixed. Set it whenever users use https://.
    #[arg(long, env = "AGENT_BOM_UI_SECURE_COOKIES")]
    secure_cookies: bool,
    /// File with the secret (at least 32 random bytes) that seals session cookies; every
    /// replica needs the same file, and sessions survive restarts. One secret per line: the
    /// first seals, all open (rotation). Without it sessions end when this process restarts.
    #[arg(long, env = "AGENT_BOM_UI_SESSION_KEY_FILE")]
    session_key_file: Option<PathBuf>,
    #[command(flatten)]
    sso: SsoArgs,
}

/// Single sign-on for the dashboard (OIDC authorization code with PKCE).
#[derive(Args, Clone)]
pub(crate) struct SsoArgs {
    /// OIDC issuer users sign in with (the API must accept its tokens: its --oidc-issuer, and
    /// --oidc-audience equal to this client id).
    #[arg(
        long = "oidc-issuer",
        env = "AGENT_BOM_UI_OIDC_ISSUER",
        requires = "oidc_client_id"
    )]
    oidc_issuer: Option<String>,
    /// The dashboard's client id at the issuer.
    #[arg(long = "oidc-client-id", env = "AGENT_BOM_UI_OIDC_CLIENT_ID")]
    oidc_client_id: Option<String>,
    /// File holding the client secret, for issuers that require one.
    #[arg(
        long = "oidc-client-secret-file",
        env = "AGENT_BOM_UI_OIDC_CLIENT_SECRET_FILE"
    )]
    oidc_client_secret_file: Option<PathBuf>,
    /// Scopes asked for (openid is always added).
    #[arg(
        long = "oidc-scopes",
        env = "AGENT_BOM_UI_OIDC_SCOPES",
        default_value = "openid profile email"
    )]
    oidc_scopes: String,
}

impl SsoArgs {
    /// The sign-in settings, with `issuer` as a fallback (serve: the API's own issuer).
    pub(crate) fn login(
        &self,
        issuer: Option<&str>,
    ) -> Result<Option<agent_bom_ui::oidc::OidcLogin>> {
        let Some(client_id) = &self.oidc_client_id else {
            return Ok(None);
        };
        let issuer = self
            .oidc_issuer
            .as_deref()
            .or(issuer)
            .context("--oidc-client-id needs an issuer (--oidc-issuer)")?;
        let mut login = agent_bom_ui::oidc::OidcLogin::new(issuer, client_id);
        login.scopes = self.oidc_scopes.clone();
        if let Some(path) = &self.oidc_client_secret_file {
            let secret = std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the client secret file {}", path.display())
            })?;
            login.client_secret = Some(secret.trim().to_string());
        }
        Ok(Some(login))
    }
}

/// `agent-bom ui`: serve the dashboard until `shutdown`.
pub(crate) async fn run(args: UiArgs, shutdown: CancellationToken) -> Result<()> {
    let mut config = UiConfig::new(&args.api);
    if let Some(path) = &args.api_ca {
        config.api_ca_pem = Some(
            std::fs::read(path)
                .with_context(|| format!("cannot read the API CA file {}", path.display()))?,
        );
    }
    config.secure_cookies = args.secure_cookies;
    if args.session_key_file.is_none() {
        eprintln!(
            "warning: no --session-key-file: sessions end when this dashboard restarts, and a second replica would not accept them"
        );
    }
    config.session_key_file = args.session_key_file.clone();
    // Machines install from the API, not from this companion.
    config.public_api_url = Some(args.api.clone());
    config.oidc = args.sso.login(None)?;
    let ui = Ui::new(config)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen for the dashboard on {}", args.listen))?;
    println!(
        "agent-bom dashboard: http://{}/ui/  (API {})",
        listener.local_addr()?,
        args.api
    );
    agent_bom_ui::serve(listener, ui, async move { shutdown.cancelled().await }).await?;
    Ok(())
}

/// The dashboard for an API bound at `api`, reached over loopback when it listens on every
/// address.
pub(crate) fn on_api_origin(
    api: SocketAddr,
    secure_cookies: bool,
    oidc: Option<agent_bom_ui::oidc::OidcLogin>,
    session_key_file: PathBuf,
) -> Result<Ui> {
    let host = match api.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let mut config = UiConfig::new(format!("http://{}", SocketAddr::new(host, api.port())));
    config.secure_cookies = secure_cookies;
    config.oidc = oidc;
    config.session_key_file = Some(session_key_file);
    config.create_session_key = true;
    Ok(Ui::new(config)?)
}
