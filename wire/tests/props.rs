//! Properties of the codec that no list of examples can cover: whatever arrives — any bytes,
//! any number of frames, an envelope of any shape — decoding returns, never panics, and
//! accepts only what an encoder could have sent; whatever is sent reads back as itself, with or
//! without a shared key; and no changed byte of a tagged message passes.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq};
use std::fmt::Debug;
use wire::*;
use zeromq::ZmqMessage;

/// Every topic any channel knows, and some that none does.
const TOPICS: &[&str] = &[
    topic::DOWNCASE,
    topic::SIGNATURE_REQUESTED,
    topic::SIGNATURE_VERIFIED,
    topic::SIGNATURE_FAILED,
    HEARTBEAT_TOPIC,
    VERIFY_TASK_TOPIC,
    VERDICT_TOPIC,
    VERIFIER_HEARTBEAT_TOPIC,
    REPLAY_REQUEST_TOPIC,
    REPLAY_END_TOPIC,
    "",
    "signature",
    "downcase.x",
];

/// Short text of any characters: control characters, newlines, non-ASCII.
fn text() -> impl Strategy<Value = String> {
    ".{0,12}"
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

fn status() -> impl Strategy<Value = SignatureStatus> {
    prop_oneof![
        Just(SignatureStatus::Valid),
        Just(SignatureStatus::Invalid),
        Just(SignatureStatus::Error),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (text(), text()).prop_map(|(param, result)| Event::Downcase(Downcase { param, result })),
        (text(), text(), text(), any::<u64>()).prop_map(|(id, key, text_sha256, text_len)| {
            Event::SignatureRequested(SignatureRequested {
                id,
                key,
                text_sha256,
                text_len,
            })
        }),
        (
            text(),
            text(),
            status(),
            proptest::option::of(text()),
            proptest::option::of(text()),
            any::<u32>()
        )
            .prop_map(|(id, key, status, reason, verified_by, attempts)| {
                Event::SignatureOutcome(SignatureOutcome {
                    id,
                    key,
                    status,
                    reason,
                    verified_by,
                    attempts,
                })
            }),
    ]
}

fn broadcast() -> impl Strategy<Value = Broadcast> {
    prop_oneof![
        event().prop_map(Broadcast::Event),
        (any::<u64>(), any::<bool>())
            .prop_map(|(last_seq, replay)| Broadcast::Heartbeat(Heartbeat { last_seq, replay })),
    ]
}

fn task() -> impl Strategy<Value = VerifyTask> {
    (any::<u64>(), text(), bytes(64), bytes(64), any::<u32>()).prop_map(
        |(task_id, key, sha256, signature, attempt)| VerifyTask {
            task_id,
            key,
            sha256,
            signature,
            attempt,
        },
    )
}

fn reply() -> impl Strategy<Value = Reply> {
    let key = (text(), any::<u32>()).prop_map(|(id, modulus_len)| KeyInfo { id, modulus_len });
    prop_oneof![
        (any::<u64>(), status(), proptest::option::of(text())).prop_map(
            |(task_id, status, reason)| Reply::Verdict(Verdict {
                task_id,
                status,
                reason
            })
        ),
        (vec(key, 0..4), any::<u32>())
            .prop_map(|(keys, in_flight)| Reply::Heartbeat(VerifierHeartbeat { keys, in_flight })),
    ]
}

/// Topic prefixes as a subscriber's `TOPICS` gives them, and any other text.
fn topic_prefixes() -> impl Strategy<Value = Vec<String>> {
    vec(
        prop_oneof!["[a-z]{0,9}(\\.[a-z]{0,9}){0,2}\\.?", text()],
        0..5,
    )
}

fn replay_request() -> impl Strategy<Value = ReplayRequest> {
    (any::<u64>(), any::<u64>(), any::<u32>(), topic_prefixes()).prop_map(
        |(epoch, after, max_events, topics)| ReplayRequest {
            epoch,
            after,
            max_events,
            topics,
        },
    )
}

fn replayed() -> impl Strategy<Value = Replayed> {
    prop_oneof![
        event().prop_map(Replayed::Event),
        any::<[u64; 6]>().prop_map(|[epoch, asked_epoch, asked_after, last, oldest, newest]| {
            Replayed::End(ReplayEnd {
                epoch,
                asked_epoch,
                asked_after,
                last,
                oldest,
                newest,
            })
        }),
    ]
}

/// A message of any channel.
#[derive(Debug, Clone)]
enum Any {
    Broadcast(Broadcast),
    Task(VerifyTask),
    Reply(Reply),
    Request(ReplayRequest),
    Replayed(Replayed),
}

fn any_message() -> impl Strategy<Value = Any> {
    prop_oneof![
        broadcast().prop_map(Any::Broadcast),
        task().prop_map(Any::Task),
        reply().prop_map(Any::Reply),
        replay_request().prop_map(Any::Request),
        replayed().prop_map(Any::Replayed),
    ]
}

/// An envelope of any header around `body`, in this protocol's version.
fn envelope<B: Debug>(body: impl Strategy<Value = B>) -> impl Strategy<Value = Envelope<B>> {
    (text(), any::<u64>(), any::<u64>(), any::<u64>(), body).prop_map(
        |(sender, epoch, seq, ts_ms, body)| Envelope {
            v: PROTOCOL_VERSION,
            sender,
            epoch,
            seq,
            ts_ms,
            body,
        },
    )
}

/// A codec with a key of 16 to 64 random bytes, or none; and whether it has one.
fn codec() -> impl Strategy<Value = (Codec, bool)> {
    proptest::option::of(vec(any::<u8>(), 16..64)).prop_map(|key| {
        let keyed = key.is_some();
        let key = key.map(|k| SharedKey::from_bytes(&k).expect("16 bytes or more"));
        (Codec::new(key), keyed)
    })
}

fn keyed_codec() -> impl Strategy<Value = Codec> {
    vec(any::<u8>(), 16..64)
        .prop_map(|k| Codec::new(Some(SharedKey::from_bytes(&k).expect("16 bytes or more"))))
}

fn encode(codec: &Codec, header: Envelope<()>, message: Any) -> ZmqMessage {
    match message {
        Any::Broadcast(m) => codec.encode(&header.with(m)),
        Any::Task(m) => codec.encode(&header.with(m)),
        Any::Reply(m) => codec.encode(&header.with(m)),
        Any::Request(m) => codec.encode(&header.with(m)),
        Any::Replayed(m) => codec.encode(&header.with(m)),
    }
}

fn message(frames: Vec<Vec<u8>>) -> Option<ZmqMessage> {
    ZmqMessage::try_from(frames.into_iter().map(Bytes::from).collect::<Vec<_>>()).ok()
}

fn frames(message: &ZmqMessage) -> Vec<Vec<u8>> {
    message.iter().map(|f| f.to_vec()).collect()
}

/// Decodes `message` as channel `M`; when that succeeds, checks that an encoder could have sent
/// it: the frame count is the codec's, the topic is the decoded message's own, and sending the
/// decoded envelope again reads back as the same.
fn decode_checked<M>(
    codec: &Codec,
    message: &ZmqMessage,
    keyed: bool,
) -> Result<Option<Envelope<M>>, TestCaseError>
where
    M: Channel + PartialEq + Debug + Clone,
{
    let Ok(decoded) = codec.decode::<M>(message) else {
        return Ok(None);
    };
    prop_assert_eq!(message.len(), if keyed { 3 } else { 2 });
    prop_assert_eq!(
        message.get(0).map(|t| t.to_vec()),
        Some(decoded.body.topic().as_bytes().to_vec()),
        "{:?} decoded under another topic",
        decoded
    );
    prop_assert_eq!(decoded.v, PROTOCOL_VERSION);
    let again = codec.encode(&decoded);
    prop_assert_eq!(codec.decode::<M>(&again).ok(), Some(decoded.clone()));
    Ok(Some(decoded))
}

/// Decodes `message` on every channel, with the checks of [`decode_checked`]; how many
/// channels accepted it.
fn decode_everywhere(
    codec: &Codec,
    message: &ZmqMessage,
    keyed: bool,
) -> Result<usize, TestCaseError> {
    let accepted = [
        decode_checked::<Broadcast>(codec, message, keyed)?.is_some(),
        decode_checked::<Event>(codec, message, keyed)?.is_some(),
        decode_checked::<VerifyTask>(codec, message, keyed)?.is_some(),
        decode_checked::<Reply>(codec, message, keyed)?.is_some(),
        decode_checked::<ReplayRequest>(codec, message, keyed)?.is_some(),
        decode_checked::<Replayed>(codec, message, keyed)?.is_some(),
    ];
    Ok(accepted.into_iter().filter(|&ok| ok).count())
}

fn round_trip<M>(codec: &Codec, sent: &Envelope<M>) -> Result<(), TestCaseError>
where
    M: Channel + PartialEq + Debug,
{
    let message = codec.encode(sent);
    prop_assert_eq!(
        message.get(0).map(|t| t.to_vec()),
        Some(sent.body.topic().as_bytes().to_vec())
    );
    match codec.decode::<M>(&message) {
        Ok(got) => prop_assert_eq!(&got, sent),
        Err(err) => prop_assert!(false, "{:?} did not decode: {}", sent, err),
    }
    Ok(())
}

/// One change to a message's frames: a byte flipped, inserted or removed, or a frame cut.
#[derive(Debug, Clone)]
enum Change {
    Flip { frame: usize, at: usize, mask: u8 },
    Insert { frame: usize, at: usize, byte: u8 },
    Remove { frame: usize, at: usize },
    Truncate { frame: usize, at: usize },
}

fn change() -> impl Strategy<Value = Change> {
    let (frame, at) = (any::<usize>(), any::<usize>());
    prop_oneof![
        (frame, at, 1..=u8::MAX).prop_map(|(frame, at, mask)| Change::Flip { frame, at, mask }),
        (frame, at, any::<u8>()).prop_map(|(frame, at, byte)| Change::Insert { frame, at, byte }),
        (frame, at).prop_map(|(frame, at)| Change::Remove { frame, at }),
        (frame, at).prop_map(|(frame, at)| Change::Truncate { frame, at }),
    ]
}

impl Change {
    /// Applies the change; `false` when it changed nothing (a byte removed from an empty frame).
    fn apply(&self, frames: &mut [Vec<u8>]) -> bool {
        let count = frames.len();
        let pick = |frame: usize| frame % count;
        match *self {
            Change::Flip { frame, at, mask } => {
                let f = &mut frames[pick(frame)];
                if f.is_empty() {
                    return false;
                }
                let at = at % f.len();
                f[at] ^= mask;
            }
            Change::Insert { frame, at, byte } => {
                let f = &mut frames[pick(frame)];
                let at = at % (f.len() + 1);
                f.insert(at, byte);
            }
            Change::Remove { frame, at } => {
                let f = &mut frames[pick(frame)];
                if f.is_empty() {
                    return false;
                }
                let at = at % f.len();
                f.remove(at);
            }
            Change::Truncate { frame, at } => {
                let f = &mut frames[pick(frame)];
                if f.is_empty() {
                    return false;
                }
                f.truncate(at % f.len());
            }
        }
        true
    }
}

/// A MessagePack value of any shape, to build envelopes the encoder never would.
#[derive(Debug, Clone)]
enum Pack {
    Nil,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Bin(Vec<u8>),
    Array(Vec<Pack>),
    Map(Vec<(String, Pack)>),
}

impl Serialize for Pack {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Pack::Nil => s.serialize_unit(),
            Pack::Bool(b) => s.serialize_bool(*b),
            Pack::Int(i) => s.serialize_i64(*i),
            Pack::UInt(u) => s.serialize_u64(*u),
            Pack::Float(f) => s.serialize_f64(*f),
            Pack::Str(t) => s.serialize_str(t),
            Pack::Bin(b) => s.serialize_bytes(b),
            Pack::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Pack::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

fn pack() -> impl Strategy<Value = Pack> {
    let leaf = prop_oneof![
        Just(Pack::Nil),
        any::<bool>().prop_map(Pack::Bool),
        any::<i64>().prop_map(Pack::Int),
        any::<u64>().prop_map(Pack::UInt),
        (0..4u64).prop_map(Pack::UInt),
        any::<f64>().prop_map(Pack::Float),
        text().prop_map(Pack::Str),
        bytes(8).prop_map(Pack::Bin),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Pack::Array),
            vec((text(), inner), 0..4).prop_map(Pack::Map),
        ]
    })
}

/// The request of a well-formed map: every field once, of the right type.
fn well_formed_request() -> impl Strategy<Value = (Pack, Envelope<ReplayRequest>)> {
    envelope(replay_request()).prop_map(|sent| {
        let topics = sent.body.topics.iter().cloned().map(Pack::Str).collect();
        let mut body = vec![
            ("epoch".to_owned(), Pack::UInt(sent.body.epoch)),
            ("after".to_owned(), Pack::UInt(sent.body.after)),
            (
                "max_events".to_owned(),
                Pack::UInt(u64::from(sent.body.max_events)),
            ),
        ];
        if !sent.body.topics.is_empty() {
            body.push(("topics".to_owned(), Pack::Array(topics)));
        }
        let map = Pack::Map(vec![
            ("v".to_owned(), Pack::UInt(u64::from(sent.v))),
            ("sender".to_owned(), Pack::Str(sent.sender.clone())),
            ("epoch".to_owned(), Pack::UInt(sent.epoch)),
            ("seq".to_owned(), Pack::UInt(sent.seq)),
            ("ts_ms".to_owned(), Pack::UInt(sent.ts_ms)),
            ("body".to_owned(), Pack::Map(body)),
        ]);
        (map, sent)
    })
}

/// One change to a map of a well-formed envelope, at the top level or in its body.
#[derive(Debug, Clone)]
enum Edit {
    Drop {
        body: bool,
        at: usize,
    },
    Retype {
        body: bool,
        at: usize,
        value: Pack,
    },
    Rename {
        body: bool,
        at: usize,
        name: String,
    },
    Repeat {
        body: bool,
        at: usize,
    },
    Add {
        body: bool,
        name: String,
        value: Pack,
    },
}

fn edit() -> impl Strategy<Value = Edit> {
    let (body, at) = (any::<bool>(), any::<usize>());
    prop_oneof![
        (body, at).prop_map(|(body, at)| Edit::Drop { body, at }),
        (body, at, pack()).prop_map(|(body, at, value)| Edit::Retype { body, at, value }),
        (body, at, text()).prop_map(|(body, at, name)| Edit::Rename { body, at, name }),
        (body, at).prop_map(|(body, at)| Edit::Repeat { body, at }),
        (body, text(), pack()).prop_map(|(body, name, value)| Edit::Add { body, name, value }),
    ]
}

impl Edit {
    /// Applies the edit; one that does not fit (a field of an empty map) changes nothing.
    fn apply(&self, map: &mut Pack) {
        let Pack::Map(top) = map else { return };
        let target = if self.body() {
            match top.iter_mut().find(|(name, _)| name == "body") {
                Some((_, Pack::Map(inner))) => inner,
                _ => return,
            }
        } else {
            top
        };
        let len = target.len();
        match self {
            Edit::Drop { at, .. } if len > 0 => {
                target.remove(at % len);
            }
            Edit::Retype { at, value, .. } if len > 0 => target[at % len].1 = value.clone(),
            Edit::Rename { at, name, .. } if len > 0 => target[at % len].0 = name.clone(),
            Edit::Repeat { at, .. } if len > 0 => {
                let field = target[at % len].clone();
                target.push(field);
            }
            Edit::Add { name, value, .. } => target.push((name.clone(), value.clone())),
            _ => {}
        }
    }

    fn body(&self) -> bool {
        match *self {
            Edit::Drop { body, .. }
            | Edit::Retype { body, .. }
            | Edit::Rename { body, .. }
            | Edit::Repeat { body, .. }
            | Edit::Add { body, .. } => body,
        }
    }
}

/// A map that is an envelope around a replay request, or nearly: fields dropped, of another
/// type, renamed, repeated, or added that nobody knows.
fn replay_request_map() -> impl Strategy<Value = Pack> {
    (well_formed_request(), vec(edit(), 0..3)).prop_map(|((mut map, _), edits)| {
        for edit in &edits {
            edit.apply(&mut map);
        }
        map
    })
}

fn packed(value: &Pack) -> Vec<u8> {
    rmp_serde::to_vec_named(value).expect("a value of strings and numbers serialises")
}

proptest! {
    // Each property runs in well under a second in a debug build; failures are reported with
    // their shrunk input rather than kept in a regressions file.
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_encoded_message_decodes_back_to_itself_with_and_without_a_key(
        (codec, _) in codec(),
        broadcast in envelope(broadcast()),
        task in envelope(task()),
        reply in envelope(reply()),
        request in envelope(replay_request()),
        replayed in envelope(replayed()),
    ) {
        round_trip(&codec, &broadcast)?;
        round_trip(&codec, &task)?;
        round_trip(&codec, &reply)?;
        round_trip(&codec, &request)?;
        round_trip(&codec, &replayed)?;
    }

    #[test]
    fn any_frames_decode_without_a_panic_and_only_as_what_an_encoder_sends(
        (codec, keyed) in codec(),
        topic in prop_oneof![proptest::sample::select(TOPICS).prop_map(|t| t.as_bytes().to_vec()), bytes(24)],
        rest in vec(bytes(48), 0..5),
    ) {
        let frame_count = 1 + rest.len();
        let input = message([vec![topic], rest].concat()).expect("at least the topic frame");
        let accepted = decode_everywhere(&codec, &input, keyed)?;
        // Random bytes are no tagged message; without a key the frame count must still be 2.
        if keyed || frame_count != 2 {
            prop_assert_eq!(accepted, 0);
        }
        let expected = if keyed { 3 } else { 2 };
        if frame_count != expected {
            let refused = codec.decode::<Reply>(&input);
            prop_assert!(
                matches!(refused, Err(DecodeError::FrameCount { expected: e, got }) if e == expected && got == frame_count),
                "{:?}", refused
            );
        }
    }

    #[test]
    fn a_changed_untagged_message_decodes_only_as_what_an_encoder_sends(
        header in envelope(Just(())),
        sent in any_message(),
        changes in vec(change(), 1..4),
        new_topic in proptest::option::of(proptest::sample::select(TOPICS)),
    ) {
        let codec = Codec::default();
        let mut parts = frames(&encode(&codec, header, sent));
        for change in &changes {
            change.apply(&mut parts);
        }
        if let Some(topic) = new_topic {
            parts[0] = topic.as_bytes().to_vec();
        }
        let input = message(parts).expect("two frames");
        decode_everywhere(&codec, &input, false)?;
    }

    #[test]
    fn a_tagged_message_with_any_byte_changed_never_decodes(
        codec in keyed_codec(),
        header in envelope(Just(())),
        sent in any_message(),
        change in change(),
    ) {
        let mut parts = frames(&encode(&codec, header, sent));
        prop_assume!(change.apply(&mut parts));
        let input = message(parts).expect("three frames");
        prop_assert_eq!(decode_everywhere(&codec, &input, true)?, 0);
        prop_assert!(matches!(codec.decode::<Broadcast>(&input), Err(DecodeError::BadTag)));
    }

    #[test]
    fn a_message_tagged_with_another_key_never_decodes(
        sender in keyed_codec(),
        receiver in keyed_codec(),
        header in envelope(Just(())),
        sent in any_message(),
    ) {
        let input = encode(&sender, header, sent);
        prop_assert_eq!(decode_everywhere(&receiver, &input, true)?, 0);
    }

    #[test]
    fn a_replay_request_of_any_bytes_is_refused_without_a_panic(packed in bytes(96)) {
        let mut input = ZmqMessage::from(REPLAY_REQUEST_TOPIC);
        input.push_back(Bytes::from(packed));
        decode_checked::<ReplayRequest>(&Codec::default(), &input, false)?;
    }

    #[test]
    fn a_replay_request_of_any_shape_decodes_only_when_it_is_one(map in replay_request_map()) {
        let mut input = ZmqMessage::from(REPLAY_REQUEST_TOPIC);
        input.push_back(Bytes::from(packed(&map)));
        decode_checked::<ReplayRequest>(&Codec::default(), &input, false)?;
    }

    #[test]
    fn a_replay_request_written_by_hand_reads_as_the_request_it_spells(
        (map, sent) in well_formed_request(),
    ) {
        let mut input = ZmqMessage::from(REPLAY_REQUEST_TOPIC);
        input.push_back(Bytes::from(packed(&map)));
        let got = decode_checked::<ReplayRequest>(&Codec::default(), &input, false)?;
        prop_assert_eq!(got, Some(sent));
    }

    #[test]
    fn a_replay_request_keeps_its_topic_prefixes_through_a_round_trip(
        (codec, _) in codec(),
        sent in envelope(replay_request()),
    ) {
        let got = codec.decode::<ReplayRequest>(&codec.encode(&sent)).expect("it decodes");
        prop_assert_eq!(&got.body.topics, &sent.body.topics);
        prop_assert_eq!(got, sent);
    }

    #[test]
    fn an_envelope_of_another_version_is_named_as_such(
        v in any::<u16>().prop_filter("another version", |v| *v != PROTOCOL_VERSION),
        sent in envelope(replay_request()),
    ) {
        let codec = Codec::default();
        let message = codec.encode(&Envelope { v, ..sent });
        let got = codec.decode::<ReplayRequest>(&message);
        prop_assert!(matches!(got, Err(DecodeError::UnknownVersion(got)) if got == v), "{:?}", got);
    }
}

#[test]
fn an_envelope_nested_beyond_any_message_is_refused_without_exhausting_the_stack() {
    // An unknown field holding arrays in arrays, as deep as a 4 MiB message allows; serde
    // skips an unknown field by reading through it, so only a depth limit stops recursion.
    let depth = 100_000;
    let mut packed = vec![0x86]; // a map of six entries: the request's five header fields…
    for (name, value) in [("v", 1u8), ("epoch", 0), ("seq", 0), ("ts_ms", 0)] {
        packed.extend(rmp_serde::to_vec(name).expect("a string"));
        packed.push(value);
    }
    packed.extend(rmp_serde::to_vec("sender").expect("a string"));
    packed.extend(rmp_serde::to_vec("s").expect("a string"));
    packed.extend(rmp_serde::to_vec("deep").expect("a string")); // …and one nobody knows.
    packed.extend(std::iter::repeat_n(0x91, depth)); // an array of one element, nested
    packed.push(0xc0);
    let mut input = ZmqMessage::from(REPLAY_REQUEST_TOPIC);
    input.push_back(Bytes::from(packed));
    assert!(Codec::default().decode::<ReplayRequest>(&input).is_err());
}
