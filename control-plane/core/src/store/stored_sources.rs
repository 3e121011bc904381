//! What a writer's batch read of the fleet-sync sources its pushes declared: plain data the
//! batch carries from job to job. `sync` fills and reads it; it lives apart from `sync` so the
//! writer, which holds it, does not depend on the code that uses the writer.

use std::collections::{BTreeSet, HashMap};

/// A source's stored endpoint, as a batch read it (see `sync::stored_source`).
#[derive(Debug, Clone)]
pub(crate) struct StoredSource {
    pub(crate) endpoint_id: String,
    pub(crate) clients: BTreeSet<String>,
}

/// The stored endpoints of a batch's sources, read once per tenant and batch: by tenant, then
/// source; a source of a read tenant that is absent has no endpoint.
#[derive(Debug, Default)]
pub(crate) struct StoredSources(pub(crate) HashMap<String, HashMap<String, StoredSource>>);
