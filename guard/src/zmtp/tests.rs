//! Unit and property tests of the ZMTP inspector, on bytes built the way zmq.rs and libzmq
//! write them.

use super::*;
use proptest::prelude::*;

const LIMITS: FrameLimits = FrameLimits {
    max_message_bytes: 1000,
    max_command_bytes: 100,
};

/// A greeting as zmq.rs 0.7 writes it: version 3.0, NULL, not as-server.
fn greeting() -> Vec<u8> {
    greeting_with(b"NULL", 3, 0)
}

fn greeting_with(mechanism: &[u8], major: u8, minor: u8) -> Vec<u8> {
    let mut g = vec![0u8; GREETING_LEN];
    g[0] = 0xFF;
    g[9] = 0x7F;
    g[10] = major;
    g[11] = minor;
    g[MECHANISM_AT..MECHANISM_AT + mechanism.len()].copy_from_slice(mechanism);
    g
}

/// A READY command with one Socket-Type property, encoded as zmq.rs encodes it.
fn ready(socket_type: &[u8]) -> Vec<u8> {
    let mut body = vec![5];
    body.extend_from_slice(b"READY");
    body.push(11);
    body.extend_from_slice(b"Socket-Type");
    body.extend_from_slice(&(socket_type.len() as u32).to_be_bytes());
    body.extend_from_slice(socket_type);
    let mut frame = vec![COMMAND, body.len() as u8];
    frame.extend_from_slice(&body);
    frame
}

fn frame(flags: u8, body: &[u8]) -> Vec<u8> {
    let mut f = vec![flags];
    if flags & LONG != 0 {
        f.extend_from_slice(&(body.len() as u64).to_be_bytes());
    } else {
        f.push(body.len() as u8);
    }
    f.extend_from_slice(body);
    f
}

fn handshake() -> Vec<u8> {
    [greeting(), ready(b"PUSH")].concat()
}

fn verdict(bytes: &[u8]) -> (Result<(), Violation>, u64) {
    let mut inspector = Inspector::new(LIMITS);
    let result = inspector.feed(bytes);
    (result, inspector.position())
}

#[test]
fn a_zmq_rs_greeting_and_ready_pass_and_complete_the_handshake() {
    let mut inspector = Inspector::new(LIMITS);
    assert_eq!(inspector.feed(&greeting()), Ok(()));
    assert!(!inspector.handshake_done());
    assert_eq!(inspector.feed(&ready(b"PUSH")), Ok(()));
    assert!(inspector.handshake_done());
}

#[test]
fn a_libzmq_greeting_with_version_3_1_and_compatibility_padding_passes() {
    let mut g = greeting_with(b"NULL", 3, 1);
    g[8] = 1; // libzmq's padding ends in 1 so that ZMTP 1.0 peers read a length.
    g[32] = 1;
    assert_eq!(verdict(&[g, ready(b"SUB")].concat()).0, Ok(()));
}

#[test]
fn a_wrong_first_byte_is_refused_at_once() {
    assert_eq!(
        verdict(b"GET / HTTP/1.1\r\n"),
        (Err(Violation::BadGreeting), 0)
    );
}

#[test]
fn a_wrong_signature_end_is_refused_at_its_byte() {
    let mut g = greeting();
    g[9] = 0;
    assert_eq!(verdict(&g), (Err(Violation::BadGreeting), 9));
}

#[test]
fn a_major_version_other_than_3_is_refused() {
    for major in [1, 2, 4, 255] {
        let g = greeting_with(b"NULL", major, 0);
        assert_eq!(verdict(&g), (Err(Violation::BadGreeting), 10), "{major}");
    }
}

#[test]
fn plain_curve_and_unknown_mechanisms_are_refused() {
    for mechanism in [&b"PLAIN"[..], b"CURVE", b"NULLX", b"NUL", b"GSSAPI"] {
        let g = greeting_with(mechanism, 3, 0);
        assert_eq!(verdict(&g).0, Err(Violation::Mechanism), "{mechanism:?}");
    }
}

#[test]
fn flags_with_unknown_bits_are_refused() {
    for flags in [0x08, 0x10, 0x80, 0xFF] {
        let input = [handshake(), vec![flags, 1, 0]].concat();
        assert_eq!(verdict(&input).0, Err(Violation::BadFlags), "{flags:#x}");
    }
}

#[test]
fn a_command_with_more_set_is_refused() {
    let input = [greeting(), frame(COMMAND | MORE, b"\x05READY")].concat();
    assert_eq!(verdict(&input).0, Err(Violation::BadFlags));
}

#[test]
fn a_frame_announcing_2_to_the_40_bytes_is_refused_on_its_header() {
    let mut input = handshake();
    input.push(LONG);
    input.extend_from_slice(&(1u64 << 40).to_be_bytes());
    let header_end = input.len() as u64;
    assert_eq!(
        verdict(&input),
        (Err(Violation::OversizeFrame), header_end - 1)
    );
}

#[test]
fn a_frame_of_exactly_the_limit_passes() {
    let input = [handshake(), frame(LONG, &[7; 1000])].concat();
    assert_eq!(verdict(&input).0, Ok(()));
}

#[test]
fn parts_adding_up_past_the_limit_are_refused_and_the_sum_restarts_per_message() {
    let part = [0u8; 400];
    let ok = [
        handshake(),
        frame(LONG | MORE, &part),
        frame(LONG, &part),
        frame(LONG | MORE, &part),
        frame(LONG, &part),
    ]
    .concat();
    assert_eq!(verdict(&ok).0, Ok(()));

    let mut input = [ok, frame(LONG | MORE, &part), frame(LONG | MORE, &part)].concat();
    assert_eq!(verdict(&input).0, Ok(()));
    input.push(LONG);
    input.extend_from_slice(&400u64.to_be_bytes());
    assert_eq!(verdict(&input).0, Err(Violation::OversizeMessage));
}

#[test]
fn a_command_over_the_command_limit_is_refused() {
    let input = [greeting(), frame(COMMAND | LONG, &[5; 101])].concat();
    assert_eq!(verdict(&input).0, Err(Violation::OversizeCommand));
}

#[test]
fn long_encoded_small_frames_and_empty_frames_pass() {
    let input = [
        handshake(),
        frame(LONG | MORE, b"topic"),
        frame(MORE, b""),
        frame(0, b""),
    ]
    .concat();
    assert_eq!(verdict(&input).0, Ok(()));
}

#[test]
fn garbage_bodies_are_not_judged() {
    let input = [handshake(), frame(MORE, &[0xFF; 200]), frame(0, b"\0\x7F")].concat();
    assert_eq!(verdict(&input).0, Ok(()));
}

#[test]
fn a_refusal_sticks_whatever_comes_next() {
    let mut inspector = Inspector::new(LIMITS);
    assert_eq!(inspector.feed(b"\x00"), Err(Violation::BadGreeting));
    assert_eq!(inspector.feed(&handshake()), Err(Violation::BadGreeting));
    assert_eq!(inspector.position(), 0);
}

#[test]
fn the_handshake_is_not_done_until_the_first_command_has_passed_whole() {
    let input = handshake();
    let mut inspector = Inspector::new(LIMITS);
    assert_eq!(inspector.feed(&input[..input.len() - 1]), Ok(()));
    assert!(!inspector.handshake_done());
    assert_eq!(inspector.feed(&input[input.len() - 1..]), Ok(()));
    assert!(inspector.handshake_done());
}

/// Feeds `input` in pieces cut at `cuts` (positions, any order, any repeats).
fn verdict_in_pieces(input: &[u8], cuts: &[usize]) -> (Result<(), Violation>, u64) {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.push(0);
    points.push(input.len());
    points.sort_unstable();
    let mut inspector = Inspector::new(LIMITS);
    let mut result = Ok(());
    for pair in points.windows(2) {
        result = inspector.feed(&input[pair[0]..pair[1]]);
    }
    (result, inspector.position())
}

fn stream_after_handshake() -> impl Strategy<Value = Vec<u8>> {
    // Mostly plausible frames so the frame states are reached, with arbitrary bytes mixed in.
    let frame_bytes =
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..300)).prop_map(|(flags, body)| {
            let flags = if flags % 4 == 0 { flags } else { flags & 0b111 };
            frame(flags, &body)
        });
    proptest::collection::vec(frame_bytes, 0..8)
        .prop_map(|frames| [handshake(), frames.concat()].concat())
}

proptest! {
    #[test]
    fn arbitrary_bytes_in_arbitrary_chunks_never_panic_and_split_the_same(
        input in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
    ) {
        prop_assert_eq!(verdict_in_pieces(&input, &cuts), verdict(&input));
    }

    #[test]
    fn frame_streams_split_anywhere_give_the_same_verdict(
        input in stream_after_handshake(),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
    ) {
        prop_assert_eq!(verdict_in_pieces(&input, &cuts), verdict(&input));
    }

    #[test]
    fn a_greeting_with_any_padding_minor_version_and_filler_passes(
        padding in proptest::array::uniform8(any::<u8>()),
        minor in any::<u8>(),
        tail in proptest::collection::vec(any::<u8>(), 32),
    ) {
        let mut g = greeting_with(b"NULL", 3, minor);
        g[1..9].copy_from_slice(&padding);
        g[32..].copy_from_slice(&tail);
        prop_assert_eq!(verdict(&g).0, Ok(()));
    }
}
