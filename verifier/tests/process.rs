//! The compiled `verifier` binary as a child process, against a stand-in publisher made of real
//! ZMQ sockets bound on this machine: heartbeats, verdicts, publisher restarts, garbage on the
//! wire, shared-key tags and SIGTERM.

use std::path::PathBuf;
use std::time::{Duration, Instant};
use test_support::openssl::KeyFolder;
use test_support::{Process, wait_until};
use wire::{
    Codec, Envelope, Origin, PROTOCOL_VERSION, Reply, SharedKey, SignatureStatus, Verdict,
    VerifierHeartbeat, VerifyTask,
};
use zeromq::{PullSocket, PushSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

/// Generous bound for anything that should take well under a second.
const PATIENCE: Duration = Duration::from_secs(15);
/// What "within a few seconds" means for recovering from a publisher restart.
const RECOVERY: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// The stand-in publisher: its task PUSH and result PULL, as the real one binds them.

struct Publisher {
    tasks: PushSocket,
    results: PullSocket,
    tasks_endpoint: String,
    results_endpoint: String,
    codec: Codec,
    /// The last envelope seq seen per verifier epoch; every message must be +1.
    last_seq: Option<(u64, u64)>,
}

/// Binds `endpoint`, retrying within a bound: a closed listener's port on a restart is
/// released asynchronously.
async fn bind_retrying(socket: &mut impl Socket, endpoint: &str) -> zeromq::Endpoint {
    let what = format!("{endpoint} to be free to bind");
    wait_until(&what, RECOVERY, async || socket.bind(endpoint).await.ok()).await
}

impl Publisher {
    async fn bind(tasks: &str, results: &str) -> Self {
        Self::bind_with(tasks, results, Codec::default()).await
    }

    async fn bind_with(tasks: &str, results: &str, codec: Codec) -> Self {
        let mut task_socket = PushSocket::new();
        let tasks_endpoint = bind_retrying(&mut task_socket, tasks).await;
        let mut result_socket = PullSocket::new();
        let results_endpoint = bind_retrying(&mut result_socket, results).await;
        Publisher {
            tasks: task_socket,
            results: result_socket,
            tasks_endpoint: tasks_endpoint.to_string(),
            results_endpoint: results_endpoint.to_string(),
            codec,
            last_seq: None,
        }
    }

    /// The same ports again, as a restarted publisher would bind them.
    async fn restart(self) -> Self {
        let (tasks, results, codec) = (
            self.tasks_endpoint.clone(),
            self.results_endpoint.clone(),
            self.codec.clone(),
        );
        self.stop().await;
        Self::bind_with(&tasks, &results, codec).await
    }

    /// Closes every listener, then every connection, as the publisher process exiting would
    /// (closing a connection while its listener still accepts would let the verifier
    /// reconnect to a socket that is about to be dropped).
    async fn stop(self) {
        let results = self.results.backend();
        let _ = self.results.close().await;
        // `close` unbinds; dropping the PUSH at its end closes its connections.
        let _ = self.tasks.close().await;
        results.shutdown();
    }

    /// Only the result side goes away and comes back; the task PUSH stays as it is.
    async fn restart_results_only(&mut self) {
        let fresh = PullSocket::new();
        let old = std::mem::replace(&mut self.results, fresh);
        close_result_socket(old).await;
        bind_retrying(&mut self.results, &self.results_endpoint.clone()).await;
        self.last_seq = None;
    }

    async fn send_raw(&mut self, message: ZmqMessage) -> bool {
        self.tasks.send(message).await.is_ok()
    }

    /// The next message from a verifier, decoded; checks the envelope on the way.
    async fn next(&mut self, within: Duration) -> Option<Envelope<Reply>> {
        let message = tokio::time::timeout(within, self.results.recv())
            .await
            .ok()?
            .expect("result PULL receives");
        let envelope = self
            .codec
            .decode::<Reply>(&message)
            .expect("verifier messages decode");
        assert_eq!(envelope.v, PROTOCOL_VERSION);
        assert_eq!(envelope.sender, VERIFIER_ID);
        assert!(
            envelope.epoch > 1_600_000_000_000,
            "epoch is a start time in ms"
        );
        if let Some((epoch, seq)) = self.last_seq {
            if epoch == envelope.epoch {
                assert_eq!(envelope.seq, seq + 1, "seq is +1 per message");
            }
        }
        self.last_seq = Some((envelope.epoch, envelope.seq));
        Some(envelope)
    }

    async fn heartbeat(&mut self, within: Duration) -> VerifierHeartbeat {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await.map(|e| e.body) {
                Some(Reply::Heartbeat(heartbeat)) => return heartbeat,
                Some(_) => continue,
                None => panic!("no heartbeat within {within:?}"),
            }
        }
    }

    /// Sends a task and waits for its verdict, sending it again now and then like the real
    /// publisher does (a task sent into a connection that is closing is lost).
    async fn verify(&mut self, task: &VerifyTask, within: Duration) -> Verdict {
        let deadline = Instant::now() + within;
        let envelope = test_publisher().envelope(task.task_id, task.clone());
        while Instant::now() < deadline {
            if !self.send_raw(self.codec.encode(&envelope)).await {
                // No verifier connected yet: a PUSH refuses at once.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let resend_at = (Instant::now() + Duration::from_secs(1)).min(deadline);
            loop {
                let left = resend_at.saturating_duration_since(Instant::now());
                match self.next(left).await.map(|e| e.body) {
                    Some(Reply::Verdict(result)) if result.task_id == task.task_id => {
                        return result;
                    }
                    Some(_) => continue,
                    None => break,
                }
            }
        }
        panic!("no verdict for task {} within {within:?}", task.task_id);
    }
}

/// The sender of the tasks this fake publisher sends.
fn test_publisher() -> Origin {
    Origin {
        id: "test-publisher".into(),
        epoch: 1,
    }
}

async fn close_result_socket(socket: PullSocket) {
    // A PULL keeps its connections open when dropped: unbind, then shut the backend down.
    let backend = socket.backend();
    let _ = socket.close().await;
    backend.shutdown();
}

// ---------------------------------------------------------------------------------------------
// The verifier process.

const VERIFIER_ID: &str = "test-verifier";

/// Starts the verifier binary with the keys of `keys`, connected to `tasks` and `results`, with
/// quick heartbeats, plus `env`.
fn start_verifier(keys: &Keys, tasks: &str, results: &str, env: &[(&str, &str)]) -> Process {
    let mut all = vec![
        ("TASKS_CONNECT", tasks.to_owned()),
        ("RESULTS_CONNECT", results.to_owned()),
        ("KEYS_DIR", keys.folder.keys_dir().display().to_string()),
        ("VERIFIER_ID", VERIFIER_ID.to_owned()),
        ("VERIFY_WORKERS", "2".to_owned()),
        ("HEARTBEAT_INTERVAL", "200ms".to_owned()),
        ("RUST_LOG", "info,verifier=debug".to_owned()),
    ];
    all.extend(env.iter().map(|&(k, v)| (k, v.to_owned())));
    Process::start(
        env!("CARGO_BIN_EXE_verifier").as_ref(),
        keys.folder.path(),
        &all,
    )
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Established TCP connections from this machine to `port` (both ends of a loopback
/// connection show up in /proc/net/tcp; this counts the connecting ends only).
fn established_connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp readable");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port = fields
                .get(2)
                .and_then(|a| a.split(':').nth(1))
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            remote_port == Some(port) && fields.get(3) == Some(&"01")
        })
        .count()
}

/// Task and result endpoints on ports that were just bound and are closed again: where a
/// publisher is absent (and may come later).
async fn vacated_endpoints() -> (String, String) {
    let publisher = Publisher::bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0").await;
    let endpoints = (
        publisher.tasks_endpoint.clone(),
        publisher.results_endpoint.clone(),
    );
    publisher.stop().await;
    endpoints
}

fn port_of(endpoint: &str) -> u16 {
    endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("endpoint ends with a port")
}

struct Keys {
    folder: KeyFolder,
    demo: PathBuf,
}

impl Keys {
    fn new() -> Self {
        let folder = KeyFolder::new();
        let demo = folder.key("demo");
        Keys { folder, demo }
    }

    fn task(&self, task_id: u64, document: &[u8]) -> VerifyTask {
        VerifyTask {
            task_id,
            key: "demo".into(),
            sha256: wire::sha256(document),
            signature: self.folder.sign(&self.demo, document),
            attempt: 1,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_started_before_the_publisher_announces_its_keys_and_gives_right_verdicts() {
    // Arrange: a verifier retrying a publisher that is not there yet.
    let keys = Keys::new();
    let other = keys.folder.private_key("other", 3072);
    keys.folder.publish_pkcs1(&other, "other");
    let (tasks, results) = vacated_endpoints().await;
    // The verifier is given a host name; the publisher binds the address it resolves to.
    let verifier = start_verifier(
        &keys,
        &format!("tcp://localhost:{}", port_of(&tasks)),
        &format!("tcp://localhost:{}", port_of(&results)),
        &[],
    );
    verifier
        .wait_for_log("publisher not reachable yet", PATIENCE)
        .await;

    // Act
    let mut publisher = Publisher::bind(&tasks, &results).await;
    let heartbeat = publisher.heartbeat(PATIENCE).await;
    let valid = publisher
        .verify(&keys.task(1, b"hello world"), PATIENCE)
        .await;
    let mut tampered = keys.task(2, b"pay 10 EUR");
    tampered.sha256 = wire::sha256(b"pay 99 EUR");
    let invalid = publisher.verify(&tampered, PATIENCE).await;
    let mut truncated = keys.task(3, b"text");
    truncated.signature.pop();
    let short = publisher.verify(&truncated, PATIENCE).await;
    let mut unknown = keys.task(4, b"text");
    unknown.key = "nobody".into();
    let error = publisher.verify(&unknown, PATIENCE).await;
    let mut pkcs1 = keys.task(5, b"with the other key");
    pkcs1.key = "other".into();
    pkcs1.signature = keys.folder.sign(&other, b"with the other key");
    let other_valid = publisher.verify(&pkcs1, PATIENCE).await;

    // Assert
    let announced: Vec<_> = heartbeat
        .keys
        .iter()
        .map(|k| (k.id.as_str(), k.modulus_len))
        .collect();
    assert_eq!(announced, [("demo", 256), ("other", 384)]);
    assert_eq!(heartbeat.in_flight, 0);
    assert_eq!(valid.status, SignatureStatus::Valid, "{valid:?}");
    assert_eq!(invalid.status, SignatureStatus::Invalid, "{invalid:?}");
    assert_eq!(short.status, SignatureStatus::Invalid);
    assert!(short.reason.expect("a reason").contains("255 bytes"));
    assert_eq!(error.status, SignatureStatus::Error);
    assert!(error.reason.expect("a reason").contains("unknown key"));
    assert_eq!(other_valid.status, SignatureStatus::Valid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_works_again_within_seconds_after_the_publisher_restarts_on_the_same_ports() {
    // Arrange
    let keys = Keys::new();
    let mut publisher = Publisher::bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0").await;
    let _verifier = start_verifier(
        &keys,
        &publisher.tasks_endpoint,
        &publisher.results_endpoint,
        &[],
    );
    let before = publisher.verify(&keys.task(1, b"before"), PATIENCE).await;
    assert_eq!(before.status, SignatureStatus::Valid);

    for round in 0..2_u64 {
        // Act
        publisher = publisher.restart().await;
        let restarted = Instant::now();
        let heartbeat = publisher.heartbeat(RECOVERY).await;
        let after = publisher
            .verify(&keys.task(10 + round, b"after"), RECOVERY)
            .await;

        // Assert
        assert_eq!(heartbeat.keys.len(), 1);
        assert_eq!(after.status, SignatureStatus::Valid);
        assert!(
            restarted.elapsed() < RECOVERY,
            "recovery took {:?}",
            restarted.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_link_leaves_no_stale_task_connection_behind() {
    // Arrange
    let keys = Keys::new();
    let mut publisher = Publisher::bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0").await;
    let verifier = start_verifier(
        &keys,
        &publisher.tasks_endpoint,
        &publisher.results_endpoint,
        &[],
    );
    let tasks_port = port_of(&publisher.tasks_endpoint);
    publisher.verify(&keys.task(1, b"first"), PATIENCE).await;
    assert_eq!(established_connections_to(tasks_port), 1);

    // Act: only the result side restarts: the verifier notices on its next pushes and rebuilds
    // both sockets, while the publisher's task PUSH stays up and keeps its old connection.
    publisher.restart_results_only().await;
    verifier
        .wait_for_log("lost the publisher; reconnecting", PATIENCE)
        .await;
    let after = publisher.verify(&keys.task(2, b"second"), RECOVERY).await;

    // Assert: the old task connection was closed by the verifier, not left half-alive.
    assert_eq!(after.status, SignatureStatus::Valid);
    wait_until(
        "one verifier connection to the task port",
        PATIENCE,
        async || (established_connections_to(tasks_port) == 1).then_some(()),
    )
    .await;
    for id in 3..8 {
        let result = publisher.verify(&keys.task(id, b"more"), PATIENCE).await;
        assert_eq!(result.status, SignatureStatus::Valid);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_messages_are_dropped_and_verification_goes_on() {
    // Arrange
    let keys = Keys::new();
    let mut publisher = Publisher::bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0").await;
    let verifier = start_verifier(
        &keys,
        &publisher.tasks_endpoint,
        &publisher.results_endpoint,
        &[],
    );
    publisher.verify(&keys.task(1, b"warm-up"), PATIENCE).await;
    let mut two_frames = ZmqMessage::from("task.verify");
    two_frames.push_back(vec![0xc1, 0xff, 0x00].into());
    let heartbeat_as_task = publisher.codec.encode(&test_publisher().envelope(
        1,
        Reply::Heartbeat(VerifierHeartbeat {
            keys: vec![],
            in_flight: 0,
        }),
    ));

    // Act
    for garbage in [ZmqMessage::from("junk"), two_frames, heartbeat_as_task] {
        assert!(publisher.send_raw(garbage).await);
    }
    let result = publisher
        .verify(&keys.task(2, b"still here"), PATIENCE)
        .await;

    // Assert
    assert_eq!(result.status, SignatureStatus::Valid);
    verifier
        .wait_for_log("dropped messages that are not valid tasks", PATIENCE)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_shared_key_tasks_and_verdicts_carry_tags_and_untagged_tasks_are_dropped() {
    // Arrange: both ends share a key.
    let keys = Keys::new();
    let secret = keys.folder.scratch("shared.key");
    std::fs::write(&secret, "a shared secret of 32 bytes.....\n").expect("written");
    let codec = Codec::new(Some(SharedKey::from_file(&secret).expect("key file")));
    let mut publisher = Publisher::bind_with("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", codec).await;
    let verifier = start_verifier(
        &keys,
        &publisher.tasks_endpoint,
        &publisher.results_endpoint,
        &[("SHARED_KEY_FILE", secret.to_str().expect("UTF-8 path"))],
    );
    let forger = Origin {
        id: "forger".into(),
        epoch: 1,
    };
    let untagged = Codec::default().encode(&forger.envelope(1, keys.task(2, b"forged")));

    // Act
    // `Publisher::next` decodes with the keyed codec: an untagged verdict would fail there.
    let tagged = publisher.verify(&keys.task(1, b"tagged"), PATIENCE).await;
    assert!(publisher.send_raw(untagged).await);
    verifier
        .wait_for_log("expected 3 frames, got 2", PATIENCE)
        .await;
    let after = publisher
        .verify(&keys.task(3, b"tagged again"), PATIENCE)
        .await;

    // Assert
    assert_eq!(tagged.status, SignatureStatus::Valid);
    assert_eq!(after.status, SignatureStatus::Valid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_pushes_the_verdicts_in_flight_and_exits_0_within_seconds() {
    // Arrange: a burst of tasks sent to a working verifier.
    let keys = Keys::new();
    let mut publisher = Publisher::bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0").await;
    let mut verifier = start_verifier(
        &keys,
        &publisher.tasks_endpoint,
        &publisher.results_endpoint,
        &[],
    );
    publisher.verify(&keys.task(1, b"warm-up"), PATIENCE).await;
    let burst = keys.task(2, b"burst");
    for id in 100..300 {
        let task = VerifyTask {
            task_id: id,
            ..burst.clone()
        };
        let envelope = test_publisher().envelope(id, task);
        assert!(publisher.send_raw(publisher.codec.encode(&envelope)).await);
    }
    // The burst is queued in the publisher's PUSH; stop only once the verifier has taken some
    // of it, or SIGTERM could come before any task of the burst arrived.
    verifier
        .wait_for_log("task received task_id=100 ", PATIENCE)
        .await;

    // Act
    verifier.sigterm();
    let stopping = Instant::now();
    let status = verifier.exit_status(PATIENCE).await;
    let stopped_within = stopping.elapsed();
    let mut verdicts = Vec::new();
    while let Some(envelope) = publisher.next(Duration::from_millis(300)).await {
        if let Reply::Verdict(result) = envelope.body {
            verdicts.push(result);
        }
    }

    // Assert: a clean, quick exit, and verdicts of the burst came back, every one right.
    assert!(status.success(), "exit status {status:?}");
    assert!(
        stopped_within < RECOVERY,
        "stopping took {stopped_within:?}"
    );
    let log = verifier.stderr();
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("verdicts of tasks in flight pushed"), "{log}");
    assert!(!verdicts.is_empty(), "no verdict came back; log:\n{log}");
    for result in &verdicts {
        assert!((100..300).contains(&result.task_id), "{result:?}");
        assert_eq!(result.status, SignatureStatus::Valid, "{result:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_publisher_is_absent_exits_0_at_once() {
    // Arrange: a verifier retrying a publisher that is not there.
    let keys = Keys::new();
    let (nowhere, _) = vacated_endpoints().await;
    let mut verifier = start_verifier(&keys, &nowhere, &nowhere, &[]);
    verifier
        .wait_for_log("publisher not reachable yet", PATIENCE)
        .await;

    // Act
    verifier.sigterm();
    let status = verifier.exit_status(Duration::from_secs(3)).await;

    // Assert
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_keys_dir_stops_the_verifier_with_a_message_naming_it() {
    // Arrange
    let keys = Keys::new();
    let missing = keys.folder.keys_dir().join("no-such-dir");

    // Act
    let mut verifier = start_verifier(
        &keys,
        "tcp://127.0.0.1:1",
        "tcp://127.0.0.1:1",
        &[("KEYS_DIR", missing.to_str().expect("UTF-8 path"))],
    );
    let status = verifier.exit_status(PATIENCE).await;

    // Assert
    assert!(!status.success());
    verifier.wait_for_log("does not exist", PATIENCE).await;
    assert!(
        verifier.stderr().contains("no-such-dir"),
        "{}",
        verifier.stderr()
    );
}
