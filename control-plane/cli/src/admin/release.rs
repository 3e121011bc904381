//! `agent-bom admin release keygen|sign|publish|list|promote` (agent builds) and
//! `agent-bom admin rollout create|list|show|pause|resume|advance|cancel` (staged rollouts).
//!
//! The release key signs builds; agents pin its public half. Keep the private key off the
//! control plane: `keygen` and `sign` work on any machine (a release workstation, CI with the
//! key in its secret store), and `publish --signature` stores a build signed elsewhere.

use std::path::{Path, PathBuf};

use agent_bom_control_plane::server::parse_duration;
use agent_bom_control_plane::service::Actor;
use agent_bom_control_plane::service::releases::{self, Control, Publish, RolloutRequest};
use agent_bom_control_plane::store::Store;
use agent_bom_control_plane::store::releases::Ring;
use agent_bom_protocol::release::ReleaseManifest;
use anyhow::{Context, Result, bail};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum ReleaseCommand {
    /// Make an ed25519 release key: the private key (PKCS#8, mode 0600) in FILE, its public
    /// half (hex) in FILE.pub and on standard output. Agents pin the public half.
    Keygen {
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a build with the release key; prints the hex signature for `publish --signature`.
    Sign {
        #[command(flatten)]
        build: BuildArgs,
        /// The release key (PKCS#8 file from `keygen`).
        #[arg(long)]
        signing_key: PathBuf,
    },
    /// Store a signed build for agents: served at /install/releases/ID and offered by rollouts.
    Publish {
        #[command(flatten)]
        build: BuildArgs,
        /// Channel (stable, beta, ...).
        #[arg(long, default_value = "stable")]
        channel: String,
        /// Sign here with this release key (PKCS#8 file from `keygen`).
        #[arg(long, conflicts_with = "signature")]
        signing_key: Option<PathBuf>,
        /// A hex signature made elsewhere (`release sign`); needs --public-key.
        #[arg(long, requires = "public_keys")]
        signature: Option<String>,
        /// Hex public release key that must verify the signature; repeatable.
        #[arg(long = "public-key")]
        public_keys: Vec<String>,
        /// Skip running the build's `--version` (a build for this machine is checked by default).
        #[arg(long)]
        no_version_check: bool,
    },
    /// List published builds.
    List,
    /// Move a build to another channel (the signature does not cover the channel).
    Promote {
        /// Release id (`VERSION-OS-ARCH`).
        id: String,
        /// The new channel.
        #[arg(long)]
        channel: String,
    },
}

/// The build and what it is.
#[derive(clap::Args)]
pub(crate) struct BuildArgs {
    /// The agent binary.
    #[arg(long)]
    file: PathBuf,
    /// The version the build reports (`agent-bom-agent --version`).
    #[arg(long)]
    version: String,
    /// linux, macos or windows.
    #[arg(long)]
    os: String,
    /// x86_64 or aarch64.
    #[arg(long)]
    arch: String,
}

impl BuildArgs {
    fn read(&self) -> Result<(Vec<u8>, ReleaseManifest)> {
        let bytes = std::fs::read(&self.file)
            .with_context(|| format!("reading {}", self.file.display()))?;
        let manifest = ReleaseManifest {
            version: self.version.clone(),
            os: self.os.clone(),
            arch: self.arch.clone(),
            sha256: agent_bom_protocol::digest::sha256_hex(&bytes),
            size: bytes.len() as u64,
        };
        manifest.validate()?;
        Ok((bytes, manifest))
    }
}

fn load_key(path: &Path) -> Result<Ed25519KeyPair> {
    let der = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ed25519KeyPair::from_pkcs8(&der)
        .map_err(|e| anyhow::anyhow!("{} is not an ed25519 PKCS#8 key: {e}", path.display()))
}

fn sign(key: &Ed25519KeyPair, manifest: &ReleaseManifest) -> String {
    hex::encode(key.sign(&manifest.signing_message()).as_ref())
}

/// A build for this machine must report the version it is published as: agents refuse a
/// download whose `--version` differs.
fn check_version(build: &BuildArgs) -> Result<()> {
    let here_os = match std::env::consts::OS {
        "macos" => "macos",
        "windows" => "windows",
        _ => "linux",
    };
    if build.os != here_os || build.arch != std::env::consts::ARCH {
        return Ok(());
    }
    let out = std::process::Command::new(&build.file)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", build.file.display()))?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let expected = format!("agent-bom-agent {}", build.version);
    if said != expected {
        bail!(
            "{} reports {said:?}, not {expected:?}: agents would refuse it (use the version it reports, or --no-version-check)",
            build.file.display()
        );
    }
    Ok(())
}

pub(crate) async fn run(store: &Store, command: ReleaseCommand) -> Result<()> {
    match command {
        ReleaseCommand::Keygen { out } => {
            let pk8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
                .map_err(|e| anyhow::anyhow!("cannot generate a key: {e}"))?;
            if out.exists() {
                bail!(
                    "{} exists; refusing to overwrite a release key",
                    out.display()
                );
            }
            agent_bom_protocol::secure_file::write_private(&out, pk8.as_ref())
                .with_context(|| format!("writing {}", out.display()))?;
            let key = load_key(&out)?;
            let public = hex::encode(key.public_key().as_ref());
            let pub_path = PathBuf::from(format!("{}.pub", out.display()));
            agent_bom_protocol::secure_file::write_with_mode(
                &pub_path,
                format!("{public}\n").as_bytes(),
                0o644,
            )?;
            eprintln!(
                "release key in {} (keep it secret); public half in {}",
                out.display(),
                pub_path.display()
            );
            println!("{public}");
        }
        ReleaseCommand::Sign { build, signing_key } => {
            let (_, manifest) = build.read()?;
            println!("{}", sign(&load_key(&signing_key)?, &manifest));
        }
        ReleaseCommand::Publish {
            build,
            channel,
            signing_key,
            signature,
            public_keys,
            no_version_check,
        } => {
            let (bytes, manifest) = build.read()?;
            if !no_version_check {
                check_version(&build)?;
            }
            let (signature, keys) = match (signing_key, signature) {
                (Some(path), None) => {
                    let key = load_key(&path)?;
                    let public = hex::encode(key.public_key().as_ref());
                    let mut keys = public_keys;
                    keys.push(public);
                    (sign(&key, &manifest), keys)
                }
                (None, Some(sig)) => (sig, public_keys),
                _ => bail!("give --signing-key, or --signature with --public-key"),
            };
            let (release, new) = releases::publish(
                store,
                &Actor::cli(),
                Publish {
                    bytes: &bytes,
                    version: &manifest.version,
                    os: &manifest.os,
                    arch: &manifest.arch,
                    channel: &channel,
                    signature: &signature,
                    public_keys: &keys,
                },
            )
            .await?;
            if !new {
                eprintln!("this build was already published; nothing changed");
            }
            super::print_json(&release)?;
        }
        ReleaseCommand::List => super::print_json(&store.list_releases().await?)?,
        ReleaseCommand::Promote { id, channel } => {
            let release = releases::set_channel(store, &Actor::cli(), &id, &channel).await?;
            super::print_json(&release)?;
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub(crate) enum RolloutCommand {
    /// Offer a published version to the tenant's endpoints, ring by ring. `agent-bom serve`
    /// carries it out.
    Create {
        #[arg(long)]
        tenant: String,
        /// The version.
        #[arg(long)]
        version: String,
        /// A ring, in order: `name=canary,tag=ring:canary` or `name=early,percent=10`;
        /// repeatable (default: one ring of every endpoint).
        #[arg(long = "ring")]
        rings: Vec<String>,
        /// How long a ring soaks before the next starts by itself (`0` for manual `advance`).
        #[arg(long, default_value = "24h")]
        soak: String,
        /// Halt when failures reach this percent of finished updates...
        #[arg(long, default_value_t = releases::DEFAULT_MAX_FAILURE_PCT)]
        max_failure_pct: i64,
        /// ... and at least this many.
        #[arg(long, default_value_t = releases::DEFAULT_MIN_FAILURES)]
        min_failures: i64,
        /// How long an updated agent has to reconnect before it rolls back.
        #[arg(long, default_value = "3m")]
        grace: String,
        /// How long an offer stays valid.
        #[arg(long, default_value = "7d")]
        offer_ttl: String,
    },
    /// The tenant's rollouts.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// A rollout with its progress per ring.
    Show {
        #[arg(long)]
        tenant: String,
        /// Rollout id.
        id: String,
    },
    /// Pause (offers not yet delivered are withdrawn).
    Pause {
        #[arg(long)]
        tenant: String,
        /// Rollout id.
        id: String,
    },
    /// Resume a paused or halted rollout.
    Resume {
        #[arg(long)]
        tenant: String,
        /// Rollout id.
        id: String,
    },
    /// Start the next ring now.
    Advance {
        #[arg(long)]
        tenant: String,
        /// Rollout id.
        id: String,
    },
    /// End the rollout.
    Cancel {
        #[arg(long)]
        tenant: String,
        /// Rollout id.
        id: String,
    },
}

/// Parse `name=canary,tag=ring:canary,percent=10`.
fn parse_ring(spec: &str) -> Result<Ring> {
    let mut ring = Ring {
        name: String::new(),
        tag: None,
        percent: 100,
    };
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("name", v)) => ring.name = v.to_string(),
            Some(("tag", v)) => ring.tag = Some(v.to_string()),
            Some(("percent", v)) => {
                ring.percent = v
                    .trim_end_matches('%')
                    .parse()
                    .with_context(|| format!("percent in {spec:?}"))?
            }
            _ => bail!("invalid ring {spec:?}: name=NAME[,tag=TAG][,percent=N]"),
        }
    }
    if ring.name.is_empty() {
        bail!("invalid ring {spec:?}: it needs a name=");
    }
    Ok(ring)
}

fn secs(text: &str) -> Result<i64> {
    if text.trim() == "0" {
        return Ok(0);
    }
    let d = parse_duration(text).map_err(anyhow::Error::msg)?;
    Ok(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

pub(crate) async fn run_rollout(store: &Store, command: RolloutCommand) -> Result<()> {
    let control = |tenant: String, id: String, c: Control| (tenant, id, c);
    let (tenant, id, c) = match command {
        RolloutCommand::Create {
            tenant,
            version,
            rings,
            soak,
            max_failure_pct,
            min_failures,
            grace,
            offer_ttl,
        } => {
            let t = super::tenant(store, &tenant).await?;
            let request = RolloutRequest {
                version,
                rings: rings.iter().map(|r| parse_ring(r)).collect::<Result<_>>()?,
                soak_secs: Some(secs(&soak)?),
                max_failure_pct: Some(max_failure_pct),
                min_failures: Some(min_failures),
                grace_secs: Some(secs(&grace)?),
                offer_ttl_secs: Some(secs(&offer_ttl)?),
            };
            let rollout = releases::create_rollout(store, &Actor::cli(), &t.id, request).await?;
            return super::print_json(&rollout);
        }
        RolloutCommand::List { tenant } => {
            let t = super::tenant(store, &tenant).await?;
            return super::print_json(&store.list_rollouts(&t.id).await?);
        }
        RolloutCommand::Show { tenant, id } => {
            let t = super::tenant(store, &tenant).await?;
            let mut v = serde_json::json!(store.rollout(&t.id, &id).await?);
            v["progress"] = store.rollout_progress(&t.id, &id).await?;
            return super::print_json(&v);
        }
        RolloutCommand::Pause { tenant, id } => control(tenant, id, Control::Pause),
        RolloutCommand::Resume { tenant, id } => control(tenant, id, Control::Resume),
        RolloutCommand::Advance { tenant, id } => control(tenant, id, Control::Advance),
        RolloutCommand::Cancel { tenant, id } => control(tenant, id, Control::Cancel),
    };
    let t = super::tenant(store, &tenant).await?;
    let rollout = releases::control(store, &Actor::cli(), &t.id, &id, c).await?;
    super::print_json(&rollout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_parse() {
        let r = parse_ring("name=canary,tag=ring:canary").unwrap();
        assert_eq!(
            (r.name.as_str(), r.tag.as_deref(), r.percent),
            ("canary", Some("ring:canary"), 100)
        );
        assert_eq!(parse_ring("name=early,percent=10%").unwrap().percent, 10);
        assert!(parse_ring("percent=10").is_err());
        assert!(parse_ring("name=x,colour=red").is_err());
        assert_eq!(secs("0").unwrap(), 0);
        assert_eq!(secs("3m").unwrap(), 180);
    }
}
