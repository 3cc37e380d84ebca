//! The replay channel (design §6, the zguide's Clone pattern): a subscriber's DEALER asks the
//! publisher's ROUTER for the events of one epoch after the last number it has; the publisher
//! answers from its window of recent events, a chunk at a time, each chunk closed by an end
//! marker that says where the window stands.

use crate::channel::{Channel, not_on, open_as};
use crate::envelope::Envelope;
use crate::error::DecodeError;
use crate::event::Event;
use serde::{Deserialize, Serialize};

/// The topic of a replay request.
pub const REPLAY_REQUEST_TOPIC: &str = "replay.request";
/// The topic of the marker that closes each chunk of a replay answer.
pub const REPLAY_END_TOPIC: &str = "replay.end";

/// Subscriber → publisher: "send me the events of `epoch` after `after`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayRequest {
    /// The publisher epoch the asker follows.
    pub epoch: u64,
    /// The last sequence number the asker has (0: none yet).
    pub after: u64,
    /// At most this many events in the answer; the asker asks again for the next chunk.
    pub max_events: u32,
    /// Only events whose topic starts with one of these (none: every topic).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
}

impl Channel for ReplayRequest {
    const NAME: &'static str = "replay requests";

    fn topic(&self) -> &'static str {
        REPLAY_REQUEST_TOPIC
    }

    fn open(topic: &str, packed: &[u8]) -> Result<Envelope<Self>, DecodeError> {
        match topic {
            REPLAY_REQUEST_TOPIC => open_as(packed, |request| request),
            other => Err(not_on::<Self>(other)),
        }
    }
}

/// Publisher → subscriber: one message of a replay answer. Replayed events travel exactly as
/// they were published (same envelope, same tag); the end marker closes the chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Replayed {
    /// An event from the window.
    Event(Event),
    /// The chunk is over.
    End(ReplayEnd),
}

/// Where a replay chunk ended and what the window holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayEnd {
    /// The epoch the publisher is in now. Not the one asked for: that epoch has ended (the
    /// publisher restarted) and nothing of it can be replayed.
    pub epoch: u64,
    /// The epoch the request named, so an answer is matched to its request.
    pub asked_epoch: u64,
    /// The request's `after`.
    pub asked_after: u64,
    /// The last sequence number this chunk covered (events filtered out by topic included);
    /// the next request asks after it. Equal to `asked_after` when nothing was sent.
    pub last: u64,
    /// The oldest number the window still holds (0: it holds nothing). Numbers after
    /// `asked_after` and before it have left the window: they are lost to the asker.
    pub oldest: u64,
    /// The newest number the publisher has published in `epoch`.
    pub newest: u64,
}

impl Channel for Replayed {
    const NAME: &'static str = "replay answers";

    fn topic(&self) -> &'static str {
        match self {
            Replayed::Event(event) => event.topic(),
            Replayed::End(_) => REPLAY_END_TOPIC,
        }
    }

    fn open(topic: &str, packed: &[u8]) -> Result<Envelope<Self>, DecodeError> {
        match topic {
            REPLAY_END_TOPIC => open_as(packed, Replayed::End),
            _ => match Event::open(topic, packed) {
                Ok(event) => Ok(event.map(Replayed::Event)),
                Err(DecodeError::WrongChannel { .. }) => Err(not_on::<Self>(topic)),
                Err(other) => Err(other),
            },
        }
    }
}
