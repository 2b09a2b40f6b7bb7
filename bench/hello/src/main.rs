//! The benchmark baseline: a bare axum server answering `/healthz` with the same JSON as
//! mailroom, without any of mailroom's edge layers. `bench/run` loads both with the same
//! generator in one run and reports mailroom as a ratio to this.

use axum::Json;
use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18181".to_owned());
    let app = Router::new().route(
        "/healthz",
        get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
    );
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    axum::serve(listener, app).await
}
