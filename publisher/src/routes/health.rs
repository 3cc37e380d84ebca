//! `GET /healthz` (the process is up), `GET /readyz` (a verifier was heard from recently) and
//! `GET /metrics` (Prometheus text format).

use crate::state::SharedState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// `GET /healthz`
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: ready when a verifier was heard from recently (the sockets are bound before
/// HTTP is served at all); otherwise 503 with the reason.
pub async fn readyz(State(app): State<SharedState>) -> Response {
    if let Some(failure) = app.events.journal_failure() {
        let body = serde_json::json!({ "ready": false, "reason": failure.to_string() });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let present = app.verification.present();
    if present.verifiers > 0 {
        let body = serde_json::json!({ "ready": true, "verifiers": present.verifiers });
        return Json(body).into_response();
    }
    let reason = format!(
        "no verifier heard from in the last {}",
        humantime::format_duration(app.verification.verifier_timeout())
    );
    let body = serde_json::json!({ "ready": false, "verifiers": 0, "reason": reason });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// `GET /metrics`
pub async fn metrics() -> String {
    crate::metrics::handle().render()
}
