//! The daemon's state directory: the endpoint identity and uplink progress (file names in
//! [`crate::layout`]).

use std::path::{Path, PathBuf};

use agent_bom_protocol::Inventory;
use agent_bom_protocol::secure_file::write_private;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::layout::{
    ACKED_INVENTORY_FILE, AGENT_FILE, CA_FILE, CERT_FILE, COMMAND_STATE_FILES, KEY_FILE,
    NEXT_CERT_FILE, NEXT_KEY_FILE, UPLINK_FILE,
};

/// Errors reading or writing agent state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A state file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A state file is not valid.
    #[error("{path} is corrupt: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// The agent has not enrolled yet.
    #[error(
        "not enrolled: {dir} has no device identity; run `agent-bom-agent enroll --collector HOST:PORT --token TOKEN --ca-pin PIN` first"
    )]
    NotEnrolled {
        /// The state directory.
        dir: PathBuf,
    },
}

/// Identity metadata written at enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Device id assigned by the collector.
    pub agent_id: String,
    /// Collector address (`HOST:PORT`).
    pub collector: String,
    /// Unix milliseconds.
    pub enrolled_at_ms: i64,
    /// Hex SHA-256 of the CA certificate.
    pub ca_pin: String,
}

/// Uplink progress, updated after every acknowledged upload and connection change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkState {
    /// Sequence the next upload gets.
    pub next_seq: u64,
    /// Sequence of the last acknowledged upload.
    #[serde(default)]
    pub last_ack_seq: Option<u64>,
    /// Unix milliseconds of the last acknowledgement.
    #[serde(default)]
    pub last_ack_at_ms: Option<i64>,
    /// Content hash of the last acknowledged inventory (to skip unchanged uploads).
    #[serde(default)]
    pub last_inventory_hash: Option<String>,
    /// An upload sent but not yet acknowledged: `(seq, content hash)`. After a crash the same
    /// content is re-sent under the same sequence (so the collector can dedupe it), while changed
    /// content gets a fresh sequence (so it is never mistaken for the old one).
    #[serde(default)]
    pub pending: Option<(u64, String)>,
    /// Inventory uploads acknowledged as deltas.
    #[serde(default)]
    pub deltas_acked: u64,
    /// Inventory uploads acknowledged as full snapshots.
    #[serde(default)]
    pub snapshots_acked: u64,
    /// Deltas the collector refused with `snapshot_required` (each followed by a snapshot).
    #[serde(default)]
    pub snapshots_required: u64,
    /// `connected`, `connecting`, `backoff` or `refused`.
    #[serde(default)]
    pub connection: String,
    /// Transport in use (`quic`).
    #[serde(default)]
    pub transport: Option<String>,
    /// Last error, if the last attempt failed.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Unix milliseconds of the last state change.
    #[serde(default)]
    pub updated_at_ms: i64,
}

/// The inventory the collector last acknowledged, kept as the base of the next delta.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckedInventory {
    /// Sequence it was acknowledged under.
    pub seq: u64,
    /// Its [`Inventory::content_hash`], as the collector recorded it.
    pub hash: String,
    /// The inventory exactly as sent.
    pub inventory: Inventory,
}

/// The agent's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

/// True when the certificate (PEM) was issued for the key pair (PEM).
fn key_matches_certificate(key_pem: &str, cert_pem: &str) -> bool {
    use rustls::pki_types::pem::PemObject;
    let Ok(key) = rcgen::KeyPair::from_pem(key_pem) else {
        return false;
    };
    let Ok(der) = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()) else {
        return false;
    };
    use rcgen::PublicKeyData;
    x509_parser::parse_x509_certificate(&der).is_ok_and(|(_, cert)| {
        cert.public_key().subject_public_key.data.as_ref() == key.der_bytes()
    })
}

impl StateDir {
    /// Open (and create, mode 0700) a state directory.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
            action: "creating",
            path: dir.to_path_buf(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// True when a device identity is present.
    pub fn is_enrolled(&self) -> bool {
        self.dir.join(AGENT_FILE).exists() && self.dir.join(CERT_FILE).exists()
    }

    /// Store a new identity (key first, record last, so a crash never leaves a record without
    /// its key).
    pub fn save_identity(
        &self,
        record: &AgentRecord,
        key_pem: &str,
        cert_pem: &str,
        ca_pem: &str,
    ) -> Result<(), StateError> {
        self.write(KEY_FILE, key_pem.as_bytes())?;
        self.write(CERT_FILE, cert_pem.as_bytes())?;
        self.write(CA_FILE, ca_pem.as_bytes())?;
        self.save_uplink(&UplinkState::default())?;
        // A new identity is a new device to the collector: the old base means nothing there,
        // and what the old identity's control plane (or tenant) commanded does not carry over.
        self.forget_acked_inventory()?;
        for name in COMMAND_STATE_FILES {
            match std::fs::remove_file(self.dir.join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StateError::Io {
                        action: "removing",
                        path: self.dir.join(name),
                        source,
                    });
                }
            }
        }
        self.write_json(AGENT_FILE, record)
    }

    /// The identity record, or [`StateError::NotEnrolled`].
    pub fn record(&self) -> Result<AgentRecord, StateError> {
        if !self.is_enrolled() {
            return Err(StateError::NotEnrolled {
                dir: self.dir.clone(),
            });
        }
        self.read_json(AGENT_FILE)
    }

    /// Point an existing identity at another collector address (same control plane).
    pub fn set_collector(&self, collector: &str) -> Result<(), StateError> {
        let mut record = self.record()?;
        if record.collector != collector {
            record.collector = collector.to_string();
            self.write_json(AGENT_FILE, &record)?;
        }
        Ok(())
    }

    /// Install a renewed key and certificate. Both are staged beside the current ones
    /// (certificate first), then moved in place key first; whatever a crash leaves half done
    /// is completed or discarded on the next load, never leaving a key and certificate that
    /// do not belong together.
    pub fn replace_certificate(&self, key_pem: &str, cert_pem: &str) -> Result<(), StateError> {
        self.write(NEXT_CERT_FILE, cert_pem.as_bytes())?;
        self.write(NEXT_KEY_FILE, key_pem.as_bytes())?;
        self.complete_renewal()
    }

    /// Move a staged key and certificate in place (key, then certificate). A staged
    /// certificate alone is either the second half of an interrupted move (the key in place
    /// already matches it: move it too) or left over from a crash before its key was staged
    /// (discard it); a staged key alone cannot be used and is discarded.
    fn complete_renewal(&self) -> Result<(), StateError> {
        let next_key = self.dir.join(NEXT_KEY_FILE);
        let next_cert = self.dir.join(NEXT_CERT_FILE);
        let install = |from: &Path, to: &str| {
            std::fs::rename(from, self.dir.join(to)).map_err(|source| StateError::Io {
                action: "installing",
                path: from.to_path_buf(),
                source,
            })
        };
        let discard = |path: &Path| {
            std::fs::remove_file(path).map_err(|source| StateError::Io {
                action: "removing",
                path: path.to_path_buf(),
                source,
            })
        };
        match (next_key.exists(), next_cert.exists()) {
            (true, true) => {
                install(&next_key, KEY_FILE)?;
                install(&next_cert, CERT_FILE)
            }
            (false, true) => {
                let key = self.read(KEY_FILE)?;
                let cert = self.read(NEXT_CERT_FILE)?;
                if key_matches_certificate(&key, &cert) {
                    install(&next_cert, CERT_FILE)
                } else {
                    discard(&next_cert)
                }
            }
            (true, false) => discard(&next_key),
            (false, false) => Ok(()),
        }
    }

    /// PEM texts of (key, certificate, CA).
    pub fn identity_pems(&self) -> Result<(String, String, String), StateError> {
        self.complete_renewal()?;
        Ok((
            self.read(KEY_FILE)?,
            self.read(CERT_FILE)?,
            self.read(CA_FILE)?,
        ))
    }

    /// Expiry of the device certificate, Unix seconds (`None` if it cannot be read).
    pub fn certificate_not_after(&self) -> Option<i64> {
        use rustls::pki_types::pem::PemObject;
        let (_, cert_pem, _) = self.identity_pems().ok()?;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).ok()?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
        Some(cert.validity().not_after.timestamp())
    }

    /// Uplink progress (default when absent).
    pub fn uplink(&self) -> Result<UplinkState, StateError> {
        if !self.dir.join(UPLINK_FILE).exists() {
            return Ok(UplinkState::default());
        }
        self.read_json(UPLINK_FILE)
    }

    /// Persist uplink progress atomically.
    pub fn save_uplink(&self, state: &UplinkState) -> Result<(), StateError> {
        self.write_json(UPLINK_FILE, state)
    }

    /// The last acknowledged inventory; `None` when there is none, or when the file does not
    /// match its own hash (then the next upload is a full snapshot, which rewrites it).
    pub fn acked_inventory(&self) -> Result<Option<AckedInventory>, StateError> {
        if !self.dir.join(ACKED_INVENTORY_FILE).exists() {
            return Ok(None);
        }
        let acked: AckedInventory = self.read_json(ACKED_INVENTORY_FILE)?;
        Ok((acked.inventory.content_hash() == acked.hash).then_some(acked))
    }

    /// Record the inventory the collector just acknowledged (mode 0600, atomically). Compact
    /// JSON: it is rewritten on every acknowledged upload.
    pub fn save_acked_inventory(&self, acked: &AckedInventory) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(acked).map_err(|e| StateError::Corrupt {
            path: self.dir.join(ACKED_INVENTORY_FILE),
            message: e.to_string(),
        })?;
        self.write(ACKED_INVENTORY_FILE, &bytes)
    }

    /// Drop the delta base, so the next upload is a full snapshot.
    pub fn forget_acked_inventory(&self) -> Result<(), StateError> {
        let path = self.dir.join(ACKED_INVENTORY_FILE);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StateError::Io {
                action: "removing",
                path,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StateError> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| StateError::Corrupt {
            path: self.dir.join(name),
            message: e.to_string(),
        })?;
        self.write(name, &bytes)
    }

    fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<T, StateError> {
        let text = self.read(name)?;
        serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
            path: self.dir.join(name),
            message: e.to_string(),
        })
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        let path = self.dir.join(name);
        write_private(&path, bytes).map_err(|source| StateError::Io {
            action: "writing",
            path,
            source,
        })
    }

    fn read(&self, name: &str) -> Result<String, StateError> {
        let path = self.dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| StateError::Io {
            action: "reading",
            path,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("s")).unwrap();
        assert!(matches!(
            state.record(),
            Err(StateError::NotEnrolled { .. })
        ));
        let record = AgentRecord {
            agent_id: "a".into(),
            collector: "127.0.0.1:4433".into(),
            enrolled_at_ms: 1,
            ca_pin: "00".repeat(32),
        };
        state.save_identity(&record, "KEY", "CERT", "CA").unwrap();
        assert_eq!(state.record().unwrap(), record);
        #[cfg(unix)]
        for f in [AGENT_FILE, KEY_FILE, CERT_FILE, CA_FILE, UPLINK_FILE] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(state.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        std::fs::write(state.path().join(UPLINK_FILE), "{not json").unwrap();
        assert!(matches!(state.uplink(), Err(StateError::Corrupt { .. })));
    }

    /// A key pair and a certificate for it (PEM).
    fn key_and_cert() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::default()
            .self_signed(&key)
            .unwrap();
        (key.serialize_pem(), cert.pem())
    }

    #[test]
    fn an_interrupted_renewal_never_mismatches_key_and_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let (old_key, old_cert) = key_and_cert();
        let record = AgentRecord {
            agent_id: "a".into(),
            collector: "127.0.0.1:4433".into(),
            enrolled_at_ms: 1,
            ca_pin: "00".repeat(32),
        };
        state
            .save_identity(&record, &old_key, &old_cert, "CA")
            .unwrap();
        let (new_key, new_cert) = key_and_cert();
        let path = |n: &str| state.path().join(n);

        // Crash after staging the certificate only: the old identity stays.
        std::fs::write(path(NEXT_CERT_FILE), &new_cert).unwrap();
        let (k, c, _) = state.identity_pems().unwrap();
        assert_eq!(
            (k.as_str(), c.as_str()),
            (old_key.as_str(), old_cert.as_str())
        );
        assert!(!path(NEXT_CERT_FILE).exists());

        // Crash after moving the key: the staged certificate follows it.
        std::fs::write(path(KEY_FILE), &new_key).unwrap();
        std::fs::write(path(NEXT_CERT_FILE), &new_cert).unwrap();
        let (k, c, _) = state.identity_pems().unwrap();
        assert_eq!(
            (k.as_str(), c.as_str()),
            (new_key.as_str(), new_cert.as_str())
        );
        assert!(key_matches_certificate(&k, &c));

        // A full staging is completed; a lone staged key is discarded.
        let (k3, c3) = key_and_cert();
        state.replace_certificate(&k3, &c3).unwrap();
        assert_eq!(state.identity_pems().unwrap().0, k3);
        std::fs::write(path(NEXT_KEY_FILE), &new_key).unwrap();
        assert_eq!(state.identity_pems().unwrap().0, k3);
        assert!(!path(NEXT_KEY_FILE).exists());
    }

    #[test]
    fn a_new_identity_drops_what_the_old_one_was_commanded() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        for f in COMMAND_STATE_FILES {
            std::fs::write(state.path().join(f), "{}").unwrap();
        }
        let record = AgentRecord {
            agent_id: "b".into(),
            collector: "127.0.0.1:4433".into(),
            enrolled_at_ms: 1,
            ca_pin: "00".repeat(32),
        };
        state.save_identity(&record, "KEY", "CERT", "CA").unwrap();
        for f in COMMAND_STATE_FILES {
            assert!(!state.path().join(f).exists(), "{f}");
        }
    }

    #[test]
    fn acked_inventory_is_private_and_checked_against_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        assert_eq!(state.acked_inventory().unwrap(), None);
        let mut inventory = Inventory::default();
        inventory.host.hostname = "h".into();
        let acked = AckedInventory {
            seq: 3,
            hash: inventory.content_hash(),
            inventory,
        };
        state.save_acked_inventory(&acked).unwrap();
        assert_eq!(state.acked_inventory().unwrap(), Some(acked.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(state.path().join(ACKED_INVENTORY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Content that no longer matches its hash is no base.
        let mut tampered = acked;
        tampered.inventory.host.hostname = "other".into();
        state.save_acked_inventory(&tampered).unwrap();
        assert_eq!(state.acked_inventory().unwrap(), None);
        state.forget_acked_inventory().unwrap();
        state.forget_acked_inventory().unwrap();
        assert!(!state.path().join(ACKED_INVENTORY_FILE).exists());
    }
}
