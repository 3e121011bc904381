//! The control plane's certificate authority, as the collector uses it: issue the collector's
//! own server certificate and sign device certificates from enrollment CSRs.
//!
//! The CA is created once (by `agent-bom serve` on first start) and kept as `ca.crt` and
//! `ca.key` (mode 0600) in the data directory. Agents pin the SHA-256 of `ca.crt`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

/// File name of the CA certificate in a data directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the CA private key in a data directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";

/// Lifetime of the CA certificate.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Lifetime of a collector's server certificate; it is re-issued at every start.
const SERVER_CERT_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);
/// Lifetime of a device certificate.
pub const DEVICE_CERT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// Certificates are valid from slightly in the past to absorb clock skew between machines.
const BACKDATE: Duration = Duration::from_secs(3600);

/// Errors of the certificate authority.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing a CA file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// One of the two CA files exists without the other.
    #[error(
        "incomplete CA in {dir}: found one of {CA_CERT_FILE} / {CA_KEY_FILE} but not both; restore the missing file from backup (deleting both creates a new CA, and every enrolled device must then re-enroll)"
    )]
    Incomplete {
        /// The data directory.
        dir: PathBuf,
    },
    /// Certificate generation, parsing or signing failed.
    #[error("certificate error: {0}")]
    Cert(#[from] rcgen::Error),
    /// The certificate signing request is not acceptable.
    #[error("invalid certificate signing request: {0}")]
    InvalidCsr(String),
}

/// A loaded CA: certificate plus signing key.
pub struct CertificateAuthority {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("pin", &self.pin())
            .finish_non_exhaustive()
    }
}

/// A freshly issued certificate with its key (for the collector's own server identity).
pub struct IssuedIdentity {
    /// Certificate chain: leaf, then the CA.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

impl CertificateAuthority {
    /// Create a new CA in memory.
    pub fn generate(name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("agent-bom CA ({name})"));
        dn.push(DnType::OrganizationName, "agent-bom");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(random_serial());
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        Self::from_pem(&cert_pem, &key.serialize_pem())
    }

    /// Load a CA from PEM text.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        let cert_der = pem_to_der(cert_pem)?;
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            cert_der,
            issuer,
        })
    }

    /// Load the CA from `dir`, or create it there if neither file exists.
    /// Returns the CA and whether it was created now.
    pub fn load_or_create(dir: &Path) -> Result<(Self, bool), PkiError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => {
                let cert = read(&cert_path)?;
                let key = read(&key_path)?;
                Ok((Self::from_pem(&cert, &key)?, false))
            }
            (false, false) => {
                let ca = Self::generate(&dir.display().to_string())?;
                agent_bom_protocol::secure_file::write_private(
                    &key_path,
                    ca.issuer.key().serialize_pem().as_bytes(),
                )
                .map_err(|source| PkiError::Io {
                    action: "writing",
                    path: key_path.clone(),
                    source,
                })?;
                agent_bom_protocol::secure_file::write_private(&cert_path, ca.cert_pem.as_bytes())
                    .map_err(|source| PkiError::Io {
                        action: "writing",
                        path: cert_path.clone(),
                        source,
                    })?;
                Ok((ca, true))
            }
            _ => Err(PkiError::Incomplete {
                dir: dir.to_path_buf(),
            }),
        }
    }

    /// Load the CA from `dir`; both files must exist (a standalone collector never creates one).
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let cert = read(&dir.join(CA_CERT_FILE))?;
        let key = read(&dir.join(CA_KEY_FILE))?;
        Self::from_pem(&cert, &key)
    }

    /// The CA certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Hex SHA-256 of the CA certificate (DER): what agents pin.
    pub fn pin(&self) -> String {
        fingerprint(&self.cert_der)
    }

    /// Sign a command for one device ([`agent_bom_protocol::Command::signing_message`]) with the
    /// CA key, so the agent, which pins this CA, can check that the command (and a policy it
    /// carries, long after delivery) comes from this control plane.
    pub fn sign_command(
        &self,
        agent_id: &str,
        mut command: agent_bom_protocol::Command,
    ) -> Result<agent_bom_protocol::Command, PkiError> {
        use rcgen::SigningKey;
        command.signature = None;
        let signature = self.issuer.key().sign(&command.signing_message(agent_id))?;
        command.signature = Some(hex::encode(signature));
        Ok(command)
    }

    /// Issue a server certificate for a collector, named [`agent_bom_protocol::COLLECTOR_SERVER_NAME`]
    /// plus any extra DNS names or IPs given.
    pub fn issue_collector_identity(
        &self,
        extra_names: &[String],
    ) -> Result<IssuedIdentity, PkiError> {
        let key = KeyPair::generate()?;
        let mut names = vec![agent_bom_protocol::COLLECTOR_SERVER_NAME.to_string()];
        names.extend(extra_names.iter().cloned());
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name = {
            let mut dn = DistinguishedName::new();
            dn.push(
                DnType::CommonName,
                agent_bom_protocol::COLLECTOR_SERVER_NAME,
            );
            dn
        };
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + SERVER_CERT_VALIDITY;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedIdentity {
            chain: vec![cert.der().clone(), self.cert_der.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }

    /// Sign a device certificate for `agent_id` from a CSR. Only the CSR's public key is used
    /// (after its signature is verified); every other field is set here, so a device cannot ask
    /// for a CA bit, a server EKU or another device's name.
    pub fn sign_device_csr(
        &self,
        csr_pem: &str,
        agent_id: &str,
    ) -> Result<DeviceCertificate, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::InvalidCsr(e.to_string()))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, agent_id);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(
            format!("urn:agent-bom:device:{agent_id}")
                .try_into()
                .map_err(|e: rcgen::Error| PkiError::InvalidCsr(e.to_string()))?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + DEVICE_CERT_VALIDITY;
        let cert = params.signed_by(&csr.public_key, &self.issuer)?;
        Ok(DeviceCertificate {
            fingerprint: fingerprint(cert.der()),
            pem: cert.pem(),
            not_after_unix: params.not_after.unix_timestamp(),
        })
    }
}

/// A signed device certificate.
#[derive(Debug, Clone)]
pub struct DeviceCertificate {
    /// PEM encoding.
    pub pem: String,
    /// Hex SHA-256 of the DER, how the store recognises the device on later connections.
    pub fingerprint: String,
    /// Expiry, Unix seconds.
    pub not_after_unix: i64,
}

/// Hex SHA-256 of a DER certificate.
pub use agent_bom_protocol::digest::sha256_hex as fingerprint;

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // aws-lc's CSPRNG; failure here means the OS has no entropy source, which is fatal anyway.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        bytes = OffsetDateTime::now_utc()
            .unix_timestamp_nanos()
            .to_be_bytes();
    }
    bytes[0] &= 0x7f; // positive INTEGER
    SerialNumber::from_slice(&bytes)
}

fn pem_to_der(pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| PkiError::Cert(rcgen::Error::PemError(e.to_string())))
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        action: "reading",
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_is_created_once_with_a_private_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, created) = CertificateAuthority::load_or_create(dir.path()).unwrap();
        assert!(created);
        let (again, created) = CertificateAuthority::load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(ca.pin(), again.pin());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CA_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_file(dir.path().join(CA_KEY_FILE)).unwrap();
        assert!(matches!(
            CertificateAuthority::load_or_create(dir.path()),
            Err(PkiError::Incomplete { .. })
        ));
    }

    #[test]
    fn device_csr_fields_are_ignored_except_the_key() {
        let ca = CertificateAuthority::generate("t").unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        let cert = ca.sign_device_csr(&csr, "dev-1").unwrap();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(cert.pem.as_bytes()).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(!parsed.is_ca());
        let cn = parsed
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap();
        assert_eq!(cn, "dev-1");
        assert!(ca.sign_device_csr("not a csr", "x").is_err());
    }

    use rustls::pki_types::pem::PemObject;
}
