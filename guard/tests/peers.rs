//! The guard under many peers, too many peers, a peer that stops reading, and on the connect
//! side of a SUB socket — all with real zeromq sockets on loopback.

mod helpers;

use guard::{Guard, InnerAddr, Limits};
use helpers::{GuardedPull, RawPeer, cuts, eventually, frame, metric, record_metrics, within};
use std::time::Duration;
use zeromq::{Socket, SocketRecv, SocketSend};

#[tokio::test]
async fn two_thousand_connections_opened_and_dropped_leave_the_guard_serving() {
    let mut guarded = GuardedPull::start("churn", Limits::default()).await;

    for i in 0..2000 {
        let mut peer = guarded.raw_peer().await;
        if i % 2 == 0 {
            // Half of them get as far as a partial greeting before they go.
            peer.send(&helpers::greeting(b"NULL")[..10]).await;
        }
    }

    guarded.assert_delivers().await;
    eventually("the dropped connections are no longer active", || {
        metric("guard_connections_active", "churn", None) <= 1
    })
    .await;
    assert!(metric("guard_connections_total", "churn", None) >= 2001);
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_and_counted() {
    let limits = Limits {
        max_connections: 3,
        ..Limits::default()
    };
    let mut guarded = GuardedPull::start("cap", limits).await;
    let mut admitted = Vec::new();
    for _ in 0..3 {
        let mut peer = guarded.raw_peer().await;
        peer.handshake("PUSH").await;
        admitted.push(peer);
    }

    let mut extra = guarded.raw_peer().await;

    assert!(extra.is_cut().await);
    assert_eq!(guarded.cuts("over_capacity"), 1);
    for peer in &mut admitted {
        assert!(peer.stays_open_for(Duration::from_millis(50)).await);
    }
    admitted.pop();
    eventually("a slot frees up", || {
        metric("guard_connections_active", "cap", None) < 3
    })
    .await;
    guarded.assert_delivers().await;
}

#[tokio::test]
async fn a_sub_behind_a_connect_side_guard_receives_from_a_pub() {
    record_metrics();
    let mut publisher = zeromq::PubSocket::new();
    let remote = publisher.bind("tcp://127.0.0.1:0").await.unwrap();
    let guard = Guard::connect_side(&remote.to_string(), Limits::default(), "connect_side")
        .await
        .unwrap();
    let mut subscriber = zeromq::SubSocket::new();
    within("SUB connect", subscriber.connect(&guard.local_endpoint()))
        .await
        .unwrap();
    subscriber.subscribe("events.").await.unwrap();

    // PUB drops what it sends before the subscription has arrived: send until one lands.
    let received = within("a message through the guard", async {
        loop {
            publisher.send("events.one".into()).await.unwrap();
            let wait = tokio::time::timeout(Duration::from_millis(50), subscriber.recv());
            if let Ok(message) = wait.await {
                return message.unwrap();
            }
        }
    })
    .await;

    assert_eq!(received.get(0).map(|b| &b[..]), Some(&b"events.one"[..]));
    assert_eq!(metric("guard_connections_active", "connect_side", None), 1);
}

#[tokio::test]
async fn a_remote_that_refuses_closes_the_local_connection() {
    // A port that was just free: nothing listens on it.
    let vacant = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let remote = vacant.local_addr().unwrap();
    drop(vacant);
    let guard = Guard::connect_side(&remote.to_string(), Limits::default(), "refused")
        .await
        .unwrap();

    let inner = guard.local_endpoint();
    let inner = inner.strip_prefix("ipc://").expect("an internal endpoint");
    let mut local = within("local connect", tokio::net::UnixStream::connect(inner))
        .await
        .expect("local connect");

    // The guard cannot reach the remote, so it closes ours: the read ends.
    let mut byte = [0u8; 1];
    let read = within(
        "closed",
        tokio::io::AsyncReadExt::read(&mut local, &mut byte),
    )
    .await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_cut_as_a_slow_peer() {
    record_metrics();
    let mut publisher = zeromq::PubSocket::new();
    let inner = InnerAddr::new("slow_peer");
    publisher.bind(&inner.endpoint()).await.unwrap();
    let limits = Limits {
        outbound_budget_bytes: Some(256 * 1024),
        ..Limits::default()
    };
    let guard = Guard::bind("127.0.0.1:0", &inner, limits, "slow_peer")
        .await
        .unwrap();
    let addr = guard.local_addr().expect("bind side");
    let mut stopped = RawPeer::connect_with_small_window(addr, 4096).await;
    stopped.handshake("SUB").await;
    // ZMTP 3.0 SUBSCRIBE: a message frame of 0x01 and the prefix (empty: everything).
    stopped.send(&frame(false, b"\x01")).await;

    // Then it never reads again, while the PUB keeps sending.
    let payload = vec![b'e'; 16 * 1024];
    within("the slow peer is cut", async {
        while cuts("slow_peer", "slow_peer") == 0 {
            for _ in 0..64 {
                publisher.send(payload.clone().into()).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;

    assert!(stopped.is_cut().await);
    assert_eq!(cuts("slow_peer", "slow_peer"), 1);
}

#[tokio::test]
async fn a_guard_that_is_shut_down_closes_its_connections_and_stops_listening() {
    let guarded = GuardedPull::start("shutdown", Limits::default()).await;
    let addr = guarded.addr();
    let mut peer = guarded.raw_peer().await;
    peer.handshake("PUSH").await;

    guarded.guard.shutdown().await;

    assert!(peer.is_cut().await);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn guards_of_one_name_add_up_in_the_active_connections_gauge() {
    // A verifier has a `tasks-in` guard per publisher: the gauge is their sum.
    let one = GuardedPull::start("same_name", Limits::default()).await;
    let two = GuardedPull::start("same_name", Limits::default()).await;
    let mut peers = Vec::new();
    for guarded in [&one, &two, &two] {
        let mut peer = guarded.raw_peer().await;
        peer.handshake("PUSH").await;
        peers.push(peer);
    }
    eventually("three connections are active over both guards", || {
        metric("guard_connections_active", "same_name", None) == 3
    })
    .await;

    two.guard.shutdown().await;

    eventually("the one left is counted", || {
        metric("guard_connections_active", "same_name", None) == 1
    })
    .await;
}
