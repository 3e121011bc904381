//! What a fleet change says: which endpoint of which tenant changed and how, and what a reader
//! of the change feed receives. The vocabulary shared by the feed (`changes`) and the listening
//! connection that parses the database's notifications (`dialect::notices`).

use serde::Serialize;

/// What changed about an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// It came online (its last-seen moved after it had been offline), or went offline (found
    /// by the API's sweep, see [`Store::went_offline`]: going offline writes nothing).
    Status,
    /// A new inventory was stored.
    Inventory,
    /// A command was queued or changed state.
    Commands,
    /// Its record: added, removed, lifecycle state, owner, environment or tags.
    Endpoint,
}

impl ChangeKind {
    /// The word used in notification payloads and in the event stream.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Inventory => "inventory",
            Self::Commands => "commands",
            Self::Endpoint => "endpoint",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "status" => Self::Status,
            "inventory" => Self::Inventory,
            "commands" => Self::Commands,
            "endpoint" => Self::Endpoint,
            _ => return None,
        })
    }
}

/// One change of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetChange {
    /// The endpoint's tenant: a change goes only to that tenant's streams.
    pub tenant_id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// What changed.
    pub kind: ChangeKind,
}

impl FleetChange {
    /// Parse a notification payload `kind|tenant_id:endpoint_id` (what the triggers send).
    pub(crate) fn parse(payload: &str) -> Option<Self> {
        let (kind, rest) = payload.split_once('|')?;
        // Endpoint ids hold no ':'; split at the last one so a tenant id may.
        let (tenant_id, endpoint_id) = rest.rsplit_once(':')?;
        if tenant_id.is_empty() || endpoint_id.is_empty() {
            return None;
        }
        Some(Self {
            tenant_id: tenant_id.to_string(),
            endpoint_id: endpoint_id.to_string(),
            kind: ChangeKind::parse(kind)?,
        })
    }
}

/// What the feed delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedItem {
    /// One change.
    Change(FleetChange),
    /// Changes may have been missed (the listening connection was lost, or this reader fell
    /// behind): whoever shows fleet data should read it again.
    Resync,
}

/// An endpoint counts as online while its last-seen is this recent. The collector flushes
/// last-seen of connected agents every 5 s, so a connected agent is never older than that; a
/// lost agent is dropped at the 30 s idle timeout (QUIC keep-alive or TCP ping every 10 s), so
/// it shows offline within 30 + 25 = 55 s of losing its path.
pub const ONLINE_WINDOW_MS: i64 = 25_000;
