//! Postgres row-level security is a second wall: connected as the application role (not a
//! superuser, no BYPASSRLS), a query that forgets its tenant sees nothing and cannot write
//! into another tenant, while the whole path (enroll, inventory, API) works.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agent_bom_tests::fixture;
use agent_bom_tests::harness::{PATIENCE, TestAgent, TestServer, eventually};
use agent_bom_tests::postgres::TestDatabase;
use sqlx::{Connection, Row};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rls_is_a_second_wall() {
    let db = TestDatabase::create_with_app_role().await;
    let server = TestServer::start(Some(db.url.clone())).await;
    // The full path works under RLS: an agent enrolls and its inventory lands.
    let home = fixture::copy_to_temp(&fixture::home_linux());
    let agent = TestAgent::start(&server, home.path(), &[], Duration::from_millis(300)).await;
    let key = server.admin_key.clone();
    eventually(
        PATIENCE,
        "endpoint with its inventory under RLS",
        || async {
            let r = server.get("/v1/fleet/endpoints", Some(&key)).await;
            (r.json["items"][0]["server_count"].as_u64().unwrap_or(0) > 0).then_some(())
        },
    )
    .await;
    let default = server.store.tenant_by_name("default").await.unwrap();
    let other = server.store.create_tenant("other").await.unwrap();

    let mut conn = sqlx::postgres::PgConnection::connect(&db.url)
        .await
        .unwrap();
    let me =
        sqlx::query("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(!me.get::<bool, _>("rolsuper") && !me.get::<bool, _>("rolbypassrls"));
    // No tenant set: no tenant rows, even for the owner of the tables.
    for table in [
        "endpoints",
        "endpoint_servers",
        "api_keys",
        "audit_log",
        "enrollment_tokens",
    ] {
        let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) AS n FROM {table}"));
        let n: i64 = sqlx::query(sql)
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get("n");
        assert_eq!(n, 0, "{table} visible without a tenant scope");
    }
    assert_eq!(endpoints_in_scope(&db.url, &default.id).await, 1);
    assert_eq!(
        endpoints_in_scope(&db.url, &other.id).await,
        0,
        "another tenant's scope sees nothing"
    );
    // Writing a row of another tenant under this tenant's scope is refused.
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(&other.id)
        .execute(&mut *tx)
        .await
        .unwrap();
    let updated = sqlx::query("UPDATE endpoints SET hostname = 'pwned' WHERE tenant_id = $1")
        .bind(&default.id)
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(
        updated.rows_affected(),
        0,
        "cross-tenant update touched rows"
    );
    let insert = sqlx::query(
        "INSERT INTO audit_log (tenant_id, seq, at, actor, action, target, detail, prev_hash, hash) \
         VALUES ($1, 999, 0, 'x', 'x', 'x', '{}', 'x', 'x')",
    )
    .bind(&default.id)
    .execute(&mut *tx)
    .await;
    assert!(
        insert.is_err(),
        "cross-tenant insert must violate the policy"
    );
    drop(tx);
    let _ = conn.close().await;
    agent.stop().await;
    server.stop().await;
    db.drop_database().await;
}

/// Endpoints visible to a fresh connection of the application role scoped to `tenant`.
async fn endpoints_in_scope(url: &str, tenant: &str) -> i64 {
    let mut c = sqlx::postgres::PgConnection::connect(url).await.unwrap();
    let mut tx = c.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("SELECT COUNT(*) AS n FROM endpoints")
        .fetch_one(&mut *tx)
        .await
        .unwrap()
        .get("n")
}

/// Every table of a migrated database that holds tenant data (a `tenant_id` column) is in the
/// store's list of tenant tables and has row-level security enabled, forced, and the tenant
/// isolation policy: a table added without it fails here.
#[tokio::test]
async fn every_tenant_table_has_row_level_security() {
    use agent_bom_control_plane::store::Store;
    use agent_bom_control_plane::store::dialect::TENANT_TABLES;

    let db = TestDatabase::create_with_app_role().await;
    let store = Store::connect(&db.url).await.unwrap();
    let rows = sqlx::query(
        "SELECT c.table_name::text AS name, cl.relrowsecurity AS enabled, cl.relforcerowsecurity AS forced, \
         EXISTS (SELECT 1 FROM pg_policies p WHERE p.schemaname = c.table_schema AND p.tablename = c.table_name \
                 AND p.policyname = 'tenant_isolation' AND p.qual LIKE '%tenant_id%' AND p.with_check LIKE '%tenant_id%') AS policy \
         FROM information_schema.columns c \
         JOIN pg_namespace n ON n.nspname = c.table_schema \
         JOIN pg_class cl ON cl.relnamespace = n.oid AND cl.relname = c.table_name \
         WHERE c.table_schema = current_schema() AND c.column_name = 'tenant_id' AND cl.relkind = 'r' \
         ORDER BY 1",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let mut tables = Vec::new();
    for r in &rows {
        let name: String = r.get("name");
        assert!(
            r.get::<bool, _>("enabled") && r.get::<bool, _>("forced") && r.get::<bool, _>("policy"),
            "{name} holds tenant data without row-level security"
        );
        tables.push(name);
    }
    let mut listed: Vec<String> = TENANT_TABLES.iter().map(|t| t.to_string()).collect();
    listed.sort();
    assert_eq!(
        tables, listed,
        "tables with a tenant_id column vs the store's list"
    );
    store.close().await;
    db.drop_database().await;
}
