//! The events channel: what the publisher's PUB socket carries to every subscriber — events,
//! and heartbeats while none flow.

use crate::canonical;
use crate::channel::{Channel, open_direct_or_as};
use crate::envelope::Envelope;
use crate::error::DecodeError;
use crate::event::Event;
use serde::{Deserialize, Serialize};

/// The topic of a publisher's heartbeat.
pub const HEARTBEAT_TOPIC: &str = "heartbeat";

/// A message on the events channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Broadcast {
    /// An event, to be logged.
    Event(Event),
    /// The publisher is alive; never logged, it only reveals events that did not arrive.
    Heartbeat(Heartbeat),
}

/// The publisher is alive and its last event so far had this number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Sequence number of the last event published in this epoch (0 before the first).
    pub last_seq: u64,
    /// Whether the publisher serves replay (design §6): a subscriber asks it for what it
    /// missed only then. Absent (false) from publishers that do not.
    #[serde(default)]
    pub replay: bool,
}

impl Channel for Broadcast {
    const NAME: &'static str = "events";

    fn topic(&self) -> &'static str {
        match self {
            Broadcast::Event(event) => event.topic(),
            Broadcast::Heartbeat(_) => HEARTBEAT_TOPIC,
        }
    }

    fn open(topic: &str, packed: &[u8]) -> Result<Envelope<Self>, DecodeError> {
        match topic {
            HEARTBEAT_TOPIC => {
                open_direct_or_as(packed, canonical::heartbeat, Broadcast::Heartbeat)
            }
            _ => Event::open(topic, packed).map(|e| e.map(Broadcast::Event)),
        }
    }
}
