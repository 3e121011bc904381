//! A store to run against: a fresh SQLite file or Postgres database, opened (migrated, its CA
//! and bootstrap tenant created) as `agent-bom serve` opens it.

use agent_bom_collector::CollectorConfig;
use agent_bom_control_plane::server::{ServeConfig, Server};
use agent_bom_tests::postgres::TestDatabase;

/// An opened store and what a collector needs to run on it.
pub struct Backend {
    /// `sqlite` or `postgres`.
    pub name: String,
    /// The store's URL, for a collector.
    pub url: String,
    /// The opened server: store, CA, bootstrap tenant and token.
    pub server: Server,
    /// Its data directory (the CA, the SQLite file).
    pub data_dir: tempfile::TempDir,
    /// The Postgres database, dropped by [`Backend::close`].
    pub db: Option<TestDatabase>,
}

/// Open a fresh `sqlite` or `postgres` backend.
pub async fn open_backend(name: &str) -> Backend {
    let data_dir = tempfile::tempdir().unwrap();
    let (database_url, db) = match name {
        "sqlite" => (None, None),
        "postgres" => {
            let db = TestDatabase::create().await;
            (Some(db.url.clone()), Some(db))
        }
        other => panic!("unknown backend {other}"),
    };
    let server = Server::open(ServeConfig {
        data_dir: data_dir.path().to_path_buf(),
        database_url: database_url.clone(),
        collector: CollectorConfig::default(),
        oidc: None,
    })
    .await
    .unwrap();
    let url = database_url.unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            data_dir
                .path()
                .join(agent_bom_control_plane::store::SQLITE_FILE)
                .display()
        )
    });
    Backend {
        name: name.to_string(),
        url,
        server,
        data_dir,
        db,
    }
}

impl Backend {
    /// The bootstrap tenant's enrollment token.
    pub fn enrollment_token(&self) -> String {
        self.server
            .bootstrap
            .as_ref()
            .expect("a fresh store bootstraps")
            .enrollment_token
            .clone()
    }

    /// The bootstrap tenant.
    pub fn tenant_id(&self) -> String {
        self.server
            .bootstrap
            .as_ref()
            .expect("a fresh store bootstraps")
            .tenant_id
            .clone()
    }

    /// Close the store and drop the Postgres database.
    pub async fn close(self) {
        self.server.store.close().await;
        if let Some(db) = self.db {
            db.drop_database().await;
        }
    }
}
