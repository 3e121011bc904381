//! Throwaway Postgres databases for tests: one fresh database per test, dropped afterwards.
//!
//! The server is taken from `AGENT_BOM_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Tests that need it fail when it is not
//! reachable: in CI Postgres is always there, and a silent skip would hide a broken backend.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// Environment variable naming the admin URL of the test Postgres server.
pub const POSTGRES_URL_ENV: &str = "AGENT_BOM_TEST_POSTGRES_URL";
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database created for one test.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    role: Option<String>,
    /// URL of the new database.
    pub url: String,
}

fn admin_url() -> String {
    std::env::var(POSTGRES_URL_ENV).unwrap_or_else(|_| DEFAULT_URL.to_string())
}

impl TestDatabase {
    /// Create a fresh, empty database.
    pub async fn create() -> Self {
        let admin_url = admin_url();
        let name = format!("abom_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "Postgres tests need a server: cannot connect to {admin_url} ({e}). Start PostgreSQL or set {POSTGRES_URL_ENV}."
            )
        });
        let create = sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"));
        sqlx::query(create)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = conn.close().await;
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b)
            .to_string();
        Self {
            url: format!("{base}/{name}"),
            admin_url,
            name,
            role: None,
        }
    }

    /// Create a fresh database owned by a new application role that is neither a superuser
    /// nor allowed to bypass row-level security; `url` connects as that role, so the store's
    /// RLS policies apply to everything it does.
    pub async fn create_with_app_role() -> Self {
        let mut db = Self::create().await;
        let role = format!("{}_app", db.name);
        let mut conn = PgConnection::connect(&db.admin_url).await.expect("connect");
        for sql in [
            format!("CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"),
            format!("ALTER DATABASE {} OWNER TO {role}", db.name),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let _ = conn.close().await;
        // Same server and database, connecting as the application role.
        let (scheme, rest) = db.url.split_once("://").expect("url scheme");
        let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        db.url = format!("{scheme}://{role}@{host}");
        db.role = Some(role);
        db
    }

    /// Drop the database (call at the end of the test).
    pub async fn drop_database(self) {
        if let Ok(mut conn) = PgConnection::connect(&self.admin_url).await {
            let drop = sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
            let _ = sqlx::query(drop).execute(&mut conn).await;
            if let Some(role) = &self.role {
                let drop = sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}"));
                let _ = sqlx::query(drop).execute(&mut conn).await;
            }
            let _ = conn.close().await;
        }
    }
}
