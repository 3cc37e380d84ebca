//! `GET /downcase?param=HeLLo` (design §3): full Unicode lower-casing, answered once the event
//! is on the publishing path. `HEAD` is refused: it must not publish, and without publishing
//! there is no answer whose headers it could report.

use crate::error::ApiError;
use crate::query::single_param;
use crate::state::SharedState;
use axum::Json;
use axum::extract::{RawQuery, State};
use serde::Serialize;
use wire::{Downcase, Event};

/// `GET /downcase` answer.
#[derive(Serialize)]
pub struct DowncaseReply {
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

/// `GET /downcase` and `GET /downcase/`
pub async fn downcase(
    State(app): State<SharedState>,
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
        .await?;
    Ok(Json(DowncaseReply {
        param,
        result,
        event: EventRef {
            publisher: app.events.identity().id.clone(),
            seq: published.seq,
        },
    }))
}

/// `HEAD /downcase`: 405 with `Allow: GET`. A HEAD request is safe by definition, so it must
/// not publish an event, and a GET's answer cannot be described without publishing one.
pub async fn head() -> ApiError {
    ApiError::MethodNotAllowed { allow: "GET" }
}
