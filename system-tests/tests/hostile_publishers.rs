//! No publisher stops a worker: a fake publisher listening where a subscriber's or a verifier's
//! endpoints point completes the NULL handshake and announces a frame of 2^40 bytes, or sends a
//! bad greeting. The worker's guards cut it and count the cut in the worker's /metrics, the
//! worker stays up, and once the real publisher listens there instead, it is served.

use serde_json::json;
use std::net::SocketAddr;
use test_support::zmtp::{FakePeer, handshake, huge_header, noise};
use test_support::{Api, PATIENCE, Process, TestSystem, wait_until};

/// The attacks of a fake publisher whose socket is of `socket_type`, each with the reason the
/// guard counts its cut under.
fn attacks(socket_type: &str) -> [(&'static str, Vec<u8>); 2] {
    [
        (
            "oversize_frame",
            [handshake(socket_type), huge_header(1 << 40)].concat(),
        ),
        ("bad_greeting", noise(64)),
    ]
}

/// Waits until the worker whose health port is `health` has counted a cut of its guard
/// `socket` for `reason`.
async fn until_cut(worker: &mut Process, health: SocketAddr, socket: &str, reason: &str) {
    let series = format!("guard_cut_total{{socket=\"{socket}\",reason=\"{reason}\"}}");
    let health = Api::new(health);
    wait_until(&series, PATIENCE, async || {
        if let Some(status) = worker.exited() {
            panic!("the worker exited ({status}):\n{}", worker.stderr());
        }
        let page = health.metrics().await;
        page.value(&series).is_some_and(|n| n >= 1.0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_publisher_at_the_subscribers_endpoints_is_cut_and_the_real_one_is_followed_after_it()
 {
    // Arrange: the publisher's ports known, nothing of it running yet.
    let system = TestSystem::new();
    let addresses = system.learn_publisher_addresses().await.clone();
    let mut subscriber = None;

    for ((reason, at_events), (_, at_replay)) in attacks("PUB").into_iter().zip(attacks("ROUTER")) {
        // Act: fakes at both of its endpoints.
        let events = FakePeer::listen(&addresses.events, at_events).await;
        let replay = FakePeer::listen(&addresses.replay, at_replay).await;
        let subscriber = subscriber.get_or_insert_with(|| system.start_subscriber(&[]));
        let health = subscriber.health_addr().await;

        // Assert: each cut and counted, the subscriber still running.
        until_cut(subscriber, health, "events-in", reason).await;
        until_cut(subscriber, health, "replay-in", reason).await;
        assert!(events.accepted() >= 1 && replay.accepted() >= 1);
    }

    // Act: the real publisher where the fakes were.
    let _publisher = system.start_publisher().await;

    // Assert: followed, and replay served too: every event of the run in the log from #1 (the
    // first ones, sent before the subscription took, come by replay), once each, no gap.
    let sent = system.until_subscribed("after-the-fakes").await;
    let lines = wait_until("every event sent in the log", PATIENCE, async || {
        let lines = system.read_log();
        (lines.len() >= sent.len()).then_some(lines)
    })
    .await;
    let seqs: Vec<u64> = lines.iter().map(|l| l.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "{lines:?}"
    );
    assert!(lines.iter().all(|l| l.topic == "downcase"), "{lines:?}");
    let subscriber = subscriber.as_mut().expect("started with the first fakes");
    assert!(subscriber.exited().is_none(), "{}", subscriber.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_publisher_at_the_verifiers_endpoints_is_cut_and_the_real_one_gets_verdicts_after_it()
 {
    // Arrange: the publisher's ports known, nothing of it running yet.
    let system = TestSystem::new();
    let alice = system.keys.key("alice");
    let addresses = system.learn_publisher_addresses().await.clone();
    let mut verifier = None;

    // Act and assert: the result socket connects first, so it meets the fakes first.
    for (reason, attack) in attacks("PULL") {
        let _results = FakePeer::listen(&addresses.results, attack).await;
        let verifier = verifier.get_or_insert_with(|| system.start_verifier("v1"));
        let health = verifier.health_addr().await;
        until_cut(verifier, health, "results-out", reason).await;
    }
    // Then a fake that only greets takes the results, so the task socket meets the attacks.
    for (reason, attack) in attacks("PUSH") {
        let _results = FakePeer::listen(&addresses.results, handshake("PULL")).await;
        let _tasks = FakePeer::listen(&addresses.tasks, attack).await;
        let verifier = verifier.as_mut().expect("started with the first fake");
        let health = verifier.health_addr().await;
        until_cut(verifier, health, "tasks-in", reason).await;
    }

    // Act: the real publisher where the fakes were.
    let _publisher = system.start_publisher().await;

    // Assert: the verifier is heard from and gives verdicts.
    system.until_verifiers(1).await;
    let text = "after the fakes\n";
    let request = json!({
        "text": text,
        "signature": system.keys.sign_hex(&alice, text.as_bytes()),
        "key": "alice",
    });
    let (status, verdict) = system.api().post_signature("?wait=10s", &request).await;
    assert_eq!(
        (status, verdict["status"].as_str()),
        (200, Some("valid")),
        "{verdict}"
    );
    let verifier = verifier.as_mut().expect("started with the first fake");
    assert!(verifier.exited().is_none(), "{}", verifier.stderr());
}
