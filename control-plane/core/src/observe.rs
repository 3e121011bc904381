//! The operations listener: `/metrics` (Prometheus text), `/readyz` and `/healthz` for one
//! process, API server or collector alone, on an address of its own (`--metrics-listen`), so
//! scraping needs no API key and fleet-wide numbers are not served on the public API port.
//! `/readyz` is also on the API (see `api`), for probes that only reach that port.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::metrics;
use crate::store::Store;

/// The routes of the operations listener.
pub fn router(store: Store) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/readyz", get(readyz))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(store)
}

/// Serve [`router`] on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tracing::info!(addr = ?listener.local_addr().ok(), "metrics listening");
    axum::serve(listener, router(store))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// The Prometheus exposition, with the per-tenant gauges read from the store at scrape time.
async fn scrape(State(store): State<Store>) -> impl IntoResponse {
    match store.endpoint_counts().await {
        Ok(counts) => {
            for (tenant, n) in counts {
                metrics::tenant_endpoints(&tenant, n);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read endpoint counts for metrics"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(),
    )
}

/// 200 when the store answers and is migrated, 503 with the reason otherwise.
async fn readyz(State(store): State<Store>) -> impl IntoResponse {
    match store.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", readiness_reason(&e)),
        ),
    }
}

/// Why the store is not ready, without database error text (an unauthenticated caller reads it).
pub(crate) fn readiness_reason(e: &crate::store::StoreError) -> &'static str {
    if e.is_unavailable() {
        "the database is unreachable"
    } else if matches!(e, crate::store::StoreError::Invalid(_)) {
        "the database is not migrated to this version"
    } else {
        "the database check failed"
    }
}
