//! The envelope around every message: who sent it, in which epoch, with which number.

use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// The envelope format this build writes and accepts. Fields are named on the wire, so new
/// optional fields can be added without a version change; only an incompatible change bumps it.
pub const PROTOCOL_VERSION: u16 = 1;

/// Header fields shared by every message, with the channel-specific `body`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<B> {
    /// Protocol version ([`PROTOCOL_VERSION`]).
    pub v: u16,
    /// Id of the sending process: the publisher for events and tasks, the verifier for replies.
    pub sender: String,
    /// Changes whenever the sender starts afresh; `seq` restarts at 1 in a new epoch.
    pub epoch: u64,
    /// Strictly +1 per sender and epoch for events; heartbeats repeat the last event's number.
    pub seq: u64,
    /// When the message was made, in milliseconds since the Unix epoch (UTC).
    pub ts_ms: u64,
    /// The channel-specific content.
    pub body: B,
}

impl<B> Envelope<B> {
    /// The same header around another body (an event wrapped into its channel's type, say).
    pub fn map<C>(self, wrap: impl FnOnce(B) -> C) -> Envelope<C> {
        let (header, body) = self.into_parts();
        header.with(wrap(body))
    }

    /// The header apart from the body, so each can be handled on its own.
    pub fn into_parts(self) -> (Envelope<()>, B) {
        let Envelope {
            v,
            sender,
            epoch,
            seq,
            ts_ms,
            body,
        } = self;
        let header = Envelope {
            v,
            sender,
            epoch,
            seq,
            ts_ms,
            body: (),
        };
        (header, body)
    }
}

impl Envelope<()> {
    /// This header around `body`.
    pub fn with<B>(self, body: B) -> Envelope<B> {
        Envelope {
            v: self.v,
            sender: self.sender,
            epoch: self.epoch,
            seq: self.seq,
            ts_ms: self.ts_ms,
            body,
        }
    }
}

/// Who sends: a process's id and the epoch of its current run. Every envelope a process makes
/// comes from its origin, so the header is filled in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The process id (`PUBLISHER_ID`, `VERIFIER_ID`).
    pub id: String,
    /// This run's epoch: its start time in ms, so a restart is a new epoch.
    pub epoch: u64,
}

impl Origin {
    /// An origin whose epoch is now.
    pub fn starting_now(id: impl Into<String>) -> Self {
        Origin {
            id: id.into(),
            epoch: now_ms(),
        }
    }

    /// The envelope for message number `seq` of this run, stamped now.
    pub fn envelope<B>(&self, seq: u64, body: B) -> Envelope<B> {
        Envelope {
            v: PROTOCOL_VERSION,
            sender: self.id.clone(),
            epoch: self.epoch,
            seq,
            ts_ms: now_ms(),
            body,
        }
    }
}

/// Milliseconds since the Unix epoch, the unit of [`Envelope::ts_ms`].
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
