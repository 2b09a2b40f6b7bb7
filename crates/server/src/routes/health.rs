//! Liveness and readiness for orchestrators and load balancers.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::application::installation;
use crate::problem::ApiError;
use crate::state::AppState;

/// The process is up and answering; says nothing about its dependencies.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready to serve: the database answers.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let backend = installation::readiness(&state).await?;
    Ok(Json(json!({
        "status": "ready",
        "database": backend.name(),
    })))
}
