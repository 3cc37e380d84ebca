//! Topics and the body that travels under each.

use serde::{Deserialize, Serialize};

/// Topic names (frame 1). Dot-separated, so a SUB prefix filter selects a subtree.
pub mod topic {
    /// A `/downcase` request was answered.
    pub const DOWNCASE: &str = "downcase";
    /// A signature verification was accepted.
    pub const SIGNATURE_REQUESTED: &str = "signature.requested";
    /// A signature was checked and found valid.
    pub const SIGNATURE_VERIFIED: &str = "signature.verified";
    /// A signature was checked and found invalid, or could not be checked (`status` says which).
    pub const SIGNATURE_FAILED: &str = "signature.failed";
    /// The publisher is alive; carries its last event's sequence number.
    pub const HEARTBEAT: &str = "heartbeat";
    /// Publisher → verifier: a signature to check.
    pub const VERIFY_TASK: &str = "task.verify";
    /// Verifier → publisher: the verdict on a task.
    pub const VERIFY_RESULT: &str = "result.verify";
    /// Verifier → publisher: the verifier is alive, with the keys it holds.
    pub const VERIFIER_HEARTBEAT: &str = "verifier.heartbeat";
}

/// Every body the protocol knows, one variant per topic.
///
/// Serialised as the bare inner struct: the topic frame, not a tag in the body, says which.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Body {
    /// [`topic::DOWNCASE`]
    Downcase(Downcase),
    /// [`topic::SIGNATURE_REQUESTED`]
    SignatureRequested(SignatureRequested),
    /// [`topic::SIGNATURE_VERIFIED`] or [`topic::SIGNATURE_FAILED`], by its status.
    SignatureOutcome(SignatureOutcome),
    /// [`topic::HEARTBEAT`]
    Heartbeat(Heartbeat),
    /// [`topic::VERIFY_TASK`]
    VerifyTask(VerifyTask),
    /// [`topic::VERIFY_RESULT`]
    VerifyResult(VerifyResult),
    /// [`topic::VERIFIER_HEARTBEAT`]
    VerifierHeartbeat(VerifierHeartbeat),
}

impl Body {
    /// The topic this body travels under.
    pub fn topic(&self) -> &'static str {
        match self {
            Body::Downcase(_) => topic::DOWNCASE,
            Body::SignatureRequested(_) => topic::SIGNATURE_REQUESTED,
            Body::SignatureOutcome(o) if o.status == SignatureStatus::Valid => {
                topic::SIGNATURE_VERIFIED
            }
            Body::SignatureOutcome(_) => topic::SIGNATURE_FAILED,
            Body::Heartbeat(_) => topic::HEARTBEAT,
            Body::VerifyTask(_) => topic::VERIFY_TASK,
            Body::VerifyResult(_) => topic::VERIFY_RESULT,
            Body::VerifierHeartbeat(_) => topic::VERIFIER_HEARTBEAT,
        }
    }
}

/// A lower-cased parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Downcase {
    /// The parameter as received.
    pub param: String,
    /// Its full-Unicode lower-case form.
    pub result: String,
}

/// A signature verification was accepted; the text itself never travels in an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureRequested {
    /// The request id, as in `/signatures/{id}`.
    pub id: String,
    /// The key id the signature is checked against.
    pub key: String,
    /// Hex SHA-256 of the signed document.
    pub text_sha256: String,
    /// Length of the signed document in bytes.
    pub text_len: u64,
}

/// Final state of a signature request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureStatus {
    /// The signature matches the document and key.
    Valid,
    /// The signature does not match.
    Invalid,
    /// The signature could not be checked (no verifier answered in time, unknown key, …).
    Error,
}

impl SignatureStatus {
    /// The lower-case name used in the API and the log.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureStatus::Valid => "valid",
            SignatureStatus::Invalid => "invalid",
            SignatureStatus::Error => "error",
        }
    }
}

/// How a signature request ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureOutcome {
    /// The request id.
    pub id: String,
    /// The key id.
    pub key: String,
    /// The verdict.
    pub status: SignatureStatus,
    /// Why, for `invalid` and `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The verifier that gave the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_by: Option<String>,
    /// How many times the task was sent.
    pub attempts: u32,
}

/// The publisher is alive and its last event so far had this number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Sequence number of the last event published in this epoch (0 before the first).
    pub last_seq: u64,
}

/// A signature to check, sent to one verifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyTask {
    /// Unique per publisher epoch; results are matched (and deduplicated) by it.
    pub task_id: u64,
    /// Key id to verify against.
    pub key: String,
    /// The signed document.
    #[serde(with = "serde_bytes")]
    pub document: Vec<u8>,
    /// The RSASSA-PKCS1-v1_5 / SHA-256 signature.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    /// 1 for the first send, +1 for each re-send.
    pub attempt: u32,
}

/// A verifier's verdict on one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyResult {
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
