//! Application close codes of a QUIC uplink connection, and the retry-after an overload close
//! carries in its reason.
//!
//! The codes are part of the protocol: the agent decides how long to wait before reconnecting
//! from them (see `docs/protocol.md`, "Connection close codes").

/// Normal close.
pub const DONE: u32 = 0;
/// The device is not authorized (unknown, revoked, superseded certificate).
pub const UNAUTHORIZED: u32 = 0x10;
/// Superseded by a newer connection of the same device, or revoked while connected.
pub const SUPERSEDED: u32 = 0x11;
/// Protocol violation (no `hello`, unsupported version).
pub const PROTOCOL: u32 = 0x12;
/// The collector is shutting down; reconnect after a jittered delay (another replica or the
/// restarted process takes the connection).
pub const SHUTDOWN: u32 = 0x13;
/// The collector is overloaded; the reason is `retry_after_ms=N` (see [`overload_reason`]) and
/// the agent waits that long before reconnecting.
pub const OVERLOADED: u32 = 0x14;

const RETRY_AFTER_PREFIX: &str = "retry_after_ms=";

/// The reason bytes of an [`OVERLOADED`] close.
pub fn overload_reason(retry_after_ms: u64) -> String {
    format!("{RETRY_AFTER_PREFIX}{retry_after_ms}")
}

/// The retry-after carried by an [`OVERLOADED`] close reason, if it has one.
pub fn retry_after_ms(reason: &[u8]) -> Option<u64> {
    std::str::from_utf8(reason)
        .ok()?
        .trim()
        .strip_prefix(RETRY_AFTER_PREFIX)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_reason_round_trips() {
        assert_eq!(retry_after_ms(overload_reason(2500).as_bytes()), Some(2500));
        assert_eq!(retry_after_ms(b"refused"), None);
        assert_eq!(retry_after_ms(b"retry_after_ms=soon"), None);
        assert_eq!(retry_after_ms(&[0xff, 0xfe]), None);
    }
}
