//! Turning envelopes into ZMQ multipart messages and back, with the optional HMAC tag.
//!
//! Decoding never panics: every way a message can be wrong is a [`DecodeError`].

use crate::envelope::{Envelope, PROTOCOL_VERSION};
use crate::message::{Body, topic};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use sha2::Sha256;
use std::path::Path;
use zeromq::ZmqMessage;

type HmacSha256 = Hmac<Sha256>;

/// The shortest shared key accepted, in bytes.
const MIN_SHARED_KEY_LEN: usize = 16;

/// Why a received message was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not 2 frames (or 3 with a shared key).
    #[error("expected {expected} frames, got {got}")]
    FrameCount {
        /// Frames the codec expects.
        expected: usize,
        /// Frames that arrived.
        got: usize,
    },
    /// The tag frame does not match the topic and envelope.
    #[error("authentication tag does not match")]
    BadTag,
    /// The topic frame is not UTF-8.
    #[error("topic is not UTF-8")]
    TopicNotUtf8,
    /// A topic this build does not know.
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// The envelope is not valid MessagePack of the expected shape.
    #[error("malformed envelope: {0}")]
    Envelope(#[from] rmp_serde::decode::Error),
    /// The envelope announces a protocol version this build does not speak.
    #[error("unsupported protocol version {0}")]
    UnknownVersion(u16),
}

/// A shared secret that makes every message carry an HMAC-SHA-256 tag.
#[derive(Clone)]
pub struct SharedKey(HmacSha256);

/// Why a shared key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SharedKeyError {
    /// The file could not be read.
    #[error("cannot read shared key file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key is too short to be a secret.
    #[error("shared key in {path} is {len} bytes; at least {MIN_SHARED_KEY_LEN} are required")]
    TooShort {
        /// The file.
        path: String,
        /// Its length after trimming white space.
        len: usize,
    },
}

impl SharedKey {
    /// Reads a key from a file; surrounding white space (a trailing newline) is ignored.
    pub fn from_file(path: &Path) -> Result<Self, SharedKeyError> {
        let raw = std::fs::read(path).map_err(|source| SharedKeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(raw.trim_ascii()).map_err(|len| SharedKeyError::TooShort {
            path: path.display().to_string(),
            len,
        })
    }

    /// Makes a key from raw bytes; `Err` carries the length when it is too short.
    pub fn from_bytes(key: &[u8]) -> Result<Self, usize> {
        if key.len() < MIN_SHARED_KEY_LEN {
            return Err(key.len());
        }
        HmacSha256::new_from_slice(key)
            .map(SharedKey)
            .map_err(|_| key.len())
    }

    fn mac(&self, topic: &[u8], envelope: &[u8]) -> HmacSha256 {
        let mut mac = self.0.clone();
        // The topic's length goes first so no split of topic|envelope can collide with another.
        mac.update(&(topic.len() as u64).to_be_bytes());
        mac.update(topic);
        mac.update(envelope);
        mac
    }
}

impl std::fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedKey(..)")
    }
}

/// Encodes and decodes messages; holds the shared key when one is configured.
#[derive(Debug, Clone, Default)]
pub struct Codec {
    key: Option<SharedKey>,
}

impl Codec {
    /// A codec that tags every message with `key`, or sends no tag when `None`.
    pub fn new(key: Option<SharedKey>) -> Self {
        Codec { key }
    }

    /// Builds the multipart message for an envelope: topic, envelope and, with a key, the tag.
    pub fn encode(&self, envelope: &Envelope<Body>) -> ZmqMessage {
        let topic = Bytes::from_static(envelope.body.topic().as_bytes());
        // Serialising plain structs of strings, numbers and byte arrays into a Vec cannot fail.
        let packed = Bytes::from(rmp_serde::to_vec_named(envelope).unwrap_or_default());
        let mut message = ZmqMessage::from(topic.clone());
        if let Some(key) = &self.key {
            let tag = key.mac(&topic, &packed).finalize().into_bytes();
            message.push_back(packed);
            message.push_back(Bytes::copy_from_slice(&tag));
        } else {
            message.push_back(packed);
        }
        message
    }

    /// Checks frames and tag, then decodes the envelope with the body its topic names.
    pub fn decode(&self, message: &ZmqMessage) -> Result<Envelope<Body>, DecodeError> {
        let expected = if self.key.is_some() { 3 } else { 2 };
        if message.len() != expected {
            return Err(DecodeError::FrameCount {
                expected,
                got: message.len(),
            });
        }
        let (Some(topic), Some(packed)) = (message.get(0), message.get(1)) else {
            return Err(DecodeError::FrameCount {
                expected,
                got: message.len(),
            });
        };
        if let Some(key) = &self.key {
            let tag = message.get(2).map_or(&[][..], |t| &t[..]);
            key.mac(topic, packed)
                .verify_slice(tag)
                .map_err(|_| DecodeError::BadTag)?;
        }
        let topic = std::str::from_utf8(topic).map_err(|_| DecodeError::TopicNotUtf8)?;
        match topic {
            topic::DOWNCASE => open(packed, Body::Downcase),
            topic::SIGNATURE_REQUESTED => open(packed, Body::SignatureRequested),
            topic::SIGNATURE_VERIFIED | topic::SIGNATURE_FAILED => {
                open(packed, Body::SignatureOutcome)
            }
            topic::HEARTBEAT => open(packed, Body::Heartbeat),
            topic::VERIFY_TASK => open(packed, Body::VerifyTask),
            topic::VERIFY_RESULT => open(packed, Body::VerifyResult),
            topic::VERIFIER_HEARTBEAT => open(packed, Body::VerifierHeartbeat),
            other => Err(DecodeError::UnknownTopic(other.to_owned())),
        }
    }
}

/// The envelope header alone, read when a body does not decode, to name a version mismatch.
#[derive(serde::Deserialize)]
struct VersionOnly {
    v: u16,
}

fn open<B: DeserializeOwned>(
    packed: &[u8],
    wrap: fn(B) -> Body,
) -> Result<Envelope<Body>, DecodeError> {
    let e: Envelope<B> = match rmp_serde::from_slice(packed) {
        Ok(e) => e,
        Err(err) => {
            return Err(match rmp_serde::from_slice::<VersionOnly>(packed) {
                Ok(VersionOnly { v }) if v != PROTOCOL_VERSION => DecodeError::UnknownVersion(v),
                _ => DecodeError::Envelope(err),
            });
        }
    };
    if e.v != PROTOCOL_VERSION {
        return Err(DecodeError::UnknownVersion(e.v));
    }
    Ok(Envelope {
        v: e.v,
        sender: e.sender,
        epoch: e.epoch,
        seq: e.seq,
        ts_ms: e.ts_ms,
        body: wrap(e.body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::*;

    fn envelope(body: Body) -> Envelope<Body> {
        Envelope {
            v: PROTOCOL_VERSION,
            sender: "pub-1".into(),
            epoch: 7,
            seq: 42,
            ts_ms: 1_700_000_000_123,
            body,
        }
    }

    fn every_body() -> Vec<Body> {
        vec![
            Body::Downcase(Downcase {
                param: "ÀÉÎ ΣΑΣ 🙂\n".into(),
                result: "àéî σας 🙂\n".into(),
            }),
            Body::SignatureRequested(SignatureRequested {
                id: "abc".into(),
                key: "demo".into(),
                text_sha256: "00".repeat(32),
                text_len: 5,
            }),
            Body::SignatureOutcome(SignatureOutcome {
                id: "abc".into(),
                key: "demo".into(),
                status: SignatureStatus::Valid,
                reason: None,
                verified_by: Some("v1".into()),
                attempts: 1,
            }),
            Body::SignatureOutcome(SignatureOutcome {
                id: "abd".into(),
                key: "demo".into(),
                status: SignatureStatus::Error,
                reason: Some("no verifier answered".into()),
                verified_by: None,
                attempts: 3,
            }),
            Body::Heartbeat(Heartbeat { last_seq: 41 }),
            Body::VerifyTask(VerifyTask {
                task_id: 9,
                key: "demo".into(),
                document: vec![0, 1, 2, 255],
                signature: vec![7; 256],
                attempt: 2,
            }),
            Body::VerifyResult(VerifyResult {
                task_id: 9,
                status: SignatureStatus::Invalid,
                reason: Some("signature does not match".into()),
            }),
            Body::VerifierHeartbeat(VerifierHeartbeat {
                keys: vec![KeyInfo {
                    id: "demo".into(),
                    modulus_len: 256,
                }],
                in_flight: 3,
            }),
        ]
    }

    fn keyed() -> Codec {
        Codec::new(Some(
            SharedKey::from_bytes(b"0123456789abcdef-test").unwrap(),
        ))
    }

    #[test]
    fn every_body_survives_a_round_trip_with_and_without_a_key() {
        for codec in [Codec::default(), keyed()] {
            for body in every_body() {
                let sent = envelope(body);
                let message = codec.encode(&sent);
                assert_eq!(message.get(0).unwrap(), sent.body.topic().as_bytes());
                assert_eq!(codec.decode(&message).unwrap(), sent);
            }
        }
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        let codec = Codec::default();
        let mut inputs: Vec<Vec<u8>> = vec![vec![], vec![0xc1], vec![0xff; 64], b"hello".to_vec()];
        // Every prefix of a real envelope: truncation anywhere must be an error.
        let real = codec.encode(&envelope(every_body().remove(5)));
        let packed = real.get(1).unwrap().to_vec();
        inputs.extend((0..packed.len()).map(|n| packed[..n].to_vec()));
        for input in inputs {
            for topic in [topic::DOWNCASE, topic::VERIFY_TASK, topic::HEARTBEAT] {
                let mut message = ZmqMessage::from(topic);
                message.push_back(Bytes::from(input.clone()));
                assert!(codec.decode(&message).is_err(), "{topic} {input:?}");
            }
        }
    }

    #[test]
    fn wrong_frame_counts_are_refused() {
        let codec = Codec::default();
        let one = ZmqMessage::from("downcase");
        assert!(matches!(
            codec.decode(&one),
            Err(DecodeError::FrameCount {
                expected: 2,
                got: 1
            })
        ));
        let mut three = codec.encode(&envelope(every_body().remove(0)));
        three.push_back(Bytes::from_static(b"extra"));
        assert!(matches!(
            codec.decode(&three),
            Err(DecodeError::FrameCount {
                expected: 2,
                got: 3
            })
        ));
    }

    #[test]
    fn an_unknown_topic_and_a_non_utf8_topic_are_refused() {
        let codec = Codec::default();
        let mut message = codec.encode(&envelope(every_body().remove(0)));
        let packed = message.get(1).unwrap().clone();
        message = ZmqMessage::from("no.such.topic");
        message.push_back(packed.clone());
        assert!(
            matches!(codec.decode(&message), Err(DecodeError::UnknownTopic(t)) if t == "no.such.topic")
        );
        let mut message = ZmqMessage::from(vec![0xff, 0xfe]);
        message.push_back(packed);
        assert!(matches!(
            codec.decode(&message),
            Err(DecodeError::TopicNotUtf8)
        ));
    }

    #[test]
    fn a_future_protocol_version_is_named_as_such() {
        let codec = Codec::default();
        let mut future = envelope(every_body().remove(0));
        future.v = PROTOCOL_VERSION + 1;
        let message = codec.encode(&future);
        assert!(matches!(
            codec.decode(&message),
            Err(DecodeError::UnknownVersion(2))
        ));
    }

    #[test]
    fn a_forged_or_missing_tag_is_refused() {
        let sender = keyed();
        let mut message = sender.encode(&envelope(every_body().remove(2)));
        // Flip one byte of the envelope: the tag no longer matches.
        let mut frames = message.clone().into_vec();
        let mut packed = frames[1].to_vec();
        let last = packed.len() - 1;
        packed[last] ^= 1;
        frames[1] = Bytes::from(packed);
        let tampered = ZmqMessage::try_from(frames).unwrap();
        assert!(matches!(sender.decode(&tampered), Err(DecodeError::BadTag)));
        // Another key's tag does not pass either.
        let other = Codec::new(Some(
            SharedKey::from_bytes(b"another key, 16+ bytes").unwrap(),
        ));
        assert!(matches!(other.decode(&message), Err(DecodeError::BadTag)));
        // An untagged message is refused by a keyed reader, and a tagged one by an unkeyed reader.
        let untagged = Codec::default().encode(&envelope(every_body().remove(2)));
        assert!(sender.decode(&untagged).is_err());
        assert!(Codec::default().decode(&message).is_err());
        message = sender.encode(&envelope(every_body().remove(2)));
        assert!(sender.decode(&message).is_ok());
    }

    #[test]
    fn a_short_shared_key_is_refused() {
        assert_eq!(SharedKey::from_bytes(b"short").unwrap_err(), 5);
        let dir = std::env::temp_dir().join(format!("wire-key-{}", std::process::id()));
        std::fs::write(&dir, "0123456789abcdef\n").unwrap();
        assert!(SharedKey::from_file(&dir).is_ok());
        std::fs::write(&dir, "tiny\n").unwrap();
        assert!(matches!(
            SharedKey::from_file(&dir),
            Err(SharedKeyError::TooShort { len: 4, .. })
        ));
        std::fs::remove_file(&dir).unwrap();
        assert!(matches!(
            SharedKey::from_file(&dir),
            Err(SharedKeyError::Read { .. })
        ));
    }
}
