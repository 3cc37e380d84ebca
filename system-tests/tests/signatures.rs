//! Signature verification through the real publisher and verifier binaries.

use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use test_support::{PATIENCE, TestSystem, wait_until};

#[tokio::test]
async fn openssl_and_rustcrypto_signatures_verify_and_bad_ones_do_not() {
    // Arrange: alice's public key is loaded, mallory's is not.
    let system = TestSystem::new();
    let alice = system.keys.key("alice");
    let mallory = system.keys.private_key("mallory", 2048);
    let _publisher = system.start_publisher().await;
    let _verifier = system.start_verifier("v1");
    system.until_verifiers(1).await;
    let api = system.api();

    let text = "Pay Bob 10 €.\n";
    let by_openssl = system.keys.sign_hex(&alice, text.as_bytes());
    let pem = std::fs::read_to_string(&alice).expect("the private key is readable");
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).expect("openssl genrsa writes PKCS#8");
    let by_rustcrypto = hex::encode(
        SigningKey::<rsa::sha2::Sha256>::new(key)
            .sign(text.as_bytes())
            .to_bytes(),
    );
    let by_mallory = system.keys.sign_hex(&mallory, text.as_bytes());

    let cases = [
        (
            json!({"text": text, "signature": by_openssl, "key": "alice"}),
            "valid",
        ),
        (
            json!({"text": text, "hexSignature": by_rustcrypto, "key": "alice"}),
            "valid",
        ),
        (json!({"text": text, "signature": by_openssl}), "valid"), // the only key
        (
            json!({"data_base64": "UGF5IEJvYiAxMCDigqwuCg==", "signature": by_openssl, "key": "alice"}),
            "valid",
        ),
        (
            json!({"text": "Pay Bob 99 €.\n", "signature": by_openssl, "key": "alice"}),
            "invalid",
        ),
        (
            json!({"text": text, "signature": by_mallory, "key": "alice"}),
            "invalid",
        ),
    ];
    // Act and assert, case by case: the synchronous form.
    for (body, expected) in cases {
        let (status, answer) = api.post_signature("?wait=10s", &body).await;
        assert_eq!(status, 200, "{body} → {answer}");
        assert_eq!(answer["status"], expected, "{body} → {answer}");
        assert_eq!(answer["key"], "alice");
        if expected == "valid" {
            assert_eq!(answer["verified_by"], "v1");
        }
    }

    // The asynchronous form: 202, Location, then the verdict.
    let response = api
        .post_signature_response(
            "",
            &json!({"text": text, "signature": by_openssl, "key": "alice"}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"]
        .to_str()
        .expect("Location is text")
        .to_owned();
    let body: serde_json::Value = response.json().await.expect("a JSON answer");
    let id = body["id"].as_str().expect("an id").to_owned();
    assert_eq!(body["status"], "pending");
    assert_eq!(location, format!("/signatures/{id}"));
    assert_eq!(api.signature_outcome(&id).await["status"], "valid");
    let status = api
        .get("/signatures/0123456789abcdef0123456789abcdef")
        .await
        .status();
    assert_eq!(status, 404, "an unknown id");
}

#[tokio::test]
async fn bad_signature_requests_get_a_clear_4xx() {
    // Arrange
    let system = TestSystem::new();
    let alice = system.keys.key("alice");
    let _publisher = system
        .start_publisher_with(&[("MAX_BODY_BYTES", "4096".into())])
        .await;
    let _verifier = system.start_verifier("v1");
    system.until_verifiers(1).await;
    let good = system.keys.sign_hex(&alice, b"doc");

    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            json!({"text": "doc", "signature": &good[..good.len() - 2], "key": "alice"})
                .to_string()
                .into_bytes(),
            400,
            "is 255 bytes",
        ),
        (
            json!({"text": "doc", "signature": "zz".repeat(256), "key": "alice"})
                .to_string()
                .into_bytes(),
            400,
            "not hex",
        ),
        (
            json!({"text": "doc", "signature": &good[1..], "key": "alice"})
                .to_string()
                .into_bytes(),
            400,
            "odd number",
        ),
        (
            json!({"text": "doc", "signature": good, "key": "nobody"})
                .to_string()
                .into_bytes(),
            400,
            "unknown key",
        ),
        (
            json!({"text": "doc", "signature": good, "key": "../../etc/passwd"})
                .to_string()
                .into_bytes(),
            400,
            "unknown key",
        ),
        (
            json!({"signature": good, "key": "alice"})
                .to_string()
                .into_bytes(),
            400,
            "missing field `text`",
        ),
        (
            json!({"text": "doc", "key": "alice"})
                .to_string()
                .into_bytes(),
            400,
            "missing field `signature`",
        ),
        (b"{\"text\": \"doc\", ".to_vec(), 400, "malformed JSON"),
        (
            json!({"text": "x".repeat(5000), "signature": good})
                .to_string()
                .into_bytes(),
            413,
            "over the limit",
        ),
    ];
    // Act and assert, case by case.
    for (body, status, says) in cases {
        let (got, answer) = system.api().post_raw("", body.clone()).await;
        let error = answer["error"].as_str().unwrap_or_default();
        assert_eq!(
            got,
            status,
            "{} → {answer}",
            String::from_utf8_lossy(&body[..body.len().min(80)])
        );
        assert!(error.contains(says), "{error:?} should say {says:?}");
    }
}

#[tokio::test]
async fn with_no_verifier_a_request_gets_503_within_a_second() {
    // Arrange
    let system = TestSystem::new();
    let _publisher = system.start_publisher().await;
    let api = system.api();

    // Act
    let start = Instant::now();
    let response = api
        .post_signature_response(
            "?wait=10s",
            &json!({"text": "doc", "signature": "00".repeat(256), "key": "alice"}),
        )
        .await;
    let took = start.elapsed();

    // Assert
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(api.get("/readyz").await.status(), 503);
}

/// Signs `n` documents with openssl; every third one is then tampered with.
fn workload(system: &TestSystem, n: usize) -> Vec<(serde_json::Value, &'static str)> {
    let alice = system.keys.key("alice");
    (0..n)
        .map(|i| {
            let text = format!("document {i}");
            let signature = system.keys.sign_hex(&alice, text.as_bytes());
            if i % 3 == 2 {
                (
                    json!({"text": format!("{text}!"), "signature": signature, "key": "alice"}),
                    "invalid",
                )
            } else {
                (
                    json!({"text": text, "signature": signature, "key": "alice"}),
                    "valid",
                )
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_verifiers_share_400_requests_and_every_one_is_logged() {
    // Arrange
    let system = TestSystem::new();
    let docs = workload(&system, 40);
    let _publisher = system.start_publisher().await;
    let _subscriber = system.start_subscriber(&[]);
    system.until_subscribed("warmup").await;
    let _v1 = system.start_verifier("v1");
    let _v2 = system.start_verifier("v2");
    system.until_verifiers(2).await;

    // Act: 400 synchronous requests at once.
    let mut requests = Vec::new();
    for i in 0..400 {
        let (body, expected) = docs[i % docs.len()].clone();
        let api = system.api().clone();
        requests.push(tokio::spawn(async move {
            let (status, answer) = api.post_signature("?wait=20s", &body).await;
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["status"], expected, "{answer}");
            answer
        }));
    }
    let mut by = HashMap::new();
    let mut ids = HashSet::new();
    for request in requests {
        let answer = request.await.expect("the request task finishes");
        let verifier = answer["verified_by"].as_str().expect("verified_by");
        *by.entry(verifier.to_owned()).or_insert(0) += 1;
        ids.insert(answer["id"].as_str().expect("an id").to_owned());
    }

    // Assert: distinct ids, both verifiers used, counted in /metrics…
    assert_eq!(ids.len(), 400);
    let metrics = system.api().metrics().await;
    for expected in [
        "tasks_sent_total 400",
        "http_requests_total{route=\"/signatures\",status=\"200\"} 400",
        "events_published_total{topic=\"signature.requested\"}",
        "verification_seconds_bucket",
    ] {
        assert!(
            metrics.contains(expected),
            "/metrics lacks {expected:?}:\n{}",
            metrics.0
        );
    }
    assert!(
        by.get("v1").is_some_and(|&n| n > 0) && by.get("v2").is_some_and(|&n| n > 0),
        "{by:?}"
    );

    // …and every request's signature.requested and final event reach subscriber.log.
    let lines = wait_until("800 signature events", PATIENCE, async || {
        let lines = system.read_log();
        let n = lines
            .iter()
            .filter(|l| l.topic.starts_with("signature."))
            .count();
        (n >= 800).then_some(lines)
    })
    .await;
    for id in &ids {
        let mine: Vec<_> = lines
            .iter()
            .filter(|l| l.fields.get("id") == Some(id))
            .collect();
        assert_eq!(mine.len(), 2, "{id}: {mine:?}");
        assert_eq!(mine[0].topic, "signature.requested");
        assert!(mine[0].fields["text_sha256"].len() == 64 && !mine[0].fields.contains_key("text"));
        assert!(matches!(
            mine[1].topic.as_str(),
            "signature.verified" | "signature.failed"
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_two_verifiers_mid_flight_loses_no_request() {
    // Arrange
    let system = TestSystem::new();
    let docs = workload(&system, 30);
    let _publisher = system
        .start_publisher_with(&[("TASK_TIMEOUT", "1s".into())])
        .await;
    let _v1 = system.start_verifier("v1");
    let mut v2 = system.start_verifier("v2");
    system.until_verifiers(2).await;

    // Act: 300 asynchronous requests. From the 100th, v2 is frozen, so the tasks it is given
    // stay in flight there; at the 150th it is killed with them.
    let mut ids = Vec::new();
    for i in 0..300 {
        if i == 100 {
            v2.pause();
        }
        if i == 150 {
            v2.kill();
        }
        let (body, expected) = docs[i % docs.len()].clone();
        let (status, answer) = system.api().post_signature("", &body).await;
        assert!(status == 202 || status == 200, "{answer}");
        ids.push((answer["id"].as_str().expect("an id").to_owned(), expected));
    }

    // Assert: every request gets its right verdict, and some only because their task was sent
    // again after v2 died with it.
    for (id, expected) in &ids {
        let state = system.api().signature_outcome(id).await;
        assert_eq!(state["status"], *expected, "{id}: {state}");
    }
    let metrics = system.api().metrics().await;
    let resent = metrics.value("tasks_resent_total").unwrap_or(0.0);
    assert!(resent > 0.0, "no task was re-sent:\n{}", metrics.0);
}

#[tokio::test]
async fn a_verifier_started_before_the_publisher_verifies_once_it_comes() {
    // Arrange: a verifier up and retrying a publisher that does not run yet.
    let system = TestSystem::new();
    let alice = system.keys.key("alice");
    system.learn_publisher_addresses().await;
    let verifier = system.start_verifier("early");
    verifier
        .wait_for_log("publisher not reachable yet", PATIENCE)
        .await;

    // Act
    let _publisher = system.start_publisher().await;
    system.until_verifiers(1).await;
    let body =
        json!({"text": "doc", "signature": system.keys.sign_hex(&alice, b"doc"), "key": "alice"});
    let (status, answer) = system.api().post_signature("?wait=10s", &body).await;

    // Assert
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("valid")),
        "{answer}"
    );
}

#[tokio::test]
async fn a_publisher_restarted_under_running_verifiers_gets_them_back_by_themselves() {
    // Arrange: two verifiers working for the first run.
    let system = TestSystem::new();
    let alice = system.keys.key("alice");
    let body =
        json!({"text": "doc", "signature": system.keys.sign_hex(&alice, b"doc"), "key": "alice"});
    let mut publisher = system.start_publisher().await;
    let _v1 = system.start_verifier("v1");
    let _v2 = system.start_verifier("v2");
    system.until_verifiers(2).await;
    assert_eq!(
        system.api().post_signature("?wait=10s", &body).await.1["status"],
        "valid"
    );

    // Once killed outright, once stopped gracefully: both verifiers come back within seconds.
    for graceful in [false, true] {
        // Act
        if graceful {
            let status = publisher.terminate(Duration::from_secs(10)).await;
            assert!(status.success(), "publisher exit: {status}");
        } else {
            publisher.kill();
        }
        publisher = system.start_publisher().await;
        let restarted = Instant::now();
        system.until_verifiers(2).await;

        // Assert
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "took {:?}",
            restarted.elapsed()
        );
        let mut by = HashSet::new();
        for _ in 0..6 {
            let (status, answer) = system.api().post_signature("?wait=10s", &body).await;
            assert_eq!(
                (status, answer["status"].as_str()),
                (200, Some("valid")),
                "{answer}"
            );
            by.insert(
                answer["verified_by"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        assert_eq!(by.len(), 2, "both verifiers work again: {by:?}");
    }
}

#[tokio::test]
async fn get_keys_lists_the_key_ids_the_verifiers_have_loaded() {
    // Arrange: two keys of different sizes in the verifier's KEYS_DIR.
    let system = TestSystem::new();
    system.keys.key("alice");
    let big = system.keys.private_key("bob", 3072);
    system.keys.publish_spki(&big, "bob");
    let _publisher = system.start_publisher().await;
    let _verifier = system.start_verifier("v1");
    system.until_verifiers(1).await;

    // Act
    let (status, keys) = system.api().get_json("/keys").await;

    // Assert
    assert_eq!(status, 200, "{keys}");
    assert_eq!(keys["verifiers"], 1, "{keys}");
    assert_eq!(
        keys["keys"],
        serde_json::json!([
            {"id": "alice", "signature_bytes": 256},
            {"id": "bob", "signature_bytes": 384},
        ]),
        "{keys}"
    );
}
