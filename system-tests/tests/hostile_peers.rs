//! No packet stops the publisher: every ZMQ port it binds is attacked over raw TCP — noise, a
//! truncated greeting, another mechanism, a frame header announcing 2^40 bytes, a multipart
//! message past the limit, a valid frame with a garbage body, a flood of connections — and
//! after each the whole system still answers end to end, with the cuts counted in /metrics.

use serde_json::json;
use std::time::Duration;
use test_support::zmtp::{attacks, send_and_see_cut};
use test_support::{PATIENCE, TestSystem, wait_until};

/// The limit the publisher runs with here, small so a message past it is quick to send.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// How long an attacker's connection may stay open before the cut counts as missing.
const CUT_WITHIN: Duration = Duration::from_secs(5);

/// A downcase request answered and its event logged, and a signature verified.
async fn still_serves(system: &TestSystem, label: &str, signature: &serde_json::Value) {
    let answer = system.api().downcase(label).await;
    assert_eq!(answer["result"], label.to_lowercase());
    wait_until(&format!("{label} in the log"), PATIENCE, async || {
        system
            .read_log()
            .iter()
            .any(|l| l.param() == Some(label))
            .then_some(())
    })
    .await;
    let (status, verdict) = system.api().post_signature("?wait=10s", signature).await;
    assert_eq!(
        (status, verdict["status"].as_str()),
        (200, Some("valid")),
        "{verdict}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_packet_on_any_zmq_port_stops_the_publisher_and_every_cut_is_counted() {
    // Arrange: the whole system, serving.
    let system = TestSystem::new();
    let alice = system.keys.key("alice");
    let text = "attack at dawn\n";
    let signature = json!({
        "text": text,
        "signature": system.keys.sign_hex(&alice, text.as_bytes()),
        "key": "alice",
    });
    let mut publisher = system
        .start_publisher_with(&[("MAX_MESSAGE_BYTES", MAX_MESSAGE_BYTES.to_string())])
        .await;
    let _subscriber = system.start_subscriber(&[]);
    let _verifier = system.start_verifier("v1");
    system.until_subscribed("before").await;
    system.until_verifiers(1).await;
    let addresses = system.addresses().clone();
    let ports = [
        ("events", addresses.events.clone(), "SUB"),
        ("tasks", addresses.tasks.clone(), "PULL"),
        ("results", addresses.results.clone(), "PUSH"),
        ("replay", addresses.replay.clone(), "DEALER"),
    ];

    for (socket, endpoint, peer_type) in &ports {
        for attack in attacks(peer_type, MAX_MESSAGE_BYTES) {
            // Act
            let cut = send_and_see_cut(endpoint, &attack.bytes, CUT_WITHIN).await;

            // Assert
            if attack.cut.is_some() {
                assert!(cut, "{socket}: {} was not cut", attack.name);
            }
            assert!(
                publisher.exited().is_none(),
                "{socket}: the publisher died of {}:\n{}",
                attack.name,
                publisher.stderr()
            );
            let label = format!("after-{socket}-{}", attack.name.replace(' ', "-"));
            still_serves(&system, &label, &signature).await;
        }
    }

    let metrics = system.api().metrics().await;
    for (socket, _, peer_type) in &ports {
        for reason in attacks(peer_type, MAX_MESSAGE_BYTES)
            .iter()
            .filter_map(|a| a.cut)
        {
            let series = format!("guard_cut_total{{socket=\"{socket}\",reason=\"{reason}\"}}");
            assert!(
                metrics.value(&series).is_some_and(|n| n >= 1.0),
                "{series} missing from:\n{}",
                metrics.0
            );
        }
    }
    for on in ["results socket", "replay socket"] {
        let series = format!("messages_rejected_total{{on=\"{on}\"}}");
        assert!(
            metrics.value(&series).is_some_and(|n| n >= 1.0),
            "{series} missing from:\n{}",
            metrics.0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_connections_opened_and_dropped_on_each_port_leave_the_system_serving() {
    // Arrange
    let system = TestSystem::new();
    let alice = system.keys.key("alice");
    let signature = json!({
        "text": "flood\n",
        "signature": system.keys.sign_hex(&alice, b"flood\n"),
        "key": "alice",
    });
    let mut publisher = system.start_publisher().await;
    let mut subscriber = system.start_subscriber(&[]);
    let mut verifier = system.start_verifier("v1");
    system.until_subscribed("before").await;
    system.until_verifiers(1).await;
    let a = system.addresses().clone();
    let mut ports: Vec<String> = [&a.events, &a.tasks, &a.results, &a.replay]
        .iter()
        .map(|endpoint| endpoint.trim_start_matches("tcp://").to_owned())
        .collect();
    ports.push(a.http.to_string());
    let health = [subscriber.health_addr().await, verifier.health_addr().await];
    ports.extend(health.iter().map(|address| address.to_string()));

    // Act: 2 000 connections per port (the ZMQ ports, HTTP and the workers' health ports),
    // 100 open at a time, each dropped at once.
    for address in ports {
        for _ in 0..20 {
            let batch: Vec<_> = (0..100)
                .map(|_| tokio::net::TcpStream::connect(address.clone()))
                .collect();
            for connection in futures::future::join_all(batch).await {
                drop(connection.expect("the port accepts"));
            }
        }
    }

    // Assert
    for process in [&mut publisher, &mut subscriber, &mut verifier] {
        assert!(process.exited().is_none(), "{}", process.stderr());
    }
    still_serves(&system, "after-the-flood", &signature).await;
    for address in health {
        let status = test_support::Api::new(address)
            .get("/healthz")
            .await
            .status();
        assert_eq!(status, 200, "{address} after the flood");
    }
}
