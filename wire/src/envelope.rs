//! The envelope around every message body: who sent it, in which epoch, with which number.

use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// The envelope format this build writes and accepts. Fields are named on the wire, so new
/// optional fields can be added without a version change; only an incompatible change bumps it.
pub const PROTOCOL_VERSION: u16 = 1;

/// Header fields shared by every message, with the topic-specific `body`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<B> {
    /// Protocol version ([`PROTOCOL_VERSION`]).
    pub v: u16,
    /// Id of the sending process: the publisher for events and tasks, the verifier for results.
    pub sender: String,
    /// Changes whenever the sender starts afresh; `seq` restarts at 1 in a new epoch.
    pub epoch: u64,
    /// Strictly +1 per sender and epoch for events; heartbeats repeat the last event's number.
    pub seq: u64,
    /// When the message was made, in milliseconds since the Unix epoch (UTC).
    pub ts_ms: u64,
    /// The topic-specific content.
    pub body: B,
}

/// Milliseconds since the Unix epoch, the unit of [`Envelope::ts_ms`].
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
