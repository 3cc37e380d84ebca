//! The wire protocol every process speaks (design contract §4).
//!
//! A ZMQ message is multipart: the topic, a MessagePack [`Envelope`] with named fields, and —
//! when a shared key is configured — an HMAC-SHA-256 tag over both. The same envelope and
//! [`Codec`] carry events (publisher → subscribers), verification tasks (publisher → verifiers)
//! and their results and heartbeats (verifiers → publisher).

mod codec;
mod envelope;
mod message;

pub use codec::{Codec, DecodeError, SharedKey, SharedKeyError};
pub use envelope::{Envelope, PROTOCOL_VERSION, now_ms};
pub use message::{
    Body, Downcase, Heartbeat, KeyInfo, SignatureOutcome, SignatureRequested, SignatureStatus,
    VerifierHeartbeat, VerifyResult, VerifyTask, topic,
};
