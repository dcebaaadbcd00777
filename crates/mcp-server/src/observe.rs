//! `/metrics`: the Prometheus text of every counter of the process, with
//! the gauges that are read rather than counted (key cache, database pool)
//! refreshed at each scrape.

use crate::db::Database;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use http::header::CONTENT_TYPE;
use mcp_core::Problem;

use crate::AppState;

/// The gauge of open WebSocket connections.
pub const WS_CONNECTIONS: &str = "mcp_ws_connections";

/// `GET /metrics` (admin role, or scope `metrics`).
pub async fn scrape(State(state): State<AppState>) -> Response {
    let Some(handle) = &state.prometheus else {
        return Problem::not_found().into_response();
    };
    let (hits, misses) = state.keys.cache_stats().get();
    metrics::counter!("apikey_cache_hits_total").absolute(hits);
    metrics::counter!("apikey_cache_misses_total").absolute(misses);
    let pool = state.db.pool_usage();
    let database = state.db.kind();
    let in_use = (pool.open as usize).saturating_sub(pool.idle);
    metrics::gauge!("db_pool_connections", "database" => database, "state" => "in_use")
        .set(in_use as f64);
    metrics::gauge!("db_pool_connections", "database" => database, "state" => "idle")
        .set(pool.idle as f64);
    metrics::gauge!("db_pool_max_connections", "database" => database).set(f64::from(pool.max));
    handle.run_upkeep();
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        handle.render(),
    )
        .into_response()
}
