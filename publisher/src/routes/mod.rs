//! The HTTP API (design §3): the router, one file per resource, the answers for paths and
//! methods that match none, and the limits no client can get past. Handlers share
//! [`AppState`] and the query parsing in [`crate::query`]; no route file imports another.

mod downcase;
mod health;
mod keys;
mod signatures;

use crate::config::HttpLimits;
use crate::error::ApiError;
use crate::metrics;
use crate::state::AppState;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;

/// The API's router. The API routes share one concurrency limit that sheds what is over it
/// and one request timeout; the probes (`/healthz`, `/readyz`, `/metrics`) stand outside
/// both, so a saturated API is still seen to be up.
pub fn router(state: AppState, limits: &HttpLimits) -> Router {
    // Outermost first: errors become answers, a request finding no free slot is shed at
    // once, the slots are one semaphore for every route, and the timeout runs inside the
    // slot so a request cut by it frees its slot.
    let bounded = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(refused))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(
            limits.max_concurrent_requests,
        ))
        .timeout(limits.request_timeout);
    let api = Router::new()
        .route("/downcase", get(downcase::downcase).head(downcase::head))
        .route("/downcase/", get(downcase::downcase).head(downcase::head))
        .route("/signatures", post(signatures::submit))
        .route("/signatures/{id}", get(signatures::status))
        .route("/keys", get(keys::keys))
        .route_layer(bounded);
    let probes = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics));
    api.merge(probes)
        .route_layer(axum::middleware::from_fn(metrics::count_requests))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(std::sync::Arc::new(state))
}

/// The answer for a request the limits stopped: shed (no free slot) or timed out. Both are
/// 503 with `Retry-After`, counted apart.
async fn refused(err: tower::BoxError) -> ApiError {
    if err.is::<tower::load_shed::error::Overloaded>() {
        ::metrics::counter!("http_requests_shed_total").increment(1);
        return ApiError::unavailable("too many requests in progress; retry shortly");
    }
    if err.is::<tower::timeout::error::Elapsed>() {
        ::metrics::counter!("http_requests_timed_out_total").increment(1);
        return ApiError::unavailable("the request took too long and was stopped");
    }
    // The handlers cannot fail, so nothing else reaches here; should it, the client gets
    // no detail.
    tracing::error!(cause = %err, "request failed in a middleware");
    ApiError::unavailable("the request could not be served")
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no such resource: {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    tracing::debug!(%method, path = uri.path(), "method not allowed");
    let allow = match uri.path() {
        "/signatures" => "POST",
        // HEAD would publish an event: see `downcase::head`.
        "/downcase" | "/downcase/" => "GET",
        _ => "GET, HEAD",
    };
    ApiError::MethodNotAllowed { allow }
}
