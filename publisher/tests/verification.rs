//! Signature checks against a fake verifier on real ZMQ sockets: the publisher re-sends a task
//! nobody answered, answers the waiting request with the verdict, and forgets a verifier that
//! falls silent.

use clap::Parser;
use publisher::{Config, Publisher};
use std::time::{Duration, Instant};
use wire::{Codec, KeyInfo, Origin, Reply, Verdict, VerifierHeartbeat, VerifyTask};
use zeromq::{PullSocket, PushSocket, Socket, SocketRecv, SocketSend};

/// A publisher on free ports with short task deadlines, that forgets a verifier silent for
/// `verifier_timeout`, served until the test ends.
struct TestApp {
    url: String,
    tasks: String,
    results: String,
    http: reqwest::Client,
}

async fn spawn_app(verifier_timeout: &str) -> TestApp {
    let args = [
        "publisher",
        "--http-addr",
        "127.0.0.1:0",
        "--events-bind",
        "tcp://127.0.0.1:0",
        "--tasks-bind",
        "tcp://127.0.0.1:0",
        "--results-bind",
        "tcp://127.0.0.1:0",
        "--replay-bind",
        "tcp://127.0.0.1:0",
        "--id",
        "verification-test",
        "--task-timeout",
        "300ms",
        "--verifier-timeout",
        verifier_timeout,
    ];
    let publisher = Publisher::bind(Config::parse_from(args))
        .await
        .expect("binds");
    let app = TestApp {
        url: format!("http://{}", publisher.http_addr()),
        tasks: publisher.tasks_endpoint().to_owned(),
        results: publisher.results_endpoint().to_owned(),
        http: reqwest::Client::new(),
    };
    tokio::spawn(publisher.run(std::future::pending()));
    app
}

impl TestApp {
    async fn readyz(&self) -> u16 {
        let response = self.http.get(format!("{}/readyz", self.url)).send().await;
        response.expect("answer").status().as_u16()
    }

    /// Waits (within a bound) until `/readyz` answers `status`.
    async fn until_readyz(&self, status: u16) {
        let start = Instant::now();
        while self.readyz().await != status {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "/readyz never answered {status}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl TestApp {
    /// Waits (within a bound) until `/metrics` has the line `line`.
    async fn until_metric(&self, line: &str) {
        let start = Instant::now();
        loop {
            let response = self.http.get(format!("{}/metrics", self.url)).send().await;
            let text = response.expect("answer").text().await.expect("text");
            if text.lines().any(|l| l == line) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "/metrics never had {line:?}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A verifier played by the test: it takes tasks and sends what the test tells it to.
struct FakeVerifier {
    tasks: PullSocket,
    replies: PushSocket,
    origin: Origin,
    codec: Codec,
    seq: u64,
}

impl FakeVerifier {
    async fn connect(app: &TestApp) -> FakeVerifier {
        let mut tasks = PullSocket::new();
        tasks.connect(&app.tasks).await.expect("connects");
        let mut replies = PushSocket::new();
        replies.connect(&app.results).await.expect("connects");
        FakeVerifier {
            tasks,
            replies,
            origin: Origin::starting_now("fake-v"),
            codec: Codec::default(),
            seq: 0,
        }
    }

    async fn send(&mut self, reply: Reply) {
        self.seq += 1;
        let message = self.codec.encode(&self.origin.envelope(self.seq, reply));
        self.replies.send(message).await.expect("sent");
    }

    async fn heartbeat(&mut self) {
        let keys = vec![KeyInfo {
            id: "alice".into(),
            modulus_len: 256,
        }];
        self.send(Reply::Heartbeat(VerifierHeartbeat { keys, in_flight: 0 }))
            .await;
    }

    async fn next_task(&mut self) -> VerifyTask {
        let message = tokio::time::timeout(Duration::from_secs(5), self.tasks.recv())
            .await
            .expect("a task in time")
            .expect("received");
        self.codec
            .decode::<VerifyTask>(&message)
            .expect("decodes")
            .body
    }
}

#[tokio::test]
async fn an_unanswered_task_is_sent_again_and_its_verdict_answers_the_waiting_request() {
    let app = spawn_app("1m").await;
    let mut verifier = FakeVerifier::connect(&app).await;
    verifier.heartbeat().await;
    app.until_readyz(200).await;

    let body = serde_json::json!({"text": "doc", "signature": "00".repeat(256), "key": "alice"});
    let request = app
        .http
        .post(format!("{}/signatures?wait=5s", app.url))
        .json(&body)
        .send();
    let answer = tokio::spawn(request);

    let first = verifier.next_task().await;
    assert_eq!((first.key.as_str(), first.attempt), ("alice", 1));
    assert_eq!(first.sha256, wire::sha256(b"doc"));
    let again = verifier.next_task().await;
    assert_eq!((again.task_id, again.attempt), (first.task_id, 2));
    assert_eq!(again.signature, vec![0; 256]);
    let verdict = Verdict {
        task_id: first.task_id,
        status: wire::SignatureStatus::Valid,
        reason: None,
    };
    verifier.send(Reply::Verdict(verdict.clone())).await;

    let response = answer.await.expect("joined").expect("answer");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["status"], "valid", "{body}");
    assert_eq!(body["verified_by"], "fake-v");

    // A second verdict for the same task changes nothing.
    let invalid = Verdict {
        status: wire::SignatureStatus::Invalid,
        ..verdict
    };
    verifier.send(Reply::Verdict(invalid)).await;
    app.until_metric("tasks_duplicate_results_total 1").await;
    let id = body["id"].as_str().expect("an id");
    let state: serde_json::Value = app
        .http
        .get(format!("{}/signatures/{id}", app.url))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!(state["status"], "valid", "{state}");
}

#[tokio::test]
async fn a_verifier_that_falls_silent_is_forgotten_and_requests_get_503() {
    let app = spawn_app("500ms").await;
    let mut verifier = FakeVerifier::connect(&app).await;
    verifier.heartbeat().await;
    app.until_readyz(200).await;

    app.until_readyz(503).await;
    let body = serde_json::json!({"text": "doc", "signature": "00".repeat(256), "key": "alice"});
    let response = app
        .http
        .post(format!("{}/signatures", app.url))
        .json(&body)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 503);

    verifier.heartbeat().await;
    app.until_readyz(200).await;
}
