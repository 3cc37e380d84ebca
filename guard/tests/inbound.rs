//! Attacks over raw TCP on a real zeromq PULL socket behind a bind-side guard: each is cut
//! where it should be and counted, and a real PUSH socket still delivers afterwards.

mod helpers;

use guard::Limits;
use helpers::{GuardedPull, STEP, frame, greeting, handshake, long_header, within};
use std::time::Duration;
use zeromq::SocketRecv;

fn limits() -> Limits {
    Limits {
        max_message_bytes: 64 * 1024,
        handshake_timeout: STEP / 2,
        ..Limits::default()
    }
}

#[tokio::test]
async fn random_bytes_are_cut_and_a_real_push_still_delivers() {
    let mut guarded = GuardedPull::start("random_bytes", limits()).await;
    let mut attacker = guarded.raw_peer().await;

    attacker
        .send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 random TLS-ish noise")
        .await;

    assert!(attacker.is_cut().await);
    assert_eq!(guarded.cuts("bad_greeting"), 1);
    guarded.assert_delivers().await;
}

#[tokio::test]
async fn a_truncated_greeting_is_cut_when_the_handshake_times_out() {
    let limits = Limits {
        handshake_timeout: Duration::from_millis(300),
        ..limits()
    };
    let mut guarded = GuardedPull::start("truncated_greeting", limits).await;
    let mut attacker = guarded.raw_peer().await;

    attacker.send(&greeting(b"NULL")[..20]).await;

    assert!(attacker.stays_open_for(Duration::from_millis(100)).await);
    assert!(attacker.is_cut().await);
    assert_eq!(guarded.cuts("handshake_timeout"), 1);
    guarded.assert_delivers().await;
}

#[tokio::test]
async fn a_greeting_without_ready_is_cut_when_the_handshake_times_out() {
    let limits = Limits {
        handshake_timeout: Duration::from_millis(300),
        ..limits()
    };
    let mut guarded = GuardedPull::start("greeting_only", limits).await;
    let mut attacker = guarded.raw_peer().await;

    attacker.send(&greeting(b"NULL")).await;

    assert!(attacker.is_cut().await);
    assert_eq!(guarded.cuts("handshake_timeout"), 1);
    guarded.assert_delivers().await;
}

#[tokio::test]
async fn greetings_with_plain_or_curve_are_cut() {
    let mut guarded = GuardedPull::start("mechanism", limits()).await;

    for mechanism in [&b"PLAIN"[..], b"CURVE"] {
        let mut attacker = guarded.raw_peer().await;
        attacker.send(&greeting(mechanism)).await;
        assert!(attacker.is_cut().await, "{mechanism:?}");
    }

    assert_eq!(guarded.cuts("mechanism"), 2);
    guarded.assert_delivers().await;
}

#[tokio::test]
async fn a_frame_announcing_2_to_the_40_bytes_is_cut_before_the_library_sees_it() {
    let mut guarded = GuardedPull::start("huge_frame", limits()).await;
    let mut attacker = guarded.raw_peer().await;
    attacker.handshake("PUSH").await;

    attacker.send(&long_header(false, 1 << 40)).await;

    assert!(attacker.is_cut().await);
    assert_eq!(guarded.cuts("oversize_frame"), 1);
    // Unguarded, zmq.rs would have tried to reserve a terabyte and aborted the process.
    guarded.assert_delivers().await;
}

#[tokio::test]
async fn a_multipart_message_whose_parts_add_up_past_the_limit_is_cut() {
    let mut guarded = GuardedPull::start("big_multipart", limits()).await;
    let mut attacker = guarded.raw_peer().await;
    attacker.handshake("PUSH").await;
    let part = vec![b'x'; 20 * 1024];

    for _ in 0..3 {
        attacker.send(&frame(true, &part)).await;
    }
    // The fourth part's header alone takes the message past 64 KiB.
    attacker.send(&long_header(false, part.len() as u64)).await;

    assert!(attacker.is_cut().await);
    assert_eq!(guarded.cuts("oversize_message"), 1);
    guarded.assert_delivers().await;
}

#[tokio::test]
async fn a_valid_frame_with_a_garbage_body_passes_the_guard() {
    let mut guarded = GuardedPull::start("garbage_body", limits()).await;
    let mut peer = guarded.raw_peer().await;
    peer.handshake("PUSH").await;
    let garbage: Vec<u8> = (0..=255u8).rev().cycle().take(1000).collect();

    peer.send(&frame(true, b"\xff\x00\x7f")).await;
    peer.send(&frame(false, &garbage)).await;

    // The guard does not judge bodies: the library gets the message as sent.
    let received = within("PULL recv", guarded.pull.recv()).await.unwrap();
    assert_eq!(received.len(), 2);
    assert_eq!(received.get(1).map(|b| b.to_vec()), Some(garbage));
    assert!(peer.stays_open_for(Duration::from_millis(200)).await);
    let all_cuts = helpers::metric("guard_cut_total", guarded.name, None);
    assert_eq!(all_cuts, 0);
    guarded.assert_delivers().await;
}

#[tokio::test]
async fn a_well_behaved_raw_push_peer_is_relayed_like_any_other() {
    let mut guarded = GuardedPull::start("raw_push", limits()).await;
    let mut peer = guarded.raw_peer().await;

    // Greeting and READY split at awkward points, as a slow network might deliver them.
    let bytes = [handshake("PUSH"), frame(false, b"hello")].concat();
    for piece in bytes.chunks(7) {
        peer.send(piece).await;
    }

    let received = within("PULL recv", guarded.pull.recv()).await.unwrap();
    assert_eq!(received.get(0).map(|b| &b[..]), Some(&b"hello"[..]));
}
