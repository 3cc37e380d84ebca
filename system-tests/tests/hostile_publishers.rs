//! No publisher stops a worker: a fake publisher listening where a subscriber's or a verifier's
//! endpoints point plays every attack of the publisher's own matrix at the worker that connects
//! to it — noise, a truncated greeting, another mechanism, a frame announcing 2^40 bytes, a
//! multipart message past the limit, a valid frame with a garbage body. The worker's guards cut
//! what they must and count the cut in the worker's /metrics, the garbage a socket lets through
//! is counted as rejected, the worker stays up, and once the real publisher listens there
//! instead, it is served.

use serde_json::json;
use std::net::SocketAddr;
use test_support::zmtp::{Attack, FakePeer, attacks, handshake};
use test_support::{Api, PATIENCE, Process, TestSystem, wait_until};

/// The limit the workers run with here, small so a message past it is quick to send.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The environment of a worker with that limit.
fn limited() -> [(&'static str, String); 1] {
    [("MAX_MESSAGE_BYTES", MAX_MESSAGE_BYTES.to_string())]
}

/// Waits until `series` of the worker whose health port is `health` has counted one more than
/// `before`, the worker still running.
async fn until_counted(worker: &mut Process, health: SocketAddr, series: &str, before: f64) {
    let health = Api::new(health);
    wait_until(series, PATIENCE, async || {
        if let Some(status) = worker.exited() {
            panic!("the worker exited ({status}):\n{}", worker.stderr());
        }
        let page = health.metrics().await;
        (page.value(series).unwrap_or(0.0) > before).then_some(())
    })
    .await;
}

/// The current value of `series` on the worker's metrics page (0 while absent).
async fn counted(health: SocketAddr, series: &str) -> f64 {
    Api::new(health)
        .metrics()
        .await
        .value(series)
        .unwrap_or(0.0)
}

/// Waits until the worker has met `fake` (connected and been sent the attack), then until
/// what the attack must cause is counted: the cut of guard `socket` for the attack's reason,
/// or, for garbage that gets through, a message rejected on `rejected_on` (when the socket
/// reads unasked). The worker must be running throughout.
async fn until_met(
    worker: &mut Process,
    attack: &Attack,
    fake: &FakePeer,
    socket: &str,
    rejected_on: Option<&str>,
) {
    let health = worker.health_addr().await;
    let series = match (attack.cut, rejected_on) {
        (Some(reason), _) => Some(format!(
            "guard_cut_total{{socket=\"{socket}\",reason=\"{reason}\"}}"
        )),
        (None, Some(on)) if attack.name.contains("garbage") => {
            Some(format!("messages_rejected_total{{on=\"{on}\"}}"))
        }
        (None, _) => None,
    };
    let before = match &series {
        Some(series) => counted(health, series).await,
        None => 0.0,
    };
    wait_until(
        &format!("{socket} meets {}", attack.name),
        PATIENCE,
        async || (fake.accepted() >= 1).then_some(()),
    )
    .await;
    if let Some(series) = series {
        until_counted(worker, health, &series, before).await;
    }
    assert!(
        worker.exited().is_none(),
        "{socket}: the worker died of {}:\n{}",
        attack.name,
        worker.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_publisher_at_the_subscribers_endpoints_is_cut_and_the_real_one_is_followed_after_it()
 {
    // Arrange: the publisher's ports known, nothing of it running yet.
    let system = TestSystem::new();
    let addresses = system.learn_publisher_addresses().await.clone();
    let mut subscriber = None;

    for (at_events, at_replay) in attacks("PUB", MAX_MESSAGE_BYTES)
        .into_iter()
        .zip(attacks("ROUTER", MAX_MESSAGE_BYTES))
    {
        // Act: fakes at both of its endpoints.
        let events = FakePeer::listen(&addresses.events, at_events.bytes.clone()).await;
        let replay = FakePeer::listen(&addresses.replay, at_replay.bytes.clone()).await;
        let subscriber = subscriber.get_or_insert_with(|| system.start_subscriber(&limited()));

        // Assert: each cut and counted (garbage on the events socket rejected), the
        // subscriber still running. Its replay socket reads only answers it asked for, and it
        // asks no one it has not heard a heartbeat from.
        let on = Some(addresses.events.as_str());
        until_met(subscriber, &at_events, &events, "events-in", on).await;
        until_met(subscriber, &at_replay, &replay, "replay-in", None).await;
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
    for attack in attacks("PULL", MAX_MESSAGE_BYTES) {
        let results = FakePeer::listen(&addresses.results, attack.bytes.clone()).await;
        let verifier = verifier.get_or_insert_with(|| system.start_verifier_with("v1", &limited()));
        until_met(verifier, &attack, &results, "results-out", None).await;
    }
    // Then a fake that only greets takes the results, so the task socket meets the attacks.
    let greeter = FakePeer::listen(&addresses.results, handshake("PULL")).await;
    for attack in attacks("PUSH", MAX_MESSAGE_BYTES) {
        let tasks = FakePeer::listen(&addresses.tasks, attack.bytes.clone()).await;
        let verifier = verifier.as_mut().expect("started with the first fake");
        let on = Some(addresses.tasks.as_str());
        until_met(verifier, &attack, &tasks, "tasks-in", on).await;
    }
    drop(greeter);

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
