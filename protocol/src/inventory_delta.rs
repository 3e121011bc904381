//! Inventory deltas: what changed between the inventory the collector acknowledged and the one
//! the agent has now, so an upload carries only the changes.
//!
//! Granularity: host facts travel whole when any of them changed (a few hundred bytes). Each list
//! (clients, servers, scan errors) changes entry by entry, keyed by an identity that is unique
//! within one scan:
//!
//! | list | key | why not a shorter key |
//! |---|---|---|
//! | clients | `name` | catalog names are unique (the scan groups files by client) |
//! | servers | `(client, config_path, project, name)` | `id` is a launch hash: the same launch in two clients shares it |
//! | errors | `(path, message)` | one file can have several problems |
//!
//! Entries are replaced whole, never patched field by field: a changed server is a new value of
//! its key. Order is part of the inventory (the API lists servers in scan order), so an edit says
//! where entries end up when that differs from the default placement. A list whose keys are not
//! unique (two entries with the same key) cannot be edited by key and is replaced whole.
//!
//! [`diff`] and [`apply`] are pure; `apply(base, diff(base, new)) == new` for every pair.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::inventory::{ClientInfo, HostFacts, Inventory, ScanError, ServerEntry};

/// The changes that turn a base inventory into a new one. Absent parts are unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InventoryChanges {
    /// New host facts, whole, when any fact changed.
    #[serde(default)]
    pub host: Option<HostFacts>,
    /// Changes to the clients.
    #[serde(default)]
    pub clients: Option<ListChange<ClientInfo>>,
    /// Changes to the servers.
    #[serde(default)]
    pub servers: Option<ListChange<ServerEntry>>,
    /// Changes to the scan errors.
    #[serde(default)]
    pub errors: Option<ListChange<ScanError>>,
}

impl InventoryChanges {
    /// True when applying these changes leaves the base as it is.
    pub fn is_empty(&self) -> bool {
        self.host.is_none()
            && self.clients.is_none()
            && self.servers.is_none()
            && self.errors.is_none()
    }
}

/// An entry of an inventory list with the identity a delta addresses it by.
pub trait Keyed: Clone + PartialEq {
    /// The identity; unique within one well-formed list.
    type Key: Ord + Clone + std::fmt::Debug + Serialize + DeserializeOwned;
    /// This entry's identity.
    fn key(&self) -> Self::Key;
}

impl Keyed for ClientInfo {
    type Key = String;
    fn key(&self) -> String {
        self.name.clone()
    }
}

/// Identity of a server entry: where it is declared and under which name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServerKey {
    /// Catalog name of the client.
    pub client: String,
    /// The file that declares the server.
    pub config_path: String,
    /// Project directory, for project sections inside a user file.
    #[serde(default)]
    pub project: Option<String>,
    /// The key the config gives the server.
    pub name: String,
}

impl Keyed for ServerEntry {
    type Key = ServerKey;
    fn key(&self) -> ServerKey {
        ServerKey {
            client: self.client.clone(),
            config_path: self.config_path.clone(),
            project: self.project.clone(),
            name: self.name.clone(),
        }
    }
}

impl Keyed for ScanError {
    type Key = ScanError;
    fn key(&self) -> ScanError {
        self.clone()
    }
}

/// How one list changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[serde(bound(
    serialize = "T: Serialize, T::Key: Serialize",
    deserialize = "T: Deserialize<'de>, T::Key: DeserializeOwned"
))]
pub enum ListChange<T: Keyed> {
    /// Entries removed by key, entries added or changed whole.
    ///
    /// Placement: the base's entries keep their order, a changed entry takes the place of the
    /// one it replaces, added entries follow at the end in `upserted` order. When the new list
    /// is ordered differently, `order` gives it: `order[i]` is the position, in that default
    /// placement, of the entry that ends up at position `i`.
    Edit {
        /// Keys of base entries that are gone.
        #[serde(default)]
        removed: Vec<T::Key>,
        /// Entries that are new or differ from the base entry with the same key.
        #[serde(default)]
        upserted: Vec<T>,
        /// Final order, when it is not the default placement.
        #[serde(default)]
        order: Option<Vec<u32>>,
    },
    /// The whole new list: used when keys are not unique, or when no base entry survives.
    Replace {
        /// The entries.
        items: Vec<T>,
    },
}

/// Why changes do not apply to a base. Every case means the receiver's base is not the one the
/// sender diffed against (or the changes are malformed); the remedy is a full snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    /// A key the edit removes or relies on is not unique in the base.
    #[error("the base has two entries with the key {0}")]
    DuplicateBaseKey(String),
    /// The edit removes a key the base does not have.
    #[error("the base has no entry with the key {0}")]
    UnknownKey(String),
    /// The edit names one key twice (removed and upserted, or upserted twice).
    #[error("the changes name the key {0} twice")]
    ConflictingKey(String),
    /// `order` is not a permutation of the placed entries.
    #[error("the order does not match the {0} entries it places")]
    BadOrder(usize),
}

/// The changes from `old` to `new`.
pub fn diff(old: &Inventory, new: &Inventory) -> InventoryChanges {
    InventoryChanges {
        host: (old.host != new.host).then(|| new.host.clone()),
        clients: diff_list(&old.clients, &new.clients),
        servers: diff_list(&old.servers, &new.servers),
        errors: diff_list(&old.errors, &new.errors),
    }
}

/// `base` with `changes` applied.
pub fn apply(base: &Inventory, changes: &InventoryChanges) -> Result<Inventory, DeltaError> {
    fn list<T: Keyed>(base: &[T], change: Option<&ListChange<T>>) -> Result<Vec<T>, DeltaError> {
        match change {
            Some(c) => apply_list(base, c),
            None => Ok(base.to_vec()),
        }
    }
    Ok(Inventory {
        host: changes.host.clone().unwrap_or_else(|| base.host.clone()),
        clients: list(&base.clients, changes.clients.as_ref())?,
        servers: list(&base.servers, changes.servers.as_ref())?,
        errors: list(&base.errors, changes.errors.as_ref())?,
    })
}

/// The change from `old` to `new`, `None` when they are equal.
pub fn diff_list<T: Keyed>(old: &[T], new: &[T]) -> Option<ListChange<T>> {
    if old == new {
        return None;
    }
    let replace = || {
        Some(ListChange::Replace {
            items: new.to_vec(),
        })
    };
    let (Some(old_index), Some(new_keys)) = (unique_index(old), unique_keys(new)) else {
        return replace();
    };
    let removed: Vec<T::Key> = old
        .iter()
        .map(Keyed::key)
        .filter(|k| !new_keys.contains(k))
        .collect();
    let upserted: Vec<T> = new
        .iter()
        .filter(|n| old_index.get(&n.key()).is_none_or(|&i| old[i] != **n))
        .cloned()
        .collect();
    if upserted.len() == new.len() {
        // Nothing of the base survives unchanged: keys and placement would only add bytes.
        return replace();
    }
    let placed = default_placement(old, &removed, &upserted);
    let order = if placed.iter().map(Keyed::key).eq(new.iter().map(Keyed::key)) {
        None
    } else {
        let position: BTreeMap<T::Key, u32> = placed
            .iter()
            .enumerate()
            .map(|(i, e)| (e.key(), u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        Some(
            new.iter()
                .map(|n| position.get(&n.key()).copied().unwrap_or(u32::MAX))
                .collect(),
        )
    };
    Some(ListChange::Edit {
        removed,
        upserted,
        order,
    })
}

/// `base` with `change` applied.
pub fn apply_list<T: Keyed>(base: &[T], change: &ListChange<T>) -> Result<Vec<T>, DeltaError> {
    let (removed, upserted, order) = match change {
        ListChange::Replace { items } => return Ok(items.clone()),
        ListChange::Edit {
            removed,
            upserted,
            order,
        } => (removed, upserted, order),
    };
    let Some(index) = unique_index(base) else {
        let dup = first_duplicate(base).map_or_else(String::new, |k| format!("{k:?}"));
        return Err(DeltaError::DuplicateBaseKey(dup));
    };
    let mut named = BTreeSet::new();
    for key in removed
        .iter()
        .cloned()
        .chain(upserted.iter().map(Keyed::key))
    {
        if !named.insert(key.clone()) {
            return Err(DeltaError::ConflictingKey(format!("{key:?}")));
        }
    }
    if let Some(missing) = removed.iter().find(|k| !index.contains_key(*k)) {
        return Err(DeltaError::UnknownKey(format!("{missing:?}")));
    }
    let placed = default_placement(base, removed, upserted);
    let Some(order) = order else {
        return Ok(placed);
    };
    let mut taken = vec![false; placed.len()];
    let mut out = Vec::with_capacity(placed.len());
    for &i in order {
        let i = i as usize;
        match taken.get_mut(i) {
            Some(t) if !*t => *t = true,
            _ => return Err(DeltaError::BadOrder(placed.len())),
        }
        out.push(placed[i].clone());
    }
    if out.len() != placed.len() {
        return Err(DeltaError::BadOrder(placed.len()));
    }
    Ok(out)
}

/// Base entries in base order without the removed ones, each replaced by its upserted value
/// when there is one, followed by the upserted entries the base does not have.
fn default_placement<T: Keyed>(base: &[T], removed: &[T::Key], upserted: &[T]) -> Vec<T> {
    let removed: BTreeSet<&T::Key> = removed.iter().collect();
    let mut pending: BTreeMap<T::Key, &T> = upserted.iter().map(|u| (u.key(), u)).collect();
    let mut out: Vec<T> = base
        .iter()
        .filter_map(|b| {
            let key = b.key();
            if removed.contains(&key) {
                return None;
            }
            Some(pending.remove(&key).map_or_else(|| b.clone(), T::clone))
        })
        .collect();
    out.extend(
        upserted
            .iter()
            .filter(|u| pending.contains_key(&u.key()))
            .cloned(),
    );
    out
}

/// Position of each key, or `None` when a key occurs twice.
fn unique_index<T: Keyed>(list: &[T]) -> Option<BTreeMap<T::Key, usize>> {
    let mut index = BTreeMap::new();
    for (i, e) in list.iter().enumerate() {
        if index.insert(e.key(), i).is_some() {
            return None;
        }
    }
    Some(index)
}

fn unique_keys<T: Keyed>(list: &[T]) -> Option<BTreeSet<T::Key>> {
    let keys: BTreeSet<T::Key> = list.iter().map(Keyed::key).collect();
    (keys.len() == list.len()).then_some(keys)
}

fn first_duplicate<T: Keyed>(list: &[T]) -> Option<T::Key> {
    let mut seen = BTreeSet::new();
    list.iter()
        .map(Keyed::key)
        .find(|k| !seen.insert(k.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{decode, encode};
    use crate::messages::AgentMessage;

    fn server(client: &str, name: &str, command: &str) -> ServerEntry {
        ServerEntry {
            id: format!("id-{command}"),
            name: name.into(),
            client: client.into(),
            config_path: format!("/home/u/.{client}.json"),
            command: Some(command.into()),
            env_keys: vec!["API_TOKEN".into()],
            ..Default::default()
        }
    }

    fn inventory(servers: Vec<ServerEntry>) -> Inventory {
        let mut clients: Vec<ClientInfo> = servers
            .iter()
            .map(|s| ClientInfo {
                name: s.client.clone(),
                config_files: vec![s.config_path.clone()],
            })
            .collect();
        clients.dedup();
        Inventory {
            host: HostFacts {
                hostname: "h".into(),
                os: "linux".into(),
                arch: "x86_64".into(),
                uptime_secs: Some(10),
                ..Default::default()
            },
            clients,
            servers,
            errors: vec![ScanError {
                path: "/p/.mcp.json".into(),
                message: "invalid JSON at line 1".into(),
            }],
        }
    }

    fn round_trip(a: &Inventory, b: &Inventory) -> InventoryChanges {
        let changes = diff(a, b);
        assert_eq!(apply(a, &changes).as_ref(), Ok(b), "changes: {changes:?}");
        // And over the wire.
        let wire: InventoryChanges =
            rmp_serde::from_slice(&rmp_serde::to_vec_named(&changes).expect("encode changes"))
                .expect("decode changes");
        assert_eq!(wire, changes);
        changes
    }

    #[test]
    fn equal_inventories_have_no_changes() {
        let a = inventory(vec![server("cursor", "x", "npx")]);
        assert!(round_trip(&a, &a).is_empty());
    }

    #[test]
    fn a_changed_server_travels_alone() {
        let a = inventory(vec![
            server("cursor", "a", "one"),
            server("cursor", "b", "two"),
            server("vscode", "c", "three"),
        ]);
        let mut b = a.clone();
        b.servers[1].args = vec!["--verbose".into()];
        let changes = round_trip(&a, &b);
        assert!(changes.host.is_none() && changes.clients.is_none() && changes.errors.is_none());
        assert_eq!(
            changes.servers,
            Some(ListChange::Edit {
                removed: vec![],
                upserted: vec![b.servers[1].clone()],
                order: None,
            })
        );
    }

    #[test]
    fn added_removed_and_reordered_entries_keep_the_new_order() {
        let a = inventory(vec![
            server("cursor", "a", "one"),
            server("cursor", "b", "two"),
            server("cursor", "c", "three"),
        ]);
        // Removal.
        let mut b = a.clone();
        b.servers.remove(1);
        let changes = round_trip(&a, &b);
        assert!(matches!(
            changes.servers,
            Some(ListChange::Edit { ref removed, ref upserted, order: None }) if removed.len() == 1 && upserted.is_empty()
        ));
        // Insertion in the middle needs an order; at the end it does not.
        let mut c = a.clone();
        c.servers.insert(1, server("cursor", "new", "four"));
        let changes = round_trip(&a, &c);
        assert!(matches!(
            changes.servers,
            Some(ListChange::Edit { order: Some(_), .. })
        ));
        let mut d = a.clone();
        d.servers.push(server("cursor", "last", "five"));
        assert!(matches!(
            round_trip(&a, &d).servers,
            Some(ListChange::Edit { order: None, .. })
        ));
        // Pure reordering.
        let mut e = a.clone();
        e.servers.reverse();
        assert!(matches!(
            round_trip(&a, &e).servers,
            Some(ListChange::Edit { ref upserted, order: Some(_), .. }) if upserted.is_empty()
        ));
    }

    #[test]
    fn host_facts_travel_whole_when_one_changed() {
        let a = inventory(vec![server("cursor", "a", "one")]);
        let mut b = a.clone();
        b.host.uptime_secs = Some(11);
        let changes = round_trip(&a, &b);
        assert_eq!(changes.host, Some(b.host.clone()));
        assert!(changes.servers.is_none());
    }

    #[test]
    fn duplicate_keys_replace_the_list_whole() {
        let mut a = inventory(vec![server("cursor", "a", "one")]);
        a.servers.push(server("cursor", "a", "dup"));
        let b = inventory(vec![
            server("cursor", "a", "one"),
            server("cursor", "z", "z"),
        ]);
        assert!(matches!(
            round_trip(&a, &b).servers,
            Some(ListChange::Replace { .. })
        ));
        assert!(matches!(
            round_trip(&b, &a).servers,
            Some(ListChange::Replace { .. })
        ));
    }

    #[test]
    fn changes_against_another_base_are_refused() {
        let a = inventory(vec![
            server("cursor", "a", "one"),
            server("cursor", "b", "two"),
        ]);
        let mut b = a.clone();
        b.servers.remove(0);
        let changes = diff(&a, &b);
        let other = inventory(vec![
            server("vscode", "q", "one"),
            server("vscode", "r", "x"),
        ]);
        assert!(matches!(
            apply(&other, &changes),
            Err(DeltaError::UnknownKey(_))
        ));
        let bad_order: ListChange<ServerEntry> = ListChange::Edit {
            removed: vec![],
            upserted: vec![],
            order: Some(vec![0, 0]),
        };
        assert_eq!(
            apply_list(&a.servers, &bad_order),
            Err(DeltaError::BadOrder(2))
        );
        let twice: ListChange<ServerEntry> = ListChange::Edit {
            removed: vec![a.servers[0].key()],
            upserted: vec![a.servers[0].clone()],
            order: None,
        };
        assert!(matches!(
            apply_list(&a.servers, &twice),
            Err(DeltaError::ConflictingKey(_))
        ));
    }

    #[test]
    fn a_delta_message_round_trips_and_carries_no_values() {
        let a = inventory(vec![server("cursor", "a", "one")]);
        let mut b = a.clone();
        b.servers.push(server("cursor", "b", "two"));
        let message = AgentMessage::InventoryDelta {
            seq: 2,
            base_seq: 1,
            base_hash: a.content_hash(),
            hash: b.content_hash(),
            changes: Box::new(diff(&a, &b)),
        };
        let frame = encode(&message).expect("encode");
        assert_eq!(decode::<AgentMessage>(&frame).expect("decode"), message);
    }

    /// A small deterministic generator (splitmix64): random pairs of inventories without a
    /// dependency, and reproducible from the seed printed on failure.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    /// Entries from a small name space, so lists share keys, collide, and repeat.
    fn random_inventory(rng: &mut Rng) -> Inventory {
        fn pick(rng: &mut Rng, names: &[&'static str]) -> &'static str {
            names[rng.below(names.len() as u64) as usize]
        }
        let servers = (0..rng.below(7))
            .map(|_| {
                let mut s = server(
                    pick(rng, &["cursor", "vscode"]),
                    pick(rng, &["a", "b", "c", "d"]),
                    pick(rng, &["npx", "uvx", "node"]),
                );
                if rng.below(3) == 0 {
                    s.project = Some(pick(rng, &["/p1", "/p2"]).into());
                }
                s.enabled = rng.below(4) != 0;
                s
            })
            .collect();
        let mut inv = inventory(servers);
        inv.errors = (0..rng.below(3))
            .map(|_| ScanError {
                path: pick(rng, &["/x.json", "/y.toml"]).into(),
                message: pick(rng, &["bad", "worse"]).into(),
            })
            .collect();
        inv.clients = (0..rng.below(3))
            .map(|_| ClientInfo {
                name: pick(rng, &["cursor", "vscode", "zed"]).into(),
                config_files: vec![pick(rng, &["/1", "/2"]).into()],
            })
            .collect();
        inv.host.uptime_secs = Some(rng.below(3));
        inv.host.users = (0..rng.below(2)).map(|i| format!("u{i}")).collect();
        inv
    }

    /// A random edit of `base`: remove, change, insert and swap entries.
    fn mutate(rng: &mut Rng, base: &Inventory) -> Inventory {
        let mut out = base.clone();
        for _ in 0..rng.below(5) {
            let len = out.servers.len() as u64;
            match rng.below(5) {
                0 if len > 0 => {
                    out.servers.remove(rng.below(len) as usize);
                }
                1 if len > 0 => {
                    let i = rng.below(len) as usize;
                    out.servers[i].args.push(format!("--flag{}", rng.below(9)));
                }
                2 => {
                    let at = rng.below(len + 1) as usize;
                    let s = server("zed", &format!("n{}", rng.below(6)), "deno");
                    out.servers.insert(at, s);
                }
                3 if len > 1 => {
                    let (i, j) = (rng.below(len) as usize, rng.below(len) as usize);
                    out.servers.swap(i, j);
                }
                _ => out.host.uptime_secs = Some(rng.below(100)),
            }
        }
        if rng.below(4) == 0 {
            out.errors.clear();
        }
        out
    }

    #[test]
    fn property_apply_of_diff_is_the_new_inventory() {
        // How often each shape of server change came up: all of them must be exercised.
        let (mut edits, mut reorders, mut replaces) = (0, 0, 0);
        for seed in 0..3000u64 {
            let mut rng = Rng(seed);
            let a = random_inventory(&mut rng);
            let b = if rng.below(2) == 0 {
                mutate(&mut rng, &a)
            } else {
                random_inventory(&mut rng)
            };
            let changes = diff(&a, &b);
            assert_eq!(
                apply(&a, &changes).as_ref(),
                Ok(&b),
                "seed {seed}: {changes:?}"
            );
            assert_eq!(changes.is_empty(), a == b, "seed {seed}");
            match changes.servers {
                Some(ListChange::Edit { order: None, .. }) => edits += 1,
                Some(ListChange::Edit { order: Some(_), .. }) => reorders += 1,
                Some(ListChange::Replace { .. }) => replaces += 1,
                None => {}
            }
        }
        assert!(
            edits > 100 && reorders > 100 && replaces > 100,
            "{edits} edits, {reorders} reorders, {replaces} replacements"
        );
    }
}
