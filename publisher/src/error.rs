//! The API's error type: each variant is a status and a sentence for the client; internal
//! causes go to the log, never into a response.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Everything a handler can answer instead of a result.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The client's request is malformed or incomplete (400).
    #[error("{0}")]
    BadRequest(String),
    /// A query value is over its limit (414).
    #[error("{0}")]
    UriTooLong(String),
    /// The body is over its limit (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// No such route or resource (404).
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not for this method (405).
    #[error("method not allowed; this resource accepts {allow}")]
    MethodNotAllowed {
        /// The methods the route does accept.
        allow: &'static str,
    },
    /// The service is stopping or cannot take the work now (503).
    #[error("{reason}")]
    Unavailable {
        /// What the client is told.
        reason: String,
        /// Seconds after which a retry makes sense.
        retry_after_secs: u32,
    },
}

impl ApiError {
    /// The service cannot take the work now (503 with `Retry-After: 1`): it is stopping, no
    /// verifier is there, or a queue is full. `reason` is what the client is told.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        ApiError::Unavailable {
            reason: reason.into(),
            retry_after_secs: 1,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::MethodNotAllowed { allow } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::Unavailable {
                retry_after_secs, ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            _ => {}
        }
        response
    }
}
