//! A channel is one direction of one socket pair, with its own message type: a reader of a
//! channel decodes only what can arrive on it, and a message of another channel is a
//! [`DecodeError`], not a case to ignore.
//!
//! | channel | type | from → to |
//! |---|---|---|
//! | events | [`Broadcast`](crate::Broadcast): [`Event`](crate::Event)s and heartbeats | publisher PUB → subscribers |
//! | tasks | [`VerifyTask`](crate::VerifyTask) | publisher PUSH → verifiers |
//! | replies | [`Reply`](crate::Reply): verdicts and heartbeats | verifiers PUSH → publisher |
//! | replay requests | [`ReplayRequest`](crate::ReplayRequest) | subscriber DEALER → publisher ROUTER |
//! | replay answers | [`Replayed`](crate::Replayed): events and end markers | publisher ROUTER → subscriber DEALER |

use crate::envelope::{Envelope, PROTOCOL_VERSION};
use crate::error::DecodeError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// How deep MessagePack may nest in a message. The deepest message of the protocol is 4 levels
/// (envelope, verifier heartbeat, its key list, a key). serde skips a field it does not know by
/// reading through it, recursively, so a hostile message nested a million deep would exhaust the
/// stack; rmp-serde's own bound (1 024 levels) is already too deep for a 2 MiB thread stack in
/// a debug build.
const MAX_DEPTH: usize = 16;

/// The message type of one channel. The body is serialised as the bare inner struct: the topic
/// frame, not a tag in the body, says which kind it is.
pub trait Channel: Serialize + Sized {
    /// The channel's name, as errors and logs give it.
    const NAME: &'static str;

    /// The topic this message travels under (frame 1).
    fn topic(&self) -> &'static str;

    /// Decodes `packed` as the envelope of the message kind `topic` names on this channel.
    fn open(topic: &str, packed: &[u8]) -> Result<Envelope<Self>, DecodeError>;
}

/// Decodes `packed` as an envelope of `B` and wraps the body into the channel type.
pub(crate) fn open_as<B: DeserializeOwned, M>(
    packed: &[u8],
    wrap: impl FnOnce(B) -> M,
) -> Result<Envelope<M>, DecodeError> {
    let envelope: Envelope<B> = unpack(packed).map_err(|err| {
        // A body of another shape may be a newer protocol: name the version when it differs.
        match unpack::<VersionOnly>(packed) {
            Ok(VersionOnly { v }) if v != PROTOCOL_VERSION => DecodeError::UnknownVersion(v),
            _ => DecodeError::Envelope(err),
        }
    })?;
    if envelope.v != PROTOCOL_VERSION {
        return Err(DecodeError::UnknownVersion(envelope.v));
    }
    Ok(envelope.map(wrap))
}

/// [`open_as`], tried first by `direct` (one of `crate::canonical`'s readers), which reads
/// the layout this crate writes straight from the bytes and leaves anything else to serde.
pub(crate) fn open_direct_or_as<B: DeserializeOwned, M>(
    packed: &[u8],
    direct: fn(&[u8]) -> Option<Envelope<B>>,
    wrap: impl FnOnce(B) -> M,
) -> Result<Envelope<M>, DecodeError> {
    match direct(packed) {
        Some(envelope) => Ok(envelope.map(wrap)),
        None => open_as(packed, wrap),
    }
}

/// Reads `packed` as a `T`, nested at most [`MAX_DEPTH`] deep.
fn unpack<T: DeserializeOwned>(packed: &[u8]) -> Result<T, rmp_serde::decode::Error> {
    let mut reader = rmp_serde::Deserializer::from_read_ref(packed);
    reader.set_max_depth(MAX_DEPTH);
    T::deserialize(&mut reader)
}

/// A topic that does not travel on channel `M`.
pub(crate) fn not_on<M: Channel>(topic: &str) -> DecodeError {
    DecodeError::WrongChannel {
        channel: M::NAME,
        topic: topic.to_owned(),
    }
}

/// The envelope header alone, read when a body does not decode, to name a version mismatch.
#[derive(Deserialize)]
struct VersionOnly {
    v: u16,
}
