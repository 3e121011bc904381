//! Revoking a device closes its live connection (at once through the store's notice, or at the
//! collector's 2 s sweep) and its next handshake is refused; the agent then waits instead of
//! hammering.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agent_bom_state::StateDir;
use agent_bom_tests::fixture;
use agent_bom_tests::harness::{PATIENCE, TestAgent, TestServer, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_device_is_disconnected_and_refused() {
    let server = TestServer::start(None).await;
    let home = fixture::copy_to_temp(&fixture::home_linux());
    let agent = TestAgent::start(&server, home.path(), &[], Duration::from_millis(300)).await;
    let key = server.admin_key.clone();
    eventually(PATIENCE, "device online", || async {
        let r = server
            .get(
                &format!("/v1/fleet/endpoints/{}", agent.agent_id),
                Some(&key),
            )
            .await;
        (r.json["status"] == "online" && r.json["server_count"].as_u64() == Some(7)).then_some(())
    })
    .await;
    let state = StateDir::open(agent.state_dir.path()).unwrap();
    assert_eq!(state.uplink().unwrap().connection, "connected");

    let tenant = server.store.tenant_by_name("default").await.unwrap();
    // Another tenant cannot revoke it.
    let other = server.store.create_tenant("other").await.unwrap();
    assert!(
        server
            .store
            .revoke_device(&other.id, &agent.agent_id)
            .await
            .is_err()
    );
    server
        .store
        .revoke_device(&tenant.id, &agent.agent_id)
        .await
        .unwrap();

    // The live session is closed by the sweep, the reconnect is refused, and the agent records
    // why; it does not retry in a tight loop (its backoff is the full cap).
    let uplink = eventually(PATIENCE, "agent refused after revocation", || async {
        let u = state.uplink().unwrap();
        (u.connection == "refused").then_some(u)
    })
    .await;
    assert!(uplink.last_error.unwrap_or_default().contains("revoked"));
    agent.stop().await;
    server.stop().await;
}
