//! `POST /signatures` and `GET /signatures/{id}` (design §3): checks the request, records it,
//! announces it, hands the check to a verifier, and answers at once (202) or, with `?wait=`,
//! when the verdict is in.

use crate::error::ApiError;
use crate::journal::Accepted;
use crate::query;
use crate::results::{Request, State};
use crate::state::SharedState;
use crate::verification::{Job, Snapshot};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State as AppStateOf};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use wire::{Event, SignatureRequested};

/// The request body. Unknown fields are ignored.
#[derive(Deserialize)]
struct SignatureRequest {
    /// The signed document as UTF-8 text.
    text: Option<String>,
    /// Or the signed document as base64, for binary documents.
    data_base64: Option<String>,
    /// Hex signature (`openssl dgst -sha256 -sign key.pem | xxd -p`).
    #[serde(alias = "hexSignature")]
    signature: Option<String>,
    /// Key id; may be left out when exactly one key exists.
    key: Option<String>,
}

/// A request's state as the API shows it (`GET /signatures/{id}`).
#[derive(Serialize)]
pub struct SignatureReply {
    id: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verified_by: Option<String>,
    key: String,
}

impl SignatureReply {
    fn new(request: &Request) -> Self {
        Self::of(request.id(), request.key(), request.state())
    }

    fn of(id: &str, key: &str, state: State) -> Self {
        let (status, reason, verified_by) = match state {
            State::Pending => ("pending", None, None),
            State::Done {
                status,
                reason,
                verified_by,
            } => (status.as_str(), reason, verified_by),
        };
        SignatureReply {
            id: id.to_owned(),
            status,
            reason,
            verified_by,
            key: key.to_owned(),
        }
    }
}

/// `POST /signatures[?wait=<duration>]`
pub async fn submit(
    AppStateOf(app): AppStateOf<SharedState>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let wait = query::wait(query.as_deref().unwrap_or(""), app.max_wait)?;
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(format!(
            "the body is over the limit of {} bytes",
            app.max_body_bytes
        )),
        _ => ApiError::BadRequest(format!("cannot read the body: {rejection}")),
    })?;
    let request: SignatureRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    let present = app.verification.present();
    let (key, document, signature) = check(request, &present)?;

    let id = app.ids.new_id();
    let request = app
        .results
        .insert(&id, key)
        .map_err(|full| ApiError::unavailable(full.to_string()))?;
    let sha256 = wire::sha256(&document);
    let requested = SignatureRequested {
        id,
        key: request.key().to_owned(),
        text_sha256: hex::encode(&sha256),
        text_len: document.len() as u64,
    };
    let accepted = Accepted {
        sha256: sha256.clone(),
        signature: signature.clone(),
    };
    if let Err(e) = app
        .events
        .publish_accepted(Event::SignatureRequested(requested), accepted)
        .await
    {
        // Not acknowledged: the request ends here rather than wait for a verdict no one will
        // ask for.
        request.finish(State::Done {
            status: wire::SignatureStatus::Error,
            reason: Some(e.to_string()),
            verified_by: None,
        });
        return Err(e.into());
    }
    let job = Job {
        request: request.clone(),
        sha256,
        signature,
    };
    if let Err(e) = app.verification.submit(job) {
        request.finish(State::Done {
            status: wire::SignatureStatus::Error,
            reason: Some(e.to_string()),
            verified_by: None,
        });
        return Err(ApiError::unavailable(e.to_string()));
    }

    if let Some(wait) = wait {
        let mut state = request.watch();
        let _ = tokio::time::timeout(wait, state.wait_for(|s| *s != State::Pending)).await;
        if !request.is_pending() {
            return Ok(Json(SignatureReply::new(&request)).into_response());
        }
    }
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/signatures/{}", request.id())) {
        headers.insert(header::LOCATION, location);
    }
    Ok((
        StatusCode::ACCEPTED,
        headers,
        Json(SignatureReply::new(&request)),
    )
        .into_response())
}

/// `GET /signatures/{id}`: this publisher's own request, else a peer's as its events told
/// (waiting up to `PEER_WAIT` for the event of an id that names a followed peer).
pub async fn status(
    AppStateOf(app): AppStateOf<SharedState>,
    Path(id): Path<String>,
) -> Result<Json<SignatureReply>, ApiError> {
    if let Some(request) = app.results.get(&id) {
        return Ok(Json(SignatureReply::new(&request)));
    }
    let peer = app.peers.find(&id, app.peer_wait).await.ok_or_else(|| {
        ApiError::NotFound(format!("no signature request {id:?} (unknown or expired)"))
    })?;
    ::metrics::counter!("peer_lookups_answered_total").increment(1);
    Ok(Json(SignatureReply::of(&id, &peer.key, peer.state)))
}

/// Validates a request against the keys the verifiers hold.
fn check(
    request: SignatureRequest,
    present: &Snapshot,
) -> Result<(String, Vec<u8>, Vec<u8>), ApiError> {
    let document = match (request.text, request.data_base64) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| ApiError::BadRequest(format!("`data_base64` is not valid base64: {e}")))?,
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give `text` or `data_base64`, not both".into(),
            ));
        }
        (None, None) => {
            return Err(ApiError::BadRequest(
                "missing field `text` (or `data_base64`)".into(),
            ));
        }
    };
    let hex_signature = request
        .signature
        .ok_or_else(|| ApiError::BadRequest("missing field `signature` (hex)".into()))?;
    let hex_signature = hex_signature.trim();
    if hex_signature.len() % 2 == 1 {
        return Err(ApiError::BadRequest(format!(
            "`signature` has an odd number of hex digits ({})",
            hex_signature.len()
        )));
    }
    // Into a buffer of the right size at once: `hex::decode` collects byte by byte through an
    // iterator of results (1.3 % of the publisher's CPU under `bench/signatures.py`).
    let mut signature = vec![0; hex_signature.len() / 2];
    hex::decode_to_slice(hex_signature, &mut signature)
        .map_err(|e| ApiError::BadRequest(format!("`signature` is not hex: {e}")))?;
    if present.verifiers == 0 {
        return Err(ApiError::unavailable(
            "no verifier is available; retry shortly",
        ));
    }
    let key = match request.key {
        Some(key) => key,
        None if present.keys.len() == 1 => present.keys.keys().next().cloned().unwrap_or_default(),
        None => {
            return Err(ApiError::BadRequest(format!(
                "missing field `key`: {} keys are loaded, name one",
                present.keys.len()
            )));
        }
    };
    let Some(&modulus_len) = present.keys.get(&key) else {
        return Err(ApiError::BadRequest(format!("unknown key {key:?}")));
    };
    if signature.len() != modulus_len as usize {
        return Err(ApiError::BadRequest(format!(
            "`signature` is {} bytes; key {key:?} makes {modulus_len}-byte signatures",
            signature.len()
        )));
    }
    Ok((key, document, signature))
}
