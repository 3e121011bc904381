//! What a writer's batch read of the endpoints its inventory deltas declared: plain data the
//! batch carries from job to job. The collector's delta jobs fill and read it; it lives apart
//! from them so the writer, which holds it, does not depend on the code that uses the writer.

use std::collections::HashMap;

/// A device's stored inventory state, as a batch read it (see `collector::stored_base`).
#[derive(Debug, Clone)]
pub(crate) struct StoredBase {
    pub(crate) last_seq: Option<i64>,
    pub(crate) revoked: bool,
    pub(crate) hash: Option<String>,
    pub(crate) doc: Option<String>,
}

/// The stored states of a batch's delta devices, read once per tenant and batch: by tenant,
/// then device. A job takes its device's entry: a later job of the device in the batch (or
/// one whose entry is absent) reads its own.
#[derive(Debug, Default)]
pub(crate) struct StoredBases(pub(crate) HashMap<String, HashMap<String, StoredBase>>);
