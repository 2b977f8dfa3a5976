//! The load benchmark's baseline: a bare axum endpoint that reads a gate check's JSON body (about
//! 160 bytes) and answers a decision-sized JSON body (about 200 bytes), with no authentication,
//! no store and no audit. What the real server adds on top of this is the price of the gate.
//!
//! `ds-bench-baseline [ADDRESS]` (default 127.0.0.1:0) prints `listening on http://ADDRESS`.

use axum::routing::post;
use axum::{Json, Router};
use deploy_safety_api_types::CheckRequest;
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    allowed: bool,
    reason: &'static str,
    message: &'static str,
    action: String,
    environment: String,
    release_id: Option<String>,
    mode: &'static str,
    would_block: bool,
    audit_seq: u64,
}

async fn check(Json(request): Json<CheckRequest>) -> Json<Answer> {
    Json(Answer {
        allowed: true,
        reason: "ALLOWED",
        message: "Allowed",
        action: request.action.to_string(),
        environment: request.environment.to_string(),
        release_id: request.release_id,
        mode: "enforce",
        would_block: false,
        audit_seq: 0,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let app = Router::new().route("/check", post(check));
    axum::serve(listener, app).await?;
    Ok(())
}
