//! Why a received message was not accepted: every way a message can be wrong, so decoding
//! never panics.

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
    /// A topic that does not travel on the channel it arrived on (or that nobody knows).
    #[error("topic {topic:?} does not belong on the {channel} channel")]
    WrongChannel {
        /// The channel the message arrived on.
        channel: &'static str,
        /// The topic it named.
        topic: String,
    },
    /// The topic is one of the channel's, but not the one the body's content travels under (a
    /// signature outcome whose status contradicts its topic): no encoder sends that.
    #[error("topic {topic:?} contradicts the message, which travels under {body:?}")]
    TopicMismatch {
        /// The topic it named.
        topic: String,
        /// The topic its body belongs under.
        body: &'static str,
    },
    /// The envelope is not valid MessagePack of the expected shape.
    #[error("malformed envelope: {0}")]
    Envelope(#[from] rmp_serde::decode::Error),
    /// The envelope announces a protocol version this build does not speak.
    #[error("unsupported protocol version {0}")]
    UnknownVersion(u16),
}
