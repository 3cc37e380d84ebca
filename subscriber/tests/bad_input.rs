//! The subscriber binary against a PUB socket the test controls: garbage is counted and
//! dropped, never a crash; a jump in numbering is an explicit gap line.

use bytes::Bytes;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use test_support::{PATIENCE, Process, wait_until};
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

/// Starts the subscriber binary in `dir` with `env`.
fn start_subscriber(dir: &Path, env: &[(&str, String)]) -> Process {
    Process::start(env!("CARGO_BIN_EXE_subscriber").as_ref(), dir, env)
}

/// A message made of `frames`.
fn frames(frames: Vec<Bytes>) -> ZmqMessage {
    ZmqMessage::try_from(frames).expect("at least one frame")
}

#[tokio::test]
async fn garbage_is_dropped_and_a_numbering_jump_is_a_gap_line() {
    // Arrange: a subscriber that has logged a first event from our PUB socket.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("subscriber.log");
    let mut socket = PubSocket::new();
    let endpoint = socket
        .bind("tcp://127.0.0.1:0")
        .await
        .expect("PUB binds port 0");
    let mut subscriber = start_subscriber(
        dir.path(),
        &[
            ("EVENTS_CONNECT", endpoint.to_string()),
            ("LOG_FILE", log.display().to_string()),
        ],
    );
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    // The PUB socket drops what it sends before the subscriber is connected: send until seen.
    wait_until("the first event in the log", PATIENCE, async || {
        socket.send(downcase(1, "First")).await.expect("PUB sends");
        read().contains("First").then_some(())
    })
    .await;
    let garbage = [
        ZmqMessage::from("downcase"),
        frames(vec![
            Bytes::from("downcase"),
            Bytes::from_static(&[0xc1, 0xff]),
        ]),
        frames(vec![Bytes::from("no.such.topic"), Bytes::from("x")]),
        frames(vec![Bytes::from_static(&[0xff]), Bytes::from("x")]),
        frames(vec![
            Bytes::from("a"),
            Bytes::from("b"),
            Bytes::from("c"),
            Bytes::from("d"),
        ]),
    ];

    // Act
    for message in garbage {
        socket.send(message).await.expect("PUB sends");
    }
    for message in [
        downcase(2, "Second"),
        event(
            2,
            Broadcast::Heartbeat(Heartbeat {
                last_seq: 2,
                replay: false,
            }),
        ),
        downcase(2, "Second again"),
        downcase(6, "Sixth"),
    ] {
        socket.send(message).await.expect("PUB sends");
    }
    wait_until(
        "the sixth event in the log",
        Duration::from_secs(10),
        async || read().contains("Sixth").then_some(()),
    )
    .await;
    let running_after_garbage = subscriber.exited().is_none();
    let status = subscriber.terminate(PATIENCE).await;

    // Assert
    assert!(running_after_garbage, "still running after garbage");
    let text = read();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].ends_with(" downcase fake-pub#1 param=\"First\" result=\"first\""));
    assert!(lines[1].ends_with(" downcase fake-pub#2 param=\"Second\" result=\"second\""));
    assert!(lines[2].ends_with(" gap fake-pub#3 last=5 missing=3 reason=\"not received\""));
    assert!(lines[3].contains(" downcase fake-pub#6 "));
    assert!(!text.contains("heartbeat"));
    assert!(status.success(), "exit on SIGTERM: {status}");
    let stderr = subscriber.stderr();
    assert!(
        stderr.contains("dropped a message that could not be decoded"),
        "{stderr}"
    );
    assert!(stderr.contains("rejected=5"), "{stderr}");
}

#[tokio::test]
async fn an_unwritable_log_file_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().expect("a temporary directory");

    let mut subscriber = start_subscriber(
        dir.path(),
        &[("LOG_FILE", "/nonexistent-dir/subscriber.log".into())],
    );
    let status = subscriber.exit_status(PATIENCE).await;

    assert!(!status.success());
    let stderr = subscriber.stderr();
    assert!(
        stderr.contains("cannot open LOG_FILE /nonexistent-dir/subscriber.log"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_unreadable_log_directory_is_a_clear_error_at_start() {
    // Arrange: a log directory nobody may enter, and a subscriber without the capabilities
    // that let root ignore that (the tests run as root).
    let dir = tempfile::tempdir().expect("a temporary directory");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("a log directory");
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o000))
        .expect("the log directory made unreadable");
    let log = logs.join("subscriber.log");

    // Act
    let mut setpriv = std::process::Command::new("setpriv");
    setpriv
        .arg("--bounding-set=-dac_override,-dac_read_search")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_subscriber"));
    let mut subscriber = Process::start_command(
        setpriv,
        "subscriber",
        dir.path(),
        &[("LOG_FILE", log.display().to_string())],
    );
    let status = subscriber.exit_status(PATIENCE).await;

    // Assert
    assert!(!status.success());
    let stderr = subscriber.stderr();
    let clear = format!("cannot open LOG_FILE {}", log.display());
    assert!(stderr.contains(&clear), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn a_malformed_endpoint_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("a temporary directory");

    let mut subscriber =
        start_subscriber(dir.path(), &[("EVENTS_CONNECT", "localhost:4444".into())]);
    let status = subscriber.exit_status(PATIENCE).await;

    assert_eq!(status.code(), Some(2));
    let stderr = subscriber.stderr();
    assert!(
        stderr.contains("is not a ZMQ endpoint like tcp://host:port"),
        "{stderr}"
    );
}
