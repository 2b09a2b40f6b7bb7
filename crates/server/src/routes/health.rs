//! Liveness and readiness for orchestrators and load balancers.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::problem::ApiError;
use crate::state::AppState;

/// The process is up and answering; says nothing about its dependencies.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready to serve: the database answers.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match state.database.ping().await {
        Ok(()) => Ok(Json(json!({
            "status": "ready",
            "database": state.database.backend().name(),
        }))),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed: database unreachable");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unreachable",
                "The database is not reachable.",
            ))
        }
    }
}
