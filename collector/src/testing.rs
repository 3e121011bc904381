//! Test helpers shared by the session's unit tests and the loopback tests of the whole
//! collector: a collector context on the in-memory store, and devices that enroll with a key
//! pair of their own, as agents do.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use agent_bom_protocol::{AgentMessage, CollectorMessage, Inventory, PROTOCOL_VERSION};
use rcgen::KeyPair;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::CollectorConfig;
use crate::pki::CertificateAuthority;
use crate::session::{Context, Opening, Peer, Session};
use crate::store::memory::{MemoryStore, TokenLimits};

/// The tenant every harness token enrolls into.
pub(crate) const TENANT: &str = "tenant-1";

/// The address enrollment requests come from unless a test says otherwise.
pub(crate) const REMOTE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// A collector's shared state on a fresh memory store, with a valid enrollment token.
pub(crate) struct Harness {
    pub(crate) store: Arc<MemoryStore>,
    pub(crate) ca: Arc<CertificateAuthority>,
    pub(crate) context: Arc<Context<MemoryStore>>,
    pub(crate) token: String,
}

impl Harness {
    pub(crate) fn new() -> Self {
        Self::with(MemoryStore::new(), &CollectorConfig::default())
    }

    pub(crate) fn with(store: MemoryStore, config: &CollectorConfig) -> Self {
        let store = Arc::new(store);
        let ca = Arc::new(CertificateAuthority::generate("test").unwrap());
        let token = store.create_enrollment_token(TENANT, TokenLimits::default());
        let context = Arc::new(Context::new(store.clone(), ca.clone(), config));
        Self {
            store,
            ca,
            context,
            token,
        }
    }

    /// The first exchange of a connection without a client certificate.
    pub(crate) async fn open_anonymous(
        &self,
        first: AgentMessage,
        remote: IpAddr,
    ) -> Opening<MemoryStore> {
        self.context.open(Ok(first), Peer::Anonymous(remote)).await
    }

    /// The first exchange of a connection with `device`'s certificate.
    pub(crate) async fn open(
        &self,
        device: &Device,
        first: Result<AgentMessage, CollectorMessage>,
    ) -> Opening<MemoryStore> {
        self.context.open(first, Peer::Device(&device.cert)).await
    }

    /// Enroll a new device with the harness token.
    pub(crate) async fn enroll(&self) -> Device {
        let key = KeyPair::generate().unwrap();
        let enroll = enroll_message(&self.token, &key);
        match self.open_anonymous(enroll, REMOTE).await {
            Opening::Ended {
                reply:
                    CollectorMessage::Enrolled {
                        agent_id,
                        certificate_pem,
                        ..
                    },
                ..
            } => Device::new(agent_id, key, &certificate_pem),
            Opening::Ended { reply, .. } => panic!("enrollment refused: {reply:?}"),
            Opening::Accepted { .. } => panic!("an anonymous peer got a session"),
        }
    }

    /// A session of `device` after a good `hello`.
    pub(crate) async fn connect(&self, device: &Device) -> Session<MemoryStore> {
        match self.open(device, Ok(hello())).await {
            Opening::Accepted { session, .. } => session,
            Opening::Ended { reply, .. } => panic!("hello refused: {reply:?}"),
        }
    }
}

/// An enrolled device: its key pair and the certificate the collector issued for it.
pub(crate) struct Device {
    pub(crate) agent_id: String,
    pub(crate) key: KeyPair,
    pub(crate) cert: CertificateDer<'static>,
}

impl Device {
    pub(crate) fn new(agent_id: String, key: KeyPair, certificate_pem: &str) -> Self {
        Self {
            agent_id,
            key,
            cert: CertificateDer::from_pem_slice(certificate_pem.as_bytes()).unwrap(),
        }
    }

    /// The same device with a renewed certificate (and the new key behind it).
    pub(crate) fn renewed(&self, key: KeyPair, certificate_pem: &str) -> Self {
        Self::new(self.agent_id.clone(), key, certificate_pem)
    }

    /// A TLS client configuration presenting this device's certificate.
    pub(crate) fn client_config(&self, ca: &CertificateAuthority) -> rustls::ClientConfig {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()));
        with_alpn(
            client_builder(ca)
                .with_client_auth_cert(vec![self.cert.clone()], key)
                .unwrap(),
        )
    }
}

/// A TLS client configuration without a client certificate (for enrollment).
pub(crate) fn anonymous_client_config(ca: &CertificateAuthority) -> rustls::ClientConfig {
    anonymous_client_config_with(ca, rustls::crypto::aws_lc_rs::default_provider())
}

/// [`anonymous_client_config`] offering what `provider` offers (its cipher suites, say).
pub(crate) fn anonymous_client_config_with(
    ca: &CertificateAuthority,
    provider: rustls::crypto::CryptoProvider,
) -> rustls::ClientConfig {
    with_alpn(client_builder_with(ca, provider).with_no_client_auth())
}

fn client_builder(
    ca: &CertificateAuthority,
) -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    client_builder_with(ca, rustls::crypto::aws_lc_rs::default_provider())
}

fn client_builder_with(
    ca: &CertificateAuthority,
    provider: rustls::crypto::CryptoProvider,
) -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
}

fn with_alpn(mut config: rustls::ClientConfig) -> rustls::ClientConfig {
    config.alpn_protocols = vec![agent_bom_protocol::ALPN.to_vec()];
    config
}

/// A PEM certificate signing request made with `key`.
pub(crate) fn csr(key: &KeyPair) -> String {
    rcgen::CertificateParams::default()
        .serialize_request(key)
        .unwrap()
        .pem()
        .unwrap()
}

pub(crate) fn enroll_message(token: &str, key: &KeyPair) -> AgentMessage {
    AgentMessage::Enroll {
        protocol_version: PROTOCOL_VERSION,
        token: token.to_string(),
        csr_pem: csr(key),
        hostname: "laptop-1".into(),
        prior_identity: None,
    }
}

pub(crate) fn hello() -> AgentMessage {
    AgentMessage::Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: "9.9.9-test".into(),
        capabilities: vec![],
    }
}

/// An inventory with one server per name.
pub(crate) fn inventory(servers: &[&str]) -> Inventory {
    Inventory {
        host: agent_bom_protocol::HostFacts {
            hostname: "laptop-1".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            ..Default::default()
        },
        servers: servers
            .iter()
            .map(|name| agent_bom_protocol::ServerEntry {
                id: format!("id-{name}"),
                name: name.to_string(),
                client: "cursor".into(),
                config_path: "/home/u/.cursor/mcp.json".into(),
                ..Default::default()
            })
            .collect(),
        ..Inventory::default()
    }
}

pub(crate) fn snapshot(seq: u64, inventory: &Inventory) -> AgentMessage {
    AgentMessage::InventorySnapshot {
        seq,
        inventory: Box::new(inventory.clone()),
    }
}
