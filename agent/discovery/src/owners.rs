//! Who owns a config file, and who else may read it. The owner comes from the file's metadata,
//! never from its path: a file under `/home/alice` that bob created is bob's.

use std::collections::HashMap;

/// Account names by numeric user id.
#[derive(Debug, Default)]
pub struct Owners {
    names: HashMap<u32, String>,
}

impl Owners {
    /// Load the local accounts.
    pub fn load() -> Self {
        let names = sysinfo::Users::new_with_refreshed_list()
            .map(|users| {
                users
                    .iter()
                    .filter_map(|u| uid_of(u).map(|id| (id, u.name().to_string())))
                    .collect()
            })
            .unwrap_or_default();
        Self { names }
    }

    /// The owner of a file, as an account name (or `uid:N` for an unknown id). `None` on
    /// platforms where ownership is not exposed without OS-specific calls (Windows).
    pub fn owner_of(&self, meta: &std::fs::Metadata) -> Option<String> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let uid = meta.uid();
            Some(
                self.names
                    .get(&uid)
                    .cloned()
                    .unwrap_or_else(|| format!("uid:{uid}")),
            )
        }
        #[cfg(not(unix))]
        {
            let _ = (meta, &self.names);
            None
        }
    }
}

#[cfg(unix)]
fn uid_of(user: &sysinfo::User) -> Option<u32> {
    user.id().to_string().parse().ok()
}

#[cfg(not(unix))]
fn uid_of(_user: &sysinfo::User) -> Option<u32> {
    None
}

/// True when every local user may read the file (Unix `o+r`). Windows ACLs are not evaluated.
pub fn world_readable(meta: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o004 != 0
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn owner_and_mode_come_from_the_file() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, "x").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let meta = std::fs::metadata(&p).unwrap();
        assert!(world_readable(&meta));
        let owner = Owners::load().owner_of(&meta).unwrap();
        assert!(!owner.is_empty());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(!world_readable(&std::fs::metadata(&p).unwrap()));
    }
}
