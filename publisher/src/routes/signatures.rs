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
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use wire::{Event, SignatureRequested};

/// The request body, borrowing its strings from the body where no escape changed them.
/// Unknown fields are ignored.
#[derive(Deserialize)]
struct SignatureRequest<'a> {
    /// The signed document as UTF-8 text.
    #[serde(borrow)]
    text: Option<Text<'a>>,
    /// Or the signed document as base64, for binary documents.
    #[serde(borrow)]
    data_base64: Option<Text<'a>>,
    /// Hex signature (`openssl dgst -sha256 -sign key.pem | xxd -p`).
    #[serde(borrow, alias = "hexSignature")]
    signature: Option<Text<'a>>,
    /// Key id; may be left out when exactly one key exists.
    #[serde(borrow)]
    key: Option<Text<'a>>,
}

/// A string field, borrowed from the body unless an escape in it makes a copy necessary
/// (serde's own `Option<Cow<str>>` always copies).
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<'a>(PhantomData<Text<'a>>);
        impl<'de: 'a, 'a> Visitor<'de> for Visit<'a> {
            type Value = Text<'a>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                // As for a `String`, so that errors read the same.
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }

            fn visit_string<E: de::Error>(self, text: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(Visit(PhantomData))
    }
}

/// A request's state as the API shows it (`GET /signatures/{id}`), borrowed from the record
/// for as long as it takes to serialise it.
#[derive(Serialize)]
pub struct SignatureReply<'a> {
    id: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verified_by: Option<&'a str>,
    key: &'a str,
}

impl<'a> SignatureReply<'a> {
    fn new(request: &'a Request) -> Self {
        Self::of(request.id(), request.key(), request.state_now())
    }

    fn of(id: &'a str, key: &'a str, state: &'a State) -> Self {
        let (status, reason, verified_by) = match state {
            State::Pending => ("pending", None, None),
            State::Done {
                status,
                reason,
                verified_by,
            } => (status.as_str(), reason.as_deref(), verified_by.as_deref()),
        };
        SignatureReply {
            id,
            status,
            reason,
            verified_by,
            key,
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
    let Checked {
        key,
        document,
        signature,
    } = check(request, &present)?;

    let id = app.ids.new_id();
    let request = app
        .results
        .insert(&id, key)
        .map_err(|full| ApiError::unavailable(full.to_string()))?;
    let sha256 = wire::sha256(&document);
    let requested = SignatureRequested {
        id,
        key: request.key().to_owned(),
        text_sha256: lower_hex(&sha256),
        text_len: document.len() as u64,
    };
    let accepted = Accepted { sha256, signature };
    if let Err(e) = app
        .events
        .publish_accepted(Event::SignatureRequested(requested), &accepted)
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
    let Accepted { sha256, signature } = accepted;
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
        let _ = tokio::time::timeout(wait, request.ended()).await;
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
) -> Result<Response, ApiError> {
    if let Some(request) = app.results.get(&id) {
        return Ok(Json(SignatureReply::new(&request)).into_response());
    }
    let peer = app.peers.find(&id, app.peer_wait).await.ok_or_else(|| {
        ApiError::NotFound(format!("no signature request {id:?} (unknown or expired)"))
    })?;
    ::metrics::counter!("peer_lookups_answered_total").increment(1);
    Ok(Json(SignatureReply::of(&id, &peer.key, &peer.state)).into_response())
}

/// Hex digits (either case) into `out`, half as long; false when one is not a digit. A table
/// and no branch per digit: `hex::decode_to_slice` branches on each, which random digits
/// mispredict (0.6 µs for a 2048-bit signature).
fn decode_hex(digits: &[u8], out: &mut [u8]) -> bool {
    const NOT_A_DIGIT: u8 = 0x10;
    static NIBBLES: [u8; 256] = {
        let mut table = [NOT_A_DIGIT; 256];
        let mut c = 0;
        while c < 256 {
            table[c] = match c as u8 {
                b @ b'0'..=b'9' => b - b'0',
                b @ b'a'..=b'f' => b - b'a' + 10,
                b @ b'A'..=b'F' => b - b'A' + 10,
                _ => NOT_A_DIGIT,
            };
            c += 1;
        }
        table
    };
    let mut seen = 0;
    for (pair, byte) in digits.chunks_exact(2).zip(out.iter_mut()) {
        let (high, low) = (NIBBLES[usize::from(pair[0])], NIBBLES[usize::from(pair[1])]);
        seen |= high | low;
        *byte = high << 4 | low;
    }
    digits.len() == out.len() * 2 && seen & NOT_A_DIGIT == 0
}

/// `bytes` in lower-case hex, as `hex::encode` writes it without its per-character iterator.
fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    text
}

/// Validates a request against the keys the verifiers hold.
/// The document is borrowed from the body when it came as text without escapes.
fn check<'a>(request: SignatureRequest<'a>, present: &Snapshot) -> Result<Checked<'a>, ApiError> {
    let document = match (request.text, request.data_base64) {
        (Some(Text(Cow::Borrowed(text))), None) => Cow::Borrowed(text.as_bytes()),
        (Some(Text(Cow::Owned(text))), None) => Cow::Owned(text.into_bytes()),
        (None, Some(b64)) => Cow::Owned(
            base64::engine::general_purpose::STANDARD
                .decode(b64.0.trim())
                .map_err(|e| {
                    ApiError::BadRequest(format!("`data_base64` is not valid base64: {e}"))
                })?,
        ),
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
    let hex_signature = hex_signature.0.trim();
    if hex_signature.len() % 2 == 1 {
        return Err(ApiError::BadRequest(format!(
            "`signature` has an odd number of hex digits ({})",
            hex_signature.len()
        )));
    }
    // Into a buffer of the right size at once: `hex::decode` collects byte by byte through an
    // iterator of results (1.3 % of the publisher's CPU under `bench/signatures.py`).
    let mut signature = vec![0; hex_signature.len() / 2];
    if !decode_hex(hex_signature.as_bytes(), &mut signature) {
        // `hex` names the first character that is not a digit.
        hex::decode_to_slice(hex_signature, &mut signature)
            .map_err(|e| ApiError::BadRequest(format!("`signature` is not hex: {e}")))?;
    }
    if present.verifiers == 0 {
        return Err(ApiError::unavailable(
            "no verifier is available; retry shortly",
        ));
    }
    let key = match request.key {
        Some(key) => key.0.into_owned(),
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
    Ok(Checked {
        key,
        document,
        signature,
    })
}

/// A request that passed [`check`].
struct Checked<'a> {
    /// The key id, known to the verifiers.
    key: String,
    /// The signed document.
    document: Cow<'a, [u8]>,
    /// The signature, as long as the key's.
    signature: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_key() -> Snapshot {
        Snapshot {
            verifiers: 1,
            keys: [("demo".to_owned(), 2)].into(),
        }
    }

    #[test]
    fn a_plain_text_is_borrowed_from_the_body_and_an_escaped_one_unescaped() {
        let plain = br#"{"text": "doc", "signature": "0aFf"}"#;
        let escaped = br#"{"text": "a\"b\n\u00e9", "hexSignature": " 0aff ", "key": "demo"}"#;

        let plain = check(serde_json::from_slice(plain).unwrap(), &one_key()).unwrap();
        let escaped = check(serde_json::from_slice(escaped).unwrap(), &one_key()).unwrap();

        assert_eq!(
            (plain.key.as_str(), plain.signature),
            ("demo", vec![0x0a, 0xff])
        );
        assert!(matches!(plain.document, Cow::Borrowed(b"doc")));
        assert_eq!(&*escaped.document, "a\"b\né".as_bytes());
        assert_eq!(escaped.signature, vec![0x0a, 0xff]);
    }

    #[test]
    fn hex_encodes_as_the_hex_crate_encodes() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(lower_hex(&bytes), hex::encode(&bytes));
        assert_eq!(lower_hex(&[]), "");
    }

    #[test]
    fn hex_decodes_as_the_hex_crate_decodes() {
        let mut digits: Vec<u8> = (0..=255u8)
            .flat_map(|b| hex::encode([b]).into_bytes())
            .collect();
        let mut decoded = vec![0; digits.len() / 2];
        assert!(decode_hex(&digits, &mut decoded));
        assert_eq!(decoded, (0..=255u8).collect::<Vec<_>>());
        digits.make_ascii_uppercase();
        assert!(decode_hex(&digits, &mut decoded));
        assert_eq!(decoded, (0..=255u8).collect::<Vec<_>>());
        for c in 0..=255u8 {
            let mut out = [0; 1];
            let ours = decode_hex(&[b'0', c], &mut out);
            let theirs = hex::decode_to_slice([b'0', c], &mut [0; 1]).is_ok();
            assert_eq!(ours, theirs, "{c:#x}");
            assert_eq!(decode_hex(&[c, b'0'], &mut out), theirs, "{c:#x}");
        }
    }

    #[test]
    fn a_field_of_the_wrong_type_is_reported_as_for_an_owned_string() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Owned {
            text: Option<String>,
            #[serde(alias = "hexSignature")]
            signature: Option<String>,
        }
        for body in [
            r#"{"text": 5}"#,
            r#"{"text": ["a"]}"#,
            r#"{"hexSignature": null, "signature": {}}"#,
            r#"{"text": "a", "text": "b"}"#,
            r#"{"text": "\ud800"}"#,
        ] {
            let owned = serde_json::from_str::<Owned>(body).unwrap_err().to_string();
            let borrowed = serde_json::from_str::<SignatureRequest>(body)
                .err()
                .map(|e| e.to_string());
            assert_eq!(borrowed.as_deref(), Some(owned.as_str()), "{body}");
        }
    }
}
