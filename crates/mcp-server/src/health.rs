//! Liveness and readiness.

use crate::db::Database;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use mcp_core::Problem;
use serde_json::json;

use crate::AppState;

/// How long readiness waits for the database before calling it down.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /health`: the process is up. Touches nothing else, and answers
/// from a constant (no JSON is built per probe).
pub async fn health() -> impl IntoResponse {
    (
        [(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        )],
        r#"{"status":"ok"}"#,
    )
}

/// `GET /health/ready`: the database answers (and Redis, when rate limits
/// fail closed). `503` problem naming the failing check otherwise; `redis`
/// is `disabled` without `REDIS_URL`, and reported `down` without making the
/// server unready when limits fail open.
pub async fn ready(State(state): State<AppState>) -> Response {
    let database = match tokio::time::timeout(READY_TIMEOUT, state.db.ping()).await {
        Ok(Ok(())) => "ok",
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "readiness: database down");
            "down"
        }
        Err(_) => {
            tracing::warn!("readiness: database did not answer in time");
            "down"
        }
    };
    let (redis, redis_blocks) = state.limits.redis_check().await;
    let checks = json!({"database": database, "redis": redis});
    if database == "ok" && !redis_blocks {
        #[derive(serde::Serialize)]
        struct Ready {
            status: &'static str,
            checks: serde_json::Value,
        }
        Json(Ready {
            status: "ok",
            checks,
        })
        .into_response()
    } else {
        let down = if database == "ok" {
            "not ready: redis is down (and rate limits fail closed)"
        } else {
            "not ready: database is down"
        };
        Problem::unavailable(down)
            .with_extension("checks", checks)
            .into_response()
    }
}
