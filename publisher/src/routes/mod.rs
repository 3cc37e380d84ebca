//! The HTTP API (design §3): the router, one file per resource, and the answers for paths and
//! methods that match none. Handlers share [`AppState`] and the query
//! parsing in [`crate::query`]; no route file imports another.

mod downcase;
mod health;
mod signatures;

use crate::error::ApiError;
use crate::metrics;
use crate::state::AppState;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::routing::{get, post};

/// The API's router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/downcase", get(downcase::downcase))
        .route("/downcase/", get(downcase::downcase))
        .route("/signatures", post(signatures::submit))
        .route("/signatures/{id}", get(signatures::status))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route_layer(axum::middleware::from_fn(metrics::count_requests))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(std::sync::Arc::new(state))
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no such resource: {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    tracing::debug!(%method, path = uri.path(), "method not allowed");
    let allow = if uri.path() == "/signatures" {
        "POST"
    } else {
        "GET, HEAD"
    };
    ApiError::MethodNotAllowed { allow }
}
