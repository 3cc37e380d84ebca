//! The tasks channel: signatures the publisher's PUSH socket hands to verifiers.

use crate::channel::{Channel, not_on, open_as};
use crate::envelope::Envelope;
use crate::error::DecodeError;
use serde::{Deserialize, Serialize};

/// The topic of a verification task.
pub const VERIFY_TASK_TOPIC: &str = "task.verify";

/// A signature to check, sent to one verifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyTask {
    /// Unique per publisher epoch; verdicts are matched (and deduplicated) by it.
    pub task_id: u64,
    /// Key id to verify against.
    pub key: String,
    /// SHA-256 of the signed document: the document itself never travels to a verifier (it
    /// can be a megabyte; its digest is what RSASSA-PKCS1-v1_5 signs), and the publisher's
    /// journal keeps only the digest of an accepted request.
    #[serde(with = "serde_bytes")]
    pub sha256: Vec<u8>,
    /// The RSASSA-PKCS1-v1_5 / SHA-256 signature.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    /// 1 for the first send, +1 for each re-send.
    pub attempt: u32,
}

/// The SHA-256 digest of `document`, as a task carries it.
pub fn sha256(document: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(document).to_vec()
}

impl Channel for VerifyTask {
    const NAME: &'static str = "tasks";

    fn topic(&self) -> &'static str {
        VERIFY_TASK_TOPIC
    }

    fn open(topic: &str, packed: &[u8]) -> Result<Envelope<Self>, DecodeError> {
        match topic {
            VERIFY_TASK_TOPIC => open_as(packed, |task| task),
            other => Err(not_on::<Self>(other)),
        }
    }
}
