//! The wire protocol every process speaks (design contract §4).
//!
//! A ZMQ message is multipart: the topic, a MessagePack [`Envelope`] with named fields, and —
//! when a shared key is configured — an HMAC-SHA-256 tag over both. The same envelope and
//! [`Codec`] serve every [`Channel`], each with its own message type: [`Broadcast`] (events and
//! heartbeats, publisher → subscribers), [`VerifyTask`] (publisher → verifiers) and [`Reply`]
//! (verdicts and heartbeats, verifiers → publisher), [`ReplayRequest`] and [`Replayed`] (a
//! subscriber catching up from the publisher's window).

mod broadcast;
mod canonical;
mod channel;
mod codec;
mod envelope;
mod error;
mod event;
mod replay;
mod reply;
mod shared_key;
mod task;

pub use broadcast::{Broadcast, HEARTBEAT_TOPIC, Heartbeat};
pub use channel::Channel;
pub use codec::Codec;
pub use envelope::{Envelope, Origin, PROTOCOL_VERSION, now_ms};
pub use error::DecodeError;
pub use event::{Downcase, Event, SignatureOutcome, SignatureRequested, SignatureStatus, topic};
pub use replay::{REPLAY_END_TOPIC, REPLAY_REQUEST_TOPIC, ReplayEnd, ReplayRequest, Replayed};
pub use reply::{
    KeyInfo, Reply, VERDICT_TOPIC, VERIFIER_HEARTBEAT_TOPIC, Verdict, VerifierHeartbeat,
};
pub use shared_key::{MIN_SHARED_KEY_LEN, SharedKey, SharedKeyError};
pub use task::{VERIFY_TASK_TOPIC, VerifyTask, sha256};
