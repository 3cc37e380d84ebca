//! Turning envelopes into ZMQ multipart messages and back, with the optional HMAC tag
//! ([`SharedKey`]: the first key tags, any key verifies).
//!
//! Decoding never panics: every way a message can be wrong is a [`DecodeError`].

use crate::channel::Channel;
use crate::envelope::Envelope;
use crate::error::DecodeError;
use crate::shared_key::SharedKey;
use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use zeromq::ZmqMessage;

/// Encodes and decodes messages; holds the shared key when one is configured.
#[derive(Debug, Clone, Default)]
pub struct Codec {
    key: Option<SharedKey>,
}

impl Codec {
    /// A codec that tags every message with `key` (its first key) and accepts only messages
    /// tagged with one of its keys; with `None`, it sends no tag and expects none.
    pub fn new(key: Option<SharedKey>) -> Self {
        Codec { key }
    }

    /// Builds the multipart message for an envelope: topic, envelope and, with a key, the tag.
    pub fn encode<M: Channel>(&self, envelope: &Envelope<M>) -> ZmqMessage {
        let packed = Bytes::from(pack(envelope));
        self.frames(envelope, packed, Bytes::copy_from_slice)
    }

    /// The message [`Codec::encode`] builds, with the envelope and the tag written at the end
    /// of `block` and split off it: a sender of many messages keeps one block for them, so a
    /// message costs no allocation of its own but its list of frames (one block of
    /// [`BLOCK`] bytes serves hundreds; it is freed once the last of them is dropped).
    pub fn encode_in<M: Channel>(
        &self,
        envelope: &Envelope<M>,
        block: &mut BytesMut,
    ) -> ZmqMessage {
        // Room for any usual message; a larger one makes the block grow as it is written.
        if block.capacity() - block.len() < 4096 {
            *block = BytesMut::with_capacity(BLOCK);
        }
        pack_into(envelope, block);
        let packed = block.split().freeze();
        self.frames(envelope, packed, |tag| {
            block.extend_from_slice(tag);
            block.split().freeze()
        })
    }

    /// The topic, `packed` and, with a key, the tag as `keep` keeps its bytes.
    fn frames<M: Channel>(
        &self,
        envelope: &Envelope<M>,
        packed: Bytes,
        keep: impl FnOnce(&[u8]) -> Bytes,
    ) -> ZmqMessage {
        let topic = Bytes::from_static(envelope.body.topic().as_bytes());
        match &self.key {
            Some(key) => {
                let tag = keep(&key.tag(&topic, &packed));
                message([topic, packed, tag])
            }
            None => message([topic, packed]),
        }
    }

    /// Checks frames and tag, then decodes the envelope as the message of channel `M` that
    /// its topic names; a topic of another channel is [`DecodeError::WrongChannel`].
    pub fn decode<M: Channel>(&self, message: &ZmqMessage) -> Result<Envelope<M>, DecodeError> {
        let expected = if self.key.is_some() { 3 } else { 2 };
        let frame_count = DecodeError::FrameCount {
            expected,
            got: message.len(),
        };
        if message.len() != expected {
            return Err(frame_count);
        }
        let (Some(topic), Some(packed)) = (message.get(0), message.get(1)) else {
            return Err(frame_count);
        };
        if let Some(key) = &self.key {
            let tag = message.get(2).map_or(&[][..], |t| &t[..]);
            if !key.verifies(topic, packed, tag) {
                return Err(DecodeError::BadTag);
            }
        }
        let topic = std::str::from_utf8(topic).map_err(|_| DecodeError::TopicNotUtf8)?;
        M::open(topic, packed)
    }
}

/// Size of the blocks [`Codec::encode_in`] writes messages into.
pub const BLOCK: usize = 64 * 1024;

/// A message of `frames`, its list allocated once at its size.
fn message<const N: usize>(frames: [Bytes; N]) -> ZmqMessage {
    let frames = Vec::from(frames);
    // N is never 0 here, so this never falls back.
    ZmqMessage::try_from(frames).unwrap_or_else(|_| ZmqMessage::from(Bytes::new()))
}

/// MessagePack with named fields. This is the one place a message is serialised, and it cannot
/// fail: every message type is a plain derived struct or untagged enum of strings, integers,
/// byte strings and vectors of those, and the output is a `Vec`, whose writes never fail.
fn pack<M: Serialize>(envelope: &Envelope<M>) -> Vec<u8> {
    let mut packed = Vec::with_capacity(128);
    write(envelope, &mut packed);
    packed
}

/// [`pack`], appended to `block`: a `BytesMut` grows as it is written, so these writes never
/// fail either.
fn pack_into<M: Serialize>(envelope: &Envelope<M>, block: &mut BytesMut) {
    write(envelope, &mut block.writer());
}

fn write<M: Serialize>(envelope: &Envelope<M>, out: &mut impl std::io::Write) {
    #[allow(clippy::expect_used)]
    rmp_serde::encode::write_named(out, envelope).expect("a protocol message always serialises");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;

    fn origin() -> Origin {
        Origin {
            id: "pub-1".into(),
            epoch: 7,
        }
    }

    fn events() -> Vec<Broadcast> {
        vec![
            Broadcast::Event(Event::Downcase(Downcase {
                param: "ÀÉÎ ΣΑΣ 🙂\n".into(),
                result: "àéî σας 🙂\n".into(),
            })),
            Broadcast::Event(Event::SignatureRequested(SignatureRequested {
                id: "abc".into(),
                key: "demo".into(),
                text_sha256: "00".repeat(32),
                text_len: 5,
            })),
            Broadcast::Event(Event::SignatureOutcome(SignatureOutcome {
                id: "abc".into(),
                key: "demo".into(),
                status: SignatureStatus::Valid,
                reason: None,
                verified_by: Some("v1".into()),
                attempts: 1,
            })),
            Broadcast::Event(Event::SignatureOutcome(SignatureOutcome {
                id: "abd".into(),
                key: "demo".into(),
                status: SignatureStatus::Error,
                reason: Some("no verifier answered".into()),
                verified_by: None,
                attempts: 3,
            })),
            Broadcast::Heartbeat(Heartbeat {
                last_seq: 41,
                replay: false,
            }),
        ]
    }

    fn task() -> VerifyTask {
        VerifyTask {
            task_id: 9,
            key: "demo".into(),
            sha256: vec![0, 1, 2, 255],
            signature: vec![7; 256],
            attempt: 2,
        }
    }

    fn replies() -> Vec<Reply> {
        vec![
            Reply::Verdict(Verdict {
                task_id: 9,
                status: SignatureStatus::Invalid,
                reason: Some("signature does not match".into()),
            }),
            Reply::Heartbeat(VerifierHeartbeat {
                keys: vec![KeyInfo {
                    id: "demo".into(),
                    modulus_len: 256,
                }],
                in_flight: 3,
            }),
        ]
    }

    fn replay() -> (ReplayRequest, Vec<Replayed>) {
        let request = ReplayRequest {
            epoch: 7,
            after: 40,
            max_events: 1000,
            topics: vec!["signature.".into()],
        };
        let answers = vec![
            Replayed::Event(Event::Downcase(Downcase {
                param: "A".into(),
                result: "a".into(),
            })),
            Replayed::End(ReplayEnd {
                epoch: 7,
                asked_epoch: 7,
                asked_after: 40,
                last: 41,
                oldest: 3,
                newest: 41,
            }),
        ];
        (request, answers)
    }

    fn keyed() -> Codec {
        Codec::new(Some(
            SharedKey::from_bytes(b"0123456789abcdef-test").unwrap(),
        ))
    }

    #[test]
    fn a_message_encoded_into_a_shared_block_is_the_message_encoded_alone() {
        for codec in [Codec::default(), keyed()] {
            let mut block = BytesMut::new();
            let mut kept = Vec::new();
            // Enough messages to fill several blocks, each kept until the end: a block that
            // is replaced must leave the frames already handed out as they were.
            for seq in 1..=3 * BLOCK as u64 / 64 {
                for body in events() {
                    let envelope = origin().envelope(seq, body);
                    let alone = codec.encode(&envelope);
                    let shared = codec.encode_in(&envelope, &mut block);
                    assert_eq!(shared.len(), alone.len());
                    kept.push((alone, shared));
                }
            }
            for (alone, shared) in kept {
                assert_eq!(shared.into_vec(), alone.into_vec());
            }
        }
    }

    fn round_trip<M: Channel + PartialEq + std::fmt::Debug>(codec: &Codec, body: M) {
        let sent = origin().envelope(42, body);
        let message = codec.encode(&sent);
        assert_eq!(message.get(0).unwrap(), sent.body.topic().as_bytes());
        assert_eq!(codec.decode::<M>(&message).unwrap(), sent);
    }

    #[test]
    fn every_message_of_every_channel_survives_a_round_trip_with_and_without_a_key() {
        for codec in [Codec::default(), keyed()] {
            events().into_iter().for_each(|m| round_trip(&codec, m));
            replies().into_iter().for_each(|m| round_trip(&codec, m));
            round_trip(&codec, task());
            let (request, answers) = replay();
            round_trip(&codec, request);
            answers.into_iter().for_each(|m| round_trip(&codec, m));
        }
    }

    #[test]
    fn a_published_event_reads_as_a_replayed_one_and_nothing_else_does() {
        let codec = keyed();
        let published = codec.encode(&origin().envelope(3, events().remove(0)));
        let replayed = codec.decode::<Replayed>(&published).unwrap();
        assert_eq!(replayed.seq, 3);
        assert!(matches!(replayed.body, Replayed::Event(Event::Downcase(_))));
        let beat = codec.encode(&origin().envelope(3, events().remove(4)));
        assert!(matches!(
            codec.decode::<Replayed>(&beat),
            Err(DecodeError::WrongChannel {
                channel: "replay answers",
                ..
            })
        ));
        let (request, _) = replay();
        let request = codec.encode(&origin().envelope(1, request));
        assert!(codec.decode::<Replayed>(&request).is_err());
        assert!(codec.decode::<Broadcast>(&request).is_err());
    }

    #[test]
    fn a_message_of_another_channel_is_a_decode_error() {
        let codec = Codec::default();
        let task = codec.encode(&origin().envelope(1, task()));
        assert!(matches!(
            codec.decode::<Broadcast>(&task),
            Err(DecodeError::WrongChannel {
                channel: "events",
                ..
            })
        ));
        assert!(codec.decode::<Reply>(&task).is_err());
        let event = codec.encode(&origin().envelope(1, events().remove(0)));
        assert!(matches!(
            codec.decode::<VerifyTask>(&event),
            Err(DecodeError::WrongChannel {
                channel: "tasks",
                ..
            })
        ));
        assert!(codec.decode::<Reply>(&event).is_err());
        let beat = codec.encode(&origin().envelope(1, events().remove(4)));
        assert!(
            codec.decode::<Event>(&beat).is_err(),
            "a heartbeat is no event"
        );
        let reply = codec.encode(&origin().envelope(1, replies().remove(0)));
        assert!(codec.decode::<Broadcast>(&reply).is_err());
        assert!(codec.decode::<VerifyTask>(&reply).is_err());
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        let codec = Codec::default();
        let mut inputs: Vec<Vec<u8>> = vec![vec![], vec![0xc1], vec![0xff; 64], b"hello".to_vec()];
        // Every prefix of a real envelope: truncation anywhere must be an error.
        let real = codec.encode(&origin().envelope(1, task()));
        let packed = real.get(1).unwrap().to_vec();
        inputs.extend((0..packed.len()).map(|n| packed[..n].to_vec()));
        for input in inputs {
            for topic in [topic::DOWNCASE, VERIFY_TASK_TOPIC, HEARTBEAT_TOPIC] {
                let mut message = ZmqMessage::from(topic);
                message.push_back(Bytes::from(input.clone()));
                assert!(
                    codec.decode::<Broadcast>(&message).is_err(),
                    "{topic} {input:?}"
                );
                assert!(
                    codec.decode::<VerifyTask>(&message).is_err(),
                    "{topic} {input:?}"
                );
            }
        }
    }

    #[test]
    fn wrong_frame_counts_are_refused() {
        let codec = Codec::default();
        let one = ZmqMessage::from("downcase");
        assert!(matches!(
            codec.decode::<Broadcast>(&one),
            Err(DecodeError::FrameCount {
                expected: 2,
                got: 1
            })
        ));
        let mut three = codec.encode(&origin().envelope(1, events().remove(0)));
        three.push_back(Bytes::from_static(b"extra"));
        assert!(matches!(
            codec.decode::<Broadcast>(&three),
            Err(DecodeError::FrameCount {
                expected: 2,
                got: 3
            })
        ));
    }

    #[test]
    fn an_unknown_topic_and_a_non_utf8_topic_are_refused() {
        let codec = Codec::default();
        let message = codec.encode(&origin().envelope(1, events().remove(0)));
        let packed = message.get(1).unwrap().clone();
        let mut message = ZmqMessage::from("no.such.topic");
        message.push_back(packed.clone());
        assert!(matches!(
            codec.decode::<Broadcast>(&message),
            Err(DecodeError::WrongChannel { topic, .. }) if topic == "no.such.topic"
        ));
        let mut message = ZmqMessage::from(vec![0xff, 0xfe]);
        message.push_back(packed);
        assert!(matches!(
            codec.decode::<Broadcast>(&message),
            Err(DecodeError::TopicNotUtf8)
        ));
    }

    #[test]
    fn a_valid_outcome_under_the_failed_topic_is_refused() {
        let codec = Codec::default();
        let valid = events().remove(2);
        let message = codec.encode(&origin().envelope(1, valid));
        let mut frames = message.into_vec();
        frames[0] = Bytes::from_static(topic::SIGNATURE_FAILED.as_bytes());
        let relabelled = ZmqMessage::try_from(frames).unwrap();
        assert!(matches!(
            codec.decode::<Broadcast>(&relabelled),
            Err(DecodeError::TopicMismatch {
                body: topic::SIGNATURE_VERIFIED,
                ..
            })
        ));
    }

    #[test]
    fn a_future_protocol_version_is_named_as_such() {
        let codec = Codec::default();
        let mut future = origin().envelope(1, events().remove(0));
        future.v = PROTOCOL_VERSION + 1;
        let message = codec.encode(&future);
        assert!(matches!(
            codec.decode::<Broadcast>(&message),
            Err(DecodeError::UnknownVersion(2))
        ));
    }

    #[test]
    fn a_forged_or_missing_tag_is_refused() {
        let sender = keyed();
        let verdict = || origin().envelope(1, replies().remove(0));
        let mut message = sender.encode(&verdict());
        // Flip one byte of the envelope: the tag no longer matches.
        let mut frames = message.clone().into_vec();
        let mut packed = frames[1].to_vec();
        let last = packed.len() - 1;
        packed[last] ^= 1;
        frames[1] = Bytes::from(packed);
        let tampered = ZmqMessage::try_from(frames).unwrap();
        assert!(matches!(
            sender.decode::<Reply>(&tampered),
            Err(DecodeError::BadTag)
        ));
        // Another key's tag does not pass either.
        let other = Codec::new(Some(
            SharedKey::from_bytes(b"another key, 16+ bytes").unwrap(),
        ));
        assert!(matches!(
            other.decode::<Reply>(&message),
            Err(DecodeError::BadTag)
        ));
        // An untagged message is refused by a keyed reader, and a tagged one by an unkeyed reader.
        let untagged = Codec::default().encode(&verdict());
        assert!(sender.decode::<Reply>(&untagged).is_err());
        assert!(Codec::default().decode::<Reply>(&message).is_err());
        message = sender.encode(&verdict());
        assert!(sender.decode::<Reply>(&message).is_ok());
    }

    /// A codec with the keys of a key file holding `keys`, one a line.
    fn keyed_with(keys: &[&str]) -> Codec {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("shared.key");
        std::fs::write(&path, keys.join("\n")).expect("the key file is written");
        Codec::new(Some(SharedKey::from_file(&path).expect("usable keys")))
    }

    #[test]
    fn a_process_with_the_new_and_the_old_key_accepts_both_and_tags_with_the_new() {
        let (new, old) = ("the new key, 16+ bytes", "the old key, 16+ bytes");
        let rotating = keyed_with(&[new, old]);
        let verdict = origin().envelope(1, replies().remove(0));
        for sender in [
            keyed_with(&[old]),
            keyed_with(&[new]),
            keyed_with(&[old, new]),
        ] {
            let message = sender.encode(&verdict);
            assert_eq!(rotating.decode::<Reply>(&message).unwrap(), verdict);
        }
        let sent = rotating.encode(&verdict);
        let by_new = keyed_with(&[new]).encode(&verdict);
        assert_eq!(sent.get(2), by_new.get(2), "tagged with the new key");
        assert!(matches!(
            keyed_with(&[old]).decode::<Reply>(&sent),
            Err(DecodeError::BadTag)
        ));
        assert!(keyed_with(&[new]).decode::<Reply>(&sent).is_ok());
    }
}
