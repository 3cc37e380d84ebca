//! Reading the envelopes that arrive most — `downcase` and `signature.requested` events and
//! heartbeats — straight from their bytes, when they are laid out exactly as this crate writes
//! them (a fixed map of named fields, in declaration order). serde's generic path reads every
//! field name as a string, checks it is UTF-8 and matches it; here each name is compared as
//! the bytes it must be.
//!
//! Anything else — another order, an unknown or missing field, a wider map header, a string
//! written as binary, a version other than [`PROTOCOL_VERSION`] — gives `None`, and the caller
//! decodes it the generic way, which decides what it is. So a message read here is always
//! read as serde would have read it, and every message serde refuses is refused by serde.

use crate::broadcast::Heartbeat;
use crate::envelope::{Envelope, PROTOCOL_VERSION};
use crate::event::{Downcase, SignatureRequested};

/// An envelope of `body` kind, read by `body` after the header.
fn envelope<B>(packed: &[u8], body: impl FnOnce(&mut Reader) -> Option<B>) -> Option<Envelope<B>> {
    let mut r = Reader { rest: packed };
    r.map(6)?;
    if r.field(b"v", Reader::uint)? != u64::from(PROTOCOL_VERSION) {
        return None;
    }
    let sender = r.field(b"sender", Reader::text)?;
    let epoch = r.field(b"epoch", Reader::uint)?;
    let seq = r.field(b"seq", Reader::uint)?;
    let ts_ms = r.field(b"ts_ms", Reader::uint)?;
    let body = r.field(b"body", body)?;
    Some(Envelope {
        v: PROTOCOL_VERSION,
        sender,
        epoch,
        seq,
        ts_ms,
        body,
    })
}

/// A `downcase` event's envelope.
pub(crate) fn downcase(packed: &[u8]) -> Option<Envelope<Downcase>> {
    envelope(packed, |r| {
        r.map(2)?;
        let param = r.field(b"param", Reader::text)?;
        let result = r.field(b"result", Reader::text)?;
        Some(Downcase { param, result })
    })
}

/// A `signature.requested` event's envelope.
pub(crate) fn signature_requested(packed: &[u8]) -> Option<Envelope<SignatureRequested>> {
    envelope(packed, |r| {
        r.map(4)?;
        let id = r.field(b"id", Reader::text)?;
        let key = r.field(b"key", Reader::text)?;
        let text_sha256 = r.field(b"text_sha256", Reader::text)?;
        let text_len = r.field(b"text_len", Reader::uint)?;
        Some(SignatureRequested {
            id,
            key,
            text_sha256,
            text_len,
        })
    })
}

/// A heartbeat's envelope; `replay` may be absent (false), as serde reads it.
pub(crate) fn heartbeat(packed: &[u8]) -> Option<Envelope<Heartbeat>> {
    envelope(packed, |r| {
        let fields = r.fixmap()?;
        if !(1..=2).contains(&fields) {
            return None;
        }
        let last_seq = r.field(b"last_seq", Reader::uint)?;
        let replay = if fields == 2 {
            r.field(b"replay", Reader::bool)?
        } else {
            false
        };
        Some(Heartbeat { last_seq, replay })
    })
}

/// What is left of the bytes to read.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.rest.split_at_checked(n)?;
        self.rest = rest;
        Some(taken)
    }

    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(first)
    }

    fn be<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// The number of entries of a map of at most 15 (MessagePack's one-byte header).
    fn fixmap(&mut self) -> Option<u8> {
        match self.byte()? {
            marker @ 0x80..=0x8f => Some(marker & 0x0f),
            _ => None,
        }
    }

    /// A map of exactly `fields` entries.
    fn map(&mut self, fields: u8) -> Option<()> {
        (self.fixmap()? == fields).then_some(())
    }

    /// A field name, which must be `name` (ASCII, under 32 bytes: one-byte header).
    fn key(&mut self, name: &[u8]) -> Option<()> {
        let len = match self.byte()? {
            marker @ 0xa0..=0xbf => usize::from(marker & 0x1f),
            _ => return None,
        };
        (self.take(len)? == name).then_some(())
    }

    /// The field `name`'s value, as `read` reads it.
    fn field<T>(&mut self, name: &[u8], read: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        self.key(name)?;
        read(self)
    }

    /// A non-negative integer, in any of MessagePack's widths.
    fn uint(&mut self) -> Option<u64> {
        match self.byte()? {
            fixint @ 0x00..=0x7f => Some(u64::from(fixint)),
            0xcc => self.byte().map(u64::from),
            0xcd => self.be().map(|b| u64::from(u16::from_be_bytes(b))),
            0xce => self.be().map(|b| u64::from(u32::from_be_bytes(b))),
            0xcf => self.be().map(u64::from_be_bytes),
            _ => None,
        }
    }

    fn bool(&mut self) -> Option<bool> {
        match self.byte()? {
            0xc2 => Some(false),
            0xc3 => Some(true),
            _ => None,
        }
    }

    /// A string, which must be UTF-8.
    fn text(&mut self) -> Option<String> {
        let len = match self.byte()? {
            marker @ 0xa0..=0xbf => usize::from(marker & 0x1f),
            0xd9 => usize::from(self.byte()?),
            0xda => usize::from(u16::from_be_bytes(self.be()?)),
            0xdb => usize::try_from(u32::from_be_bytes(self.be()?)).ok()?,
            _ => return None,
        };
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).ok().map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Channel;
    use crate::{Broadcast, Codec, Event, Origin, Replayed};
    use proptest::prelude::*;

    fn origin(id: &str) -> Origin {
        Origin {
            id: id.into(),
            epoch: 1_700_000_000_000,
        }
    }

    /// The topic and envelope of `body` as the codec writes them.
    fn packed(id: &str, seq: u64, body: Broadcast) -> (&'static str, Vec<u8>) {
        let message = Codec::default().encode(&origin(id).envelope(seq, body.clone()));
        let packed = message.get(1).map(|p| p.to_vec()).unwrap_or_default();
        (body.topic(), packed)
    }

    fn bodies(text: &str, n: u64) -> Vec<Broadcast> {
        vec![
            Broadcast::Event(Event::Downcase(Downcase {
                param: text.into(),
                result: text.to_lowercase(),
            })),
            Broadcast::Event(Event::SignatureRequested(SignatureRequested {
                id: text.into(),
                key: "demo".into(),
                text_sha256: "ab".repeat(32),
                text_len: n,
            })),
            Broadcast::Heartbeat(Heartbeat {
                last_seq: n,
                replay: n % 2 == 0,
            }),
        ]
    }

    /// What serde alone reads of `packed` under `topic`.
    fn by_serde(topic: &str, packed: &[u8]) -> Option<Envelope<Broadcast>> {
        match topic {
            crate::HEARTBEAT_TOPIC => crate::channel::open_as(packed, Broadcast::Heartbeat).ok(),
            crate::topic::DOWNCASE => {
                crate::channel::open_as(packed, |d| Broadcast::Event(Event::Downcase(d))).ok()
            }
            _ => {
                crate::channel::open_as(packed, |r| Broadcast::Event(Event::SignatureRequested(r)))
                    .ok()
            }
        }
    }

    /// What this file reads of `packed` under `topic`.
    fn read_here(topic: &str, packed: &[u8]) -> Option<Envelope<Broadcast>> {
        match topic {
            crate::HEARTBEAT_TOPIC => heartbeat(packed).map(|e| e.map(Broadcast::Heartbeat)),
            crate::topic::DOWNCASE => {
                downcase(packed).map(|e| e.map(|d| Broadcast::Event(Event::Downcase(d))))
            }
            _ => signature_requested(packed)
                .map(|e| e.map(|r| Broadcast::Event(Event::SignatureRequested(r)))),
        }
    }

    #[test]
    fn what_the_codec_writes_is_read_here_as_serde_reads_it() {
        for (id, n) in [("p", 0), ("pub-1", 200), ("é🙂", 70_000), ("x", u64::MAX)] {
            let long = "L".repeat(70_000);
            for text in ["", "HeLLo", "ÀÉÎ ΣΑΣ 🙂\n", &"x".repeat(40), &long] {
                for body in bodies(text, n) {
                    let (topic, packed) = packed(id, n, body.clone());
                    let here = read_here(topic, &packed);
                    assert!(here.is_some(), "{topic} {text:?} is read here");
                    assert_eq!(here, by_serde(topic, &packed));
                    assert_eq!(here.map(|e| e.body), Some(body));
                }
            }
        }
    }

    #[test]
    fn a_heartbeat_without_its_replay_field_is_read_as_not_serving_replay() {
        #[derive(serde::Serialize)]
        struct Old {
            last_seq: u64,
        }
        let old = rmp_serde::to_vec_named(&origin("p").envelope(5, Old { last_seq: 5 }))
            .unwrap_or_default();
        let here = heartbeat(&old).map(|e| e.body);
        assert_eq!(
            here,
            Some(Heartbeat {
                last_seq: 5,
                replay: false
            })
        );
    }

    #[test]
    fn a_published_event_read_as_a_replay_answer_takes_the_same_path() {
        let (_, packed) = packed("p", 3, bodies("A", 3).remove(0));
        let replayed = Replayed::open(crate::topic::DOWNCASE, &packed).ok();
        assert_eq!(replayed.map(|e| e.seq), Some(3));
    }

    proptest! {
        /// Whatever the bytes, what is read here is what serde reads; only what serde also
        /// refuses, or reads differently laid out, is left to it.
        #[test]
        fn any_change_to_an_envelope_is_read_as_serde_reads_it_or_left_to_it(
            which in 0usize..3,
            text in "\\PC{0,40}",
            n in any::<u64>(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let (topic, mut packed) = packed("pub", n, bodies(&text, n).remove(which));
            let i = at.index(packed.len());
            packed[i] = byte;
            let keep = cut.index(packed.len() + 1);
            for bytes in [&packed[..], &packed[..keep]] {
                if let Some(here) = read_here(topic, bytes) {
                    prop_assert_eq!(Some(here), by_serde(topic, bytes));
                }
            }
        }
    }
}
