//! The HTTP API (design §3): routes, handlers and their JSON shapes.

use crate::error::ApiError;
use crate::events::{Events, Stopped};
use crate::results::Results;
use crate::verification::Verification;
use crate::{metrics, signatures};
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use percent_encoding::percent_decode_str;
use serde::Serialize;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use wire::{Downcase, Event};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The publishing path.
    pub events: Events,
    /// Signature checks by the verifiers.
    pub verification: Verification,
    /// Signature requests and their outcomes.
    pub results: Arc<Results>,
    /// Longest accepted `param`, in bytes.
    pub max_param_bytes: usize,
    /// Largest accepted body, in bytes.
    pub max_body_bytes: usize,
    /// Longest `?wait=` honoured.
    pub max_wait: Duration,
}

/// The API's router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/downcase", get(downcase))
        .route("/downcase/", get(downcase))
        .route("/signatures", post(signatures::submit))
        .route("/signatures/{id}", get(signatures::status))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::render))
        .route_layer(axum::middleware::from_fn(metrics::count_requests))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// `GET /downcase` answer.
#[derive(Serialize)]
struct DowncaseReply {
    param: String,
    result: String,
    event: EventRef,
}

/// Which event a response produced.
#[derive(Serialize)]
struct EventRef {
    publisher: String,
    seq: u64,
}

async fn downcase(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<DowncaseReply>, ApiError> {
    let param = single_param(query.as_deref().unwrap_or(""), "param", app.max_param_bytes)?;
    let result = param.to_lowercase();
    let published = app
        .events
        .publish(Event::Downcase(Downcase {
            param: param.clone(),
            result: result.clone(),
        }))
        .await
        .map_err(stopping)?;
    Ok(Json(DowncaseReply {
        param,
        result,
        event: EventRef {
            publisher: app.events.identity().id.clone(),
            seq: published.seq,
        },
    }))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Ready when a verifier was heard from recently (the sockets are bound before HTTP is
/// served at all); otherwise 503 with the reason.
async fn readyz(State(app): State<AppState>) -> Response {
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

fn stopping(_: Stopped) -> ApiError {
    ApiError::Unavailable {
        reason: "the service is stopping".into(),
        retry_after_secs: 1,
    }
}

/// The one value of `name` in a query string, percent-decoded (`+` is a space) and strictly
/// UTF-8. Missing, repeated, undecodable and over-long values are the client's mistake.
fn single_param(query: &str, name: &str, max_bytes: usize) -> Result<String, ApiError> {
    optional_param(query, name, max_bytes)?.ok_or_else(|| {
        ApiError::BadRequest(format!(
            "missing query parameter `{name}`, e.g. ?{name}=HeLLo"
        ))
    })
}

/// Like [`single_param`], for a parameter that may be left out.
pub(crate) fn optional_param(
    query: &str,
    name: &str,
    max_bytes: usize,
) -> Result<Option<String>, ApiError> {
    let mut found = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(key, "a parameter name")? != name {
            continue;
        }
        if found.is_some() {
            return Err(ApiError::BadRequest(format!(
                "`{name}` is given more than once"
            )));
        }
        // A percent-encoded byte takes three characters: longer than that cannot fit.
        let too_long = |len| {
            ApiError::UriTooLong(format!(
                "`{name}` is {len} bytes; the limit is {max_bytes} bytes"
            ))
        };
        if value.len() > max_bytes.saturating_mul(3) {
            return Err(too_long(value.len()));
        }
        let value = decode(value, name)?.into_owned();
        if value.len() > max_bytes {
            return Err(too_long(value.len()));
        }
        found = Some(value);
    }
    Ok(found)
}

fn decode<'a>(raw: &'a str, what: &str) -> Result<Cow<'a, str>, ApiError> {
    let spaced: Cow<'a, str> = if raw.contains('+') {
        Cow::Owned(raw.replace('+', " "))
    } else {
        Cow::Borrowed(raw)
    };
    let decoded = percent_decode_str(&spaced).decode_utf8().map_err(|_| {
        ApiError::BadRequest(format!("{what} is not valid UTF-8 once percent-decoded"))
    })?;
    Ok(Cow::Owned(decoded.into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(query: &str) -> Result<String, ApiError> {
        single_param(query, "param", 16)
    }

    #[test]
    fn a_query_value_is_percent_and_plus_decoded() {
        assert_eq!(param("param=HeLLo").unwrap(), "HeLLo");
        assert_eq!(param("x=1&param=a+b%20c%0A").unwrap(), "a b c\n");
        assert_eq!(param("param=%CE%A3").unwrap(), "Σ");
        assert_eq!(param("param=").unwrap(), "");
        assert_eq!(param("param").unwrap(), "");
    }

    #[test]
    fn missing_repeated_invalid_and_long_values_are_rejected() {
        assert!(matches!(param(""), Err(ApiError::BadRequest(_))));
        assert!(matches!(param("other=1"), Err(ApiError::BadRequest(_))));
        assert!(matches!(
            param("param=a&param=b"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(param("param=%FF"), Err(ApiError::BadRequest(_))));
        assert!(matches!(
            param(&format!("param={}", "a".repeat(17))),
            Err(ApiError::UriTooLong(_))
        ));
        assert!(matches!(
            param(&format!("param={}", "%41".repeat(17))),
            Err(ApiError::UriTooLong(_))
        ));
        assert_eq!(
            param(&format!("param={}", "%41".repeat(16))).unwrap(),
            "A".repeat(16)
        );
    }
}
