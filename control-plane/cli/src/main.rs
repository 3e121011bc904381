//! `agent-bom`: the server binary (serve, collector, up, admin). Parses the command line and calls
//! the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use agent_bom_collector::CollectorConfig;
use agent_bom_control_plane::api::Permission;
use agent_bom_control_plane::bootstrap::{self, BOOTSTRAP_ADMIN_KEY_ENV};
use agent_bom_control_plane::oidc::OidcConfig;
use agent_bom_control_plane::server::{self, Listeners, ServeConfig, Server};
use agent_bom_control_plane::store::{NewApiKey, Role, Store};
mod up;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use up::UpConfig;

#[derive(Parser)]
#[command(
    name = "agent-bom",
    version,
    about = "agent-bom: self-hosted control plane for AI and MCP security (fleet system)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct DataArgs {
    /// Data directory: SQLite database, CA, bootstrap files.
    #[arg(long, env = "AGENT_BOM_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl DataArgs {
    fn dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Control plane (API) with the collector embedded.
    Serve {
        #[command(flatten)]
        data: DataArgs,
        /// Postgres URL (postgres://...); SQLite in the data dir when absent.
        #[arg(long, env = "AGENT_BOM_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// API listen address.
        #[arg(long, env = "AGENT_BOM_API_LISTEN", default_value = server::DEFAULT_API_LISTEN)]
        api_listen: SocketAddr,
        /// Collector listen address (UDP).
        #[arg(long, env = "AGENT_BOM_COLLECTOR_LISTEN", default_value = server::DEFAULT_COLLECTOR_LISTEN)]
        collector_listen: SocketAddr,
        /// An endpoint not seen for this long is `stale` (e.g. 7d, 36h, 90m).
        #[arg(long, env = "AGENT_BOM_STALE_AFTER", default_value = server::DEFAULT_STALE_AFTER, value_parser = server::parse_duration)]
        stale_after: Duration,
        #[command(flatten)]
        oidc: OidcArgs,
        #[command(flatten)]
        limits: CollectorLimits,
    },
    /// A collector alone on a shared Postgres store (cluster mode).
    Collector {
        /// Postgres URL.
        #[arg(long, env = "AGENT_BOM_DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// Listen address (UDP).
        #[arg(long, env = "AGENT_BOM_COLLECTOR_LISTEN", default_value = server::DEFAULT_COLLECTOR_LISTEN)]
        listen: SocketAddr,
        /// Directory holding the control plane's ca.crt and ca.key.
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        limits: CollectorLimits,
    },
    /// Local demo: serve plus an agent for this machine.
    Up {
        #[command(flatten)]
        data: DataArgs,
        /// API listen address.
        #[arg(long, default_value = server::DEFAULT_API_LISTEN)]
        api_listen: SocketAddr,
        /// Collector listen address (UDP).
        #[arg(long, default_value = server::DEFAULT_COLLECTOR_LISTEN)]
        collector_listen: SocketAddr,
        /// Home directory the local agent scans.
        #[arg(long)]
        home: Option<PathBuf>,
        /// Seconds between the local agent's rescans.
        #[arg(long, default_value_t = 10)]
        rescan_interval: u64,
    },
    /// Work on the store directly.
    Admin {
        #[command(flatten)]
        data: DataArgs,
        /// Postgres URL; SQLite in the data dir when absent.
        #[arg(long, env = "AGENT_BOM_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        #[command(subcommand)]
        command: AdminCommand,
    },
}

/// The collector's admission budgets: beyond them agents are told to come back later.
#[derive(Args, Clone)]
struct CollectorLimits {
    /// Agent connections admitted at once (beyond it new ones are refused and agents back off).
    #[arg(long, env = "AGENT_BOM_COLLECTOR_MAX_CONNECTIONS", default_value_t = agent_bom_collector::server::DEFAULT_MAX_CONNECTIONS, value_parser = at_least_one())]
    max_connections: usize,
    /// TLS handshakes in progress at once (a reconnect storm beyond it is spread by refusals).
    #[arg(long, env = "AGENT_BOM_COLLECTOR_MAX_HANDSHAKES", default_value_t = agent_bom_collector::server::DEFAULT_MAX_HANDSHAKES, value_parser = at_least_one())]
    max_handshakes: usize,
    /// Requests doing database work at once (uploads, enrollments, hellos).
    #[arg(long, env = "AGENT_BOM_COLLECTOR_MAX_DB_IN_FLIGHT", default_value_t = agent_bom_collector::server::DEFAULT_MAX_DB_IN_FLIGHT, value_parser = at_least_one())]
    max_db_in_flight: usize,
    /// Milliseconds a request may wait for its turn at the database before it is answered
    /// `unavailable` with a retry-after.
    #[arg(long, env = "AGENT_BOM_COLLECTOR_DB_WAIT_MS", default_value_t = duration_ms(agent_bom_collector::server::DEFAULT_DB_WAIT))]
    db_wait_ms: u64,
    /// Base retry-after of overload answers in milliseconds (each answer picks from base to
    /// twice the base).
    #[arg(long, env = "AGENT_BOM_COLLECTOR_OVERLOAD_RETRY_MS", default_value_t = duration_ms(agent_bom_collector::server::DEFAULT_OVERLOAD_RETRY_AFTER), value_parser = clap::value_parser!(u64).range(1..))]
    overload_retry_ms: u64,
}

fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl CollectorLimits {
    /// The collector configuration with these budgets, everything else at its default.
    fn config(&self) -> CollectorConfig {
        CollectorConfig {
            max_connections: self.max_connections,
            max_handshakes: self.max_handshakes,
            max_db_in_flight: self.max_db_in_flight,
            db_wait: Duration::from_millis(self.db_wait_ms),
            overload_retry_after: Duration::from_millis(self.overload_retry_ms),
            ..CollectorConfig::default()
        }
    }
}

/// Operator login with OIDC bearer tokens (all three of issuer, audience and JWKS URL).
#[derive(Args, Clone)]
struct OidcArgs {
    /// Expected token issuer (`iss`).
    #[arg(long, env = "AGENT_BOM_OIDC_ISSUER", requires_all = ["oidc_audience", "oidc_jwks_url"])]
    oidc_issuer: Option<String>,
    /// Expected audience (`aud`).
    #[arg(long, env = "AGENT_BOM_OIDC_AUDIENCE")]
    oidc_audience: Option<String>,
    /// URL of the issuer's JWKS.
    #[arg(long, env = "AGENT_BOM_OIDC_JWKS_URL")]
    oidc_jwks_url: Option<String>,
    /// Claim holding the role.
    #[arg(long, env = "AGENT_BOM_OIDC_ROLE_CLAIM", default_value = agent_bom_control_plane::oidc::DEFAULT_ROLE_CLAIM)]
    oidc_role_claim: String,
    /// Claim holding the tenant name.
    #[arg(long, env = "AGENT_BOM_OIDC_TENANT_CLAIM", default_value = agent_bom_control_plane::oidc::DEFAULT_TENANT_CLAIM)]
    oidc_tenant_claim: String,
}

impl OidcArgs {
    fn config(&self) -> Option<OidcConfig> {
        let (Some(i), Some(a), Some(j)) =
            (&self.oidc_issuer, &self.oidc_audience, &self.oidc_jwks_url)
        else {
            return None;
        };
        let mut c = OidcConfig::new(i, a, j);
        c.role_claim = self.oidc_role_claim.clone();
        c.tenant_claim = self.oidc_tenant_claim.clone();
        Some(c)
    }
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// API keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Enrollment tokens.
    EnrollToken {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Enrolled devices.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Revoke a device: its live connection is closed within seconds and it cannot reconnect.
    Revoke {
        #[arg(long)]
        tenant: String,
        /// Device (endpoint) id.
        id: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify a tenant's audit hash chain; exits non-zero when it was tampered with.
    Verify {
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant.
    Create { name: String },
    /// List tenants.
    List,
    /// Show or set a tenant's quotas and rate limits (unset values keep the default).
    Quota {
        name: String,
        #[arg(long)]
        max_endpoints: Option<i64>,
        #[arg(long)]
        max_api_keys: Option<i64>,
        #[arg(long)]
        rate_per_key_per_min: Option<i64>,
        #[arg(long)]
        rate_per_tenant_per_min: Option<i64>,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create an API key and print it (shown once).
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        role: Role,
        #[arg(long, default_value = "api key")]
        name: String,
        /// Days until the key expires.
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// Limit the key to these permissions (repeatable), e.g. fleet:read.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Who the key belongs to.
        #[arg(long)]
        owner: Option<String>,
        /// Allow tenant management (create/list tenants, quotas).
        #[arg(long)]
        super_admin: bool,
    },
    /// Rotate a key: print the replacement; the old key works for the overlap.
    Rotate {
        #[arg(long)]
        tenant: String,
        key: String,
        /// Hours the old key keeps working.
        #[arg(long, default_value_t = 24)]
        overlap_hours: u32,
    },
    /// List a tenant's keys (metadata only).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a key by id or prefix.
    Revoke {
        #[arg(long)]
        tenant: String,
        key: String,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an enrollment token and print it (shown once).
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value = "enrollment")]
        name: String,
        /// Maximum number of devices that may enroll with it.
        #[arg(long)]
        max_uses: Option<u32>,
        /// Hours until it expires.
        #[arg(long)]
        expires_in_hours: Option<u32>,
    },
    /// List a tenant's tokens (metadata only).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a token by id or prefix.
    Revoke {
        #[arg(long)]
        tenant: String,
        token: String,
    },
}

fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return xdg.join("agent-bom");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/agent-bom"),
        None => PathBuf::from("agent-bom-data"),
    }
}

fn main() -> std::process::ExitCode {
    agent_bom_control_plane::install_crypto_provider();
    let filter = tracing_subscriber::EnvFilter::try_from_env("AGENT_BOM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            if let Ok(mut term) = signal(SignalKind::terminate()) {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                t.cancel();
                return;
            }
        }
        let _ = tokio::signal::ctrl_c().await;
        t.cancel();
    });
    token
}

async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Serve {
            data,
            database_url,
            api_listen,
            collector_listen,
            stale_after,
            oidc,
            limits,
        } => {
            let data_dir = data.dir();
            let mut server = Server::open(ServeConfig {
                data_dir: data_dir.clone(),
                database_url,
                collector: limits.config(),
                oidc: oidc.config(),
            })
            .await?;
            server.store.set_stale_after(stale_after);
            let listeners = Listeners::bind(api_listen, collector_listen).await?;
            if let Some(b) = &server.bootstrap {
                println!("First start: created tenant `default`.");
                println!("  admin API key:     {}", b.admin_key);
                println!("  enrollment token:  {}", b.enrollment_token);
                println!("  CA pin:            {}", server.ca.pin());
                println!(
                    "These are shown once; copies (mode 0600) are in {}: {}, {}, {}.",
                    data_dir.display(),
                    bootstrap::ADMIN_KEY_FILE,
                    bootstrap::ENROLLMENT_TOKEN_FILE,
                    bootstrap::CA_PIN_FILE
                );
                if std::env::var_os(BOOTSTRAP_ADMIN_KEY_ENV).is_some() {
                    println!("(the admin key was taken from {BOOTSTRAP_ADMIN_KEY_ENV})");
                }
            }
            println!(
                "agent-bom serving: API http://{}  collector {} (QUIC, TLS/TCP fallback)",
                listeners.api.local_addr()?,
                listeners.collector.udp.local_addr()?
            );
            server.run(listeners, shutdown_on_signal()).await?;
        }
        Command::Collector {
            database_url,
            listen,
            data,
            limits,
        } => {
            let sockets = server::bind_collector(listen).await?;
            server::run_collector(
                &database_url,
                &data.dir(),
                sockets,
                limits.config(),
                shutdown_on_signal(),
            )
            .await?;
        }
        Command::Up {
            data,
            api_listen,
            collector_listen,
            home,
            rescan_interval,
        } => {
            up::run(
                UpConfig {
                    data_dir: data.dir(),
                    api_listen,
                    collector_listen,
                    home,
                    rescan_interval: Duration::from_secs(rescan_interval.max(1)),
                },
                shutdown_on_signal(),
            )
            .await?;
        }
        Command::Admin {
            data,
            database_url,
            command,
        } => {
            let dir = data.dir();
            server::prepare_data_dir(&dir)?;
            let store = server::open_store(&dir, database_url.as_deref()).await?;
            admin(&store, command).await?;
            store.close().await;
        }
    }
    Ok(())
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn admin(store: &Store, command: AdminCommand) -> Result<()> {
    let now = agent_bom_control_plane::store::now_ms();
    match command {
        AdminCommand::Tenant { command } => match command {
            TenantCommand::Create { name } => {
                let t = store.create_tenant(&name).await?;
                store
                    .audit(
                        &t.id,
                        "cli",
                        "tenant.create",
                        &t.id,
                        serde_json::json!({"name": t.name}),
                    )
                    .await?;
                println!("created tenant {} ({})", t.name, t.id);
            }
            TenantCommand::List => print_json(&store.list_tenants().await?)?,
            TenantCommand::Quota {
                name,
                max_endpoints,
                max_api_keys,
                rate_per_key_per_min,
                rate_per_tenant_per_min,
            } => {
                let t = store.tenant_by_name(&name).await?;
                let mut q = store.tenant_quotas(&t.id).await?;
                let changed = max_endpoints.is_some()
                    || max_api_keys.is_some()
                    || rate_per_key_per_min.is_some()
                    || rate_per_tenant_per_min.is_some();
                q.max_endpoints = max_endpoints.or(q.max_endpoints);
                q.max_api_keys = max_api_keys.or(q.max_api_keys);
                q.rate_per_key_per_min = rate_per_key_per_min.or(q.rate_per_key_per_min);
                q.rate_per_tenant_per_min = rate_per_tenant_per_min.or(q.rate_per_tenant_per_min);
                if changed {
                    store.set_tenant_quotas(&t.id, &q).await?;
                    store
                        .audit(
                            &t.id,
                            "cli",
                            "tenant.quotas",
                            &t.id,
                            serde_json::to_value(&q)?,
                        )
                        .await?;
                }
                print_json(&q)?;
            }
        },
        AdminCommand::Key { command } => match command {
            KeyCommand::Create {
                tenant,
                role,
                name,
                expires_in_days,
                scopes,
                owner,
                super_admin,
            } => {
                let t = store.tenant_by_name(&tenant).await?;
                for s in &scopes {
                    if Permission::parse(s).is_none() {
                        anyhow::bail!("unknown scope {s:?}");
                    }
                }
                let new = NewApiKey {
                    name,
                    role,
                    scopes,
                    owner,
                    expires_at: expires_in_days.map(|d| now + i64::from(d) * 86_400_000),
                    super_admin,
                };
                let (k, key) = store.create_api_key_with(&t.id, &new, None).await?;
                store
                    .audit(
                        &t.id,
                        "cli",
                        "api_key.create",
                        &k.id,
                        serde_json::json!({"prefix": k.prefix, "role": k.role}),
                    )
                    .await?;
                println!("{key}");
            }
            KeyCommand::Rotate {
                tenant,
                key,
                overlap_hours,
            } => {
                let t = store.tenant_by_name(&tenant).await?;
                let (k, plaintext) = store
                    .rotate_api_key(&t.id, &key, i64::from(overlap_hours) * 3_600_000)
                    .await?;
                store
                    .audit(
                        &t.id,
                        "cli",
                        "api_key.rotate",
                        &key,
                        serde_json::json!({"new_prefix": k.prefix}),
                    )
                    .await?;
                println!("{plaintext}");
            }
            KeyCommand::List { tenant } => {
                let t = store.tenant_by_name(&tenant).await?;
                print_json(&store.list_api_keys(&t.id).await?)?;
            }
            KeyCommand::Revoke { tenant, key } => {
                let t = store.tenant_by_name(&tenant).await?;
                store.revoke_api_key(&t.id, &key).await?;
                store
                    .audit(&t.id, "cli", "api_key.revoke", &key, serde_json::json!({}))
                    .await?;
                println!("revoked");
            }
        },
        AdminCommand::Device { command } => match command {
            DeviceCommand::Revoke { tenant, id } => {
                let t = store.tenant_by_name(&tenant).await?;
                store.revoke_device(&t.id, &id).await?;
                println!("revoked");
            }
        },
        AdminCommand::Audit { command } => match command {
            AuditCommand::Verify { tenant } => {
                let t = store.tenant_by_name(&tenant).await?;
                let v = store.verify_audit(&t.id).await?;
                print_json(&v)?;
                if !v.ok {
                    anyhow::bail!(
                        "audit chain of tenant {tenant} is broken at entry {}: {}",
                        v.first_bad_seq.unwrap_or_default(),
                        v.problem.unwrap_or_default()
                    );
                }
            }
        },
        AdminCommand::EnrollToken { command } => match command {
            TokenCommand::Create {
                tenant,
                name,
                max_uses,
                expires_in_hours,
            } => {
                let t = store.tenant_by_name(&tenant).await?;
                let expires = expires_in_hours.map(|h| now + i64::from(h) * 3_600_000);
                let (created, token) = store
                    .create_enrollment_token(&t.id, &name, expires, max_uses.map(i64::from))
                    .await?;
                store
                    .audit(
                        &t.id,
                        "cli",
                        "enroll_token.create",
                        &created.id,
                        serde_json::json!({"prefix": created.prefix, "max_uses": max_uses}),
                    )
                    .await?;
                println!("{token}");
            }
            TokenCommand::List { tenant } => {
                let t = store.tenant_by_name(&tenant).await?;
                print_json(&store.list_enrollment_tokens(&t.id).await?)?;
            }
            TokenCommand::Revoke { tenant, token } => {
                let t = store.tenant_by_name(&tenant).await?;
                store.revoke_enrollment_token(&t.id, &token).await?;
                store
                    .audit(
                        &t.id,
                        "cli",
                        "enroll_token.revoke",
                        &token,
                        serde_json::json!({}),
                    )
                    .await?;
                println!("revoked");
            }
        },
    }
    Ok(())
}
