//! The subscriber binary against a PUB socket the test controls: garbage is counted and
//! dropped, never a crash; a jump in numbering is an explicit gap line.

use bytes::Bytes;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wire::{Broadcast, Codec, Downcase, Event, Heartbeat, Origin};
use zeromq::{PubSocket, Socket, SocketSend, ZmqMessage};

fn event(seq: u64, body: Broadcast) -> ZmqMessage {
    let fake = Origin {
        id: "fake-pub".into(),
        epoch: 1,
    };
    Codec::default().encode(&fake.envelope(seq, body))
}

fn downcase(seq: u64, param: &str) -> ZmqMessage {
    event(
        seq,
        Broadcast::Event(Event::Downcase(Downcase {
            param: param.into(),
            result: param.to_lowercase(),
        })),
    )
}

/// Sends `message` until `done` says it arrived (the PUB socket drops while no one listens).
async fn send_until(socket: &mut PubSocket, message: ZmqMessage, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        socket.send(message.clone()).await.expect("send");
        assert!(start.elapsed() < Duration::from_secs(20), "never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn garbage_is_dropped_and_a_numbering_jump_is_a_gap_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("subscriber.log");
    let mut socket = PubSocket::new();
    let endpoint = socket.bind("tcp://127.0.0.1:0").await.unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_subscriber"))
        .env("EVENTS_CONNECT", endpoint.to_string())
        .env("LOG_FILE", &log)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();

    send_until(&mut socket, downcase(1, "First"), || {
        read().contains("First")
    })
    .await;
    let garbage = [
        ZmqMessage::from("downcase"),
        ZmqMessage::try_from(vec![
            Bytes::from("downcase"),
            Bytes::from_static(&[0xc1, 0xff]),
        ])
        .unwrap(),
        ZmqMessage::try_from(vec![Bytes::from("no.such.topic"), Bytes::from("x")]).unwrap(),
        ZmqMessage::try_from(vec![Bytes::from_static(&[0xff]), Bytes::from("x")]).unwrap(),
        ZmqMessage::try_from(vec![
            Bytes::from("a"),
            Bytes::from("b"),
            Bytes::from("c"),
            Bytes::from("d"),
        ])
        .unwrap(),
    ];
    for message in garbage {
        socket.send(message).await.unwrap();
    }
    socket.send(downcase(2, "Second")).await.unwrap();
    socket
        .send(event(
            2,
            Broadcast::Heartbeat(Heartbeat {
                last_seq: 2,
                replay: false,
            }),
        ))
        .await
        .unwrap();
    socket.send(downcase(2, "Second again")).await.unwrap();
    socket.send(downcase(6, "Sixth")).await.unwrap();
    let start = Instant::now();
    while !read().contains("Sixth") {
        assert!(start.elapsed() < Duration::from_secs(10), "log: {}", read());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running after garbage"
    );

    let text = read();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].ends_with(" downcase fake-pub#1 param=\"First\" result=\"first\""));
    assert!(lines[1].ends_with(" downcase fake-pub#2 param=\"Second\" result=\"second\""));
    assert!(lines[2].ends_with(" gap fake-pub#3 last=5 missing=3 reason=\"not received\""));
    assert!(lines[3].contains(" downcase fake-pub#6 "));
    assert!(!text.contains("heartbeat"));

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit on SIGTERM: {status}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("dropped a message that could not be decoded"),
        "{stderr}"
    );
    assert!(stderr.contains("rejected=5"), "{stderr}");
}

#[test]
fn an_unwritable_log_file_is_a_clear_error_at_start() {
    let output = Command::new(env!("CARGO_BIN_EXE_subscriber"))
        .env("LOG_FILE", "/nonexistent-dir/subscriber.log")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot open LOG_FILE /nonexistent-dir/subscriber.log"),
        "{stderr}"
    );
}

#[test]
fn a_malformed_endpoint_is_refused_with_a_clear_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_subscriber"))
        .env("EVENTS_CONNECT", "localhost:4444")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is not a ZMQ endpoint like tcp://host:port"),
        "{stderr}"
    );
}
