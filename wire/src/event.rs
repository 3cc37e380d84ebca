//! Events: what the publisher announces and subscribers log, one kind per outcome.

use crate::canonical;
use crate::channel::{Channel, not_on, open_as, open_direct_or_as};
use crate::envelope::Envelope;
use crate::error::DecodeError;
use serde::{Deserialize, Serialize};

/// Topics of events. Dot-separated, so a SUB prefix filter selects a subtree.
pub mod topic {
    /// A `/downcase` request was answered.
    pub const DOWNCASE: &str = "downcase";
    /// A signature verification was accepted.
    pub const SIGNATURE_REQUESTED: &str = "signature.requested";
    /// A signature was checked and found valid.
    pub const SIGNATURE_VERIFIED: &str = "signature.verified";
    /// A signature was checked and found invalid, or could not be checked (`status` says which).
    pub const SIGNATURE_FAILED: &str = "signature.failed";
}

/// An outcome the publisher announces; every event is one line of `subscriber.log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Event {
    /// [`topic::DOWNCASE`]
    Downcase(Downcase),
    /// [`topic::SIGNATURE_REQUESTED`]
    SignatureRequested(SignatureRequested),
    /// [`topic::SIGNATURE_VERIFIED`] or [`topic::SIGNATURE_FAILED`], by its status.
    SignatureOutcome(SignatureOutcome),
}

impl Channel for Event {
    const NAME: &'static str = "events";

    fn topic(&self) -> &'static str {
        match self {
            Event::Downcase(_) => topic::DOWNCASE,
            Event::SignatureRequested(_) => topic::SIGNATURE_REQUESTED,
            Event::SignatureOutcome(o) if o.status == SignatureStatus::Valid => {
                topic::SIGNATURE_VERIFIED
            }
            Event::SignatureOutcome(_) => topic::SIGNATURE_FAILED,
        }
    }

    fn open(topic: &str, packed: &[u8]) -> Result<Envelope<Self>, DecodeError> {
        match topic {
            topic::DOWNCASE => open_direct_or_as(packed, canonical::downcase, Event::Downcase),
            topic::SIGNATURE_REQUESTED => open_direct_or_as(
                packed,
                canonical::signature_requested,
                Event::SignatureRequested,
            ),
            topic::SIGNATURE_VERIFIED | topic::SIGNATURE_FAILED => {
                let envelope = open_as(packed, Event::SignatureOutcome)?;
                // The status decides the topic: a `valid` outcome under `signature.failed`
                // would be filtered as one thing and logged as another.
                match envelope.body.topic() {
                    own if own == topic => Ok(envelope),
                    own => Err(DecodeError::TopicMismatch {
                        topic: topic.to_owned(),
                        body: own,
                    }),
                }
            }
            other => Err(not_on::<Self>(other)),
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
