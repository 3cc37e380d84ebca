//! `GET /keys`: the key ids the verifiers present have loaded, so a client knows which `key`
//! a signature request may name.

use crate::state::SharedState;
use axum::Json;
use axum::extract::State;
use serde::Serialize;

/// `GET /keys` answer.
#[derive(Serialize)]
pub struct KeysReply {
    verifiers: usize,
    keys: Vec<KeyReply>,
}

/// One key.
#[derive(Serialize)]
struct KeyReply {
    id: String,
    signature_bytes: u32,
}

/// `GET /keys`
pub async fn keys(State(app): State<SharedState>) -> Json<KeysReply> {
    let present = app.verification.present();
    let mut keys: Vec<KeyReply> = present
        .keys
        .iter()
        .map(|(id, &len)| KeyReply {
            id: id.clone(),
            signature_bytes: len,
        })
        .collect();
    keys.sort_by(|a, b| a.id.cmp(&b.id));
    Json(KeysReply {
        verifiers: present.verifiers,
        keys,
    })
}
