//! The replies channel: what verifiers push back to the publisher — verdicts, and heartbeats
//! that announce the verifier and its keys.

use crate::channel::{Channel, not_on, open_as};
use crate::envelope::Envelope;
use crate::error::DecodeError;
use crate::event::SignatureStatus;
use serde::{Deserialize, Serialize};

/// The topic of a verdict.
pub const VERDICT_TOPIC: &str = "result.verify";
/// The topic of a verifier's heartbeat.
pub const VERIFIER_HEARTBEAT_TOPIC: &str = "verifier.heartbeat";

/// A message on the replies channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Reply {
    /// [`VERDICT_TOPIC`]
    Verdict(Verdict),
    /// [`VERIFIER_HEARTBEAT_TOPIC`]
    Heartbeat(VerifierHeartbeat),
}

impl Channel for Reply {
    const NAME: &'static str = "replies";

    fn topic(&self) -> &'static str {
        match self {
            Reply::Verdict(_) => VERDICT_TOPIC,
            Reply::Heartbeat(_) => VERIFIER_HEARTBEAT_TOPIC,
        }
    }

    fn open(topic: &str, packed: &[u8]) -> Result<Envelope<Self>, DecodeError> {
        match topic {
            VERDICT_TOPIC => open_as(packed, Reply::Verdict),
            VERIFIER_HEARTBEAT_TOPIC => open_as(packed, Reply::Heartbeat),
            other => Err(not_on::<Self>(other)),
        }
    }
}

/// A verifier's verdict on one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The task this answers.
    pub task_id: u64,
    /// The verdict; `Error` when the verifier could not check (e.g. it lacks the key).
    pub status: SignatureStatus,
    /// Why, for `invalid` and `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A key a verifier holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Key id: the PEM file's stem.
    pub id: String,
    /// RSA modulus length in bytes, which is also every valid signature's length.
    pub modulus_len: u32,
}

/// A verifier announces itself and its keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifierHeartbeat {
    /// The keys it can verify with.
    pub keys: Vec<KeyInfo>,
    /// Tasks it is checking right now.
    pub in_flight: u32,
}
