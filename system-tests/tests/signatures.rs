//! Signature verification through the real publisher and verifier binaries.

use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use system_tests::{System, openssl, read_log, wait_for};

/// Polls `GET /signatures/{id}` until the request is no longer pending.
async fn final_state(system: &System, id: &str) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let body: serde_json::Value = system
            .get(&format!("/signatures/{id}"))
            .await
            .expect("answer")
            .json()
            .await
            .expect("JSON");
        if body["status"] != "pending" {
            return body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{id} stuck in pending"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn openssl_and_rustcrypto_signatures_verify_and_bad_ones_do_not() {
    let system = System::new();
    let alice = openssl::key_pair(system.dir.path(), "alice");
    let mallory = openssl::key_pair(system.dir.path(), "mallory");
    std::fs::remove_file(system.dir.path().join("keys/mallory.pem")).unwrap();
    let _publisher = system.start_publisher().await;
    let _verifier = system.start_verifier("v1");
    system.until_verifiers(1).await;

    let text = "Pay Bob 10 €.\n";
    let by_openssl = openssl::sign(&alice, text.as_bytes());
    let pem = std::fs::read_to_string(&alice).unwrap();
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).expect("openssl genrsa writes PKCS#8");
    let by_rustcrypto = hex::encode(
        SigningKey::<rsa::sha2::Sha256>::new(key)
            .sign(text.as_bytes())
            .to_bytes(),
    );
    let by_mallory = openssl::sign(&mallory, text.as_bytes());

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
    for (body, expected) in cases {
        let (status, answer) = system.post_signature("?wait=10s", &body).await;
        assert_eq!(status, 200, "{body} → {answer}");
        assert_eq!(answer["status"], expected, "{body} → {answer}");
        assert_eq!(answer["key"], "alice");
        if expected == "valid" {
            assert_eq!(answer["verified_by"], "v1");
        }
    }

    // Asynchronous form: 202, Location, then the verdict.
    let response = system
        .http
        .post(format!("http://127.0.0.1:{}/signatures", system.ports.http))
        .json(&json!({"text": text, "signature": by_openssl, "key": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "pending");
    assert_eq!(
        location,
        format!("/signatures/{}", body["id"].as_str().unwrap())
    );
    assert_eq!(
        final_state(&system, body["id"].as_str().unwrap()).await["status"],
        "valid"
    );
    let status = system
        .get("/signatures/0123456789abcdef0123456789abcdef")
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404, "an unknown id");
}

#[tokio::test]
async fn bad_signature_requests_get_a_clear_4xx() {
    let system = System::new();
    let alice = openssl::key_pair(system.dir.path(), "alice");
    let _publisher = system
        .start_publisher_with(&[("MAX_BODY_BYTES", "4096".into())])
        .await;
    let _verifier = system.start_verifier("v1");
    system.until_verifiers(1).await;
    let good = openssl::sign(&alice, b"doc");

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
    for (body, status, says) in cases {
        let (got, answer) = system.post_raw("", body.clone()).await;
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
    let system = System::new();
    let _publisher = system.start_publisher().await;
    let start = Instant::now();
    let response = system
        .http
        .post(format!(
            "http://127.0.0.1:{}/signatures?wait=10s",
            system.ports.http
        ))
        .json(&json!({"text": "doc", "signature": "00".repeat(256), "key": "alice"}))
        .send()
        .await
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(system.get("/readyz").await.unwrap().status(), 503);
}

/// Signs `n` documents with openssl; every third one is then tampered with.
fn workload(system: &System, n: usize) -> Vec<(serde_json::Value, &'static str)> {
    let alice = openssl::key_pair(system.dir.path(), "alice");
    (0..n)
        .map(|i| {
            let text = format!("document {i}");
            let signature = openssl::sign(&alice, text.as_bytes());
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
    let system = std::sync::Arc::new(System::new());
    let docs = workload(&system, 40);
    let _publisher = system.start_publisher().await;
    let _subscriber = system.start_subscriber(&[]);
    system.until_subscribed("warmup").await;
    let _v1 = system.start_verifier("v1");
    let _v2 = system.start_verifier("v2");
    system.until_verifiers(2).await;

    let mut tasks = Vec::new();
    for i in 0..400 {
        let (body, expected) = docs[i % docs.len()].clone();
        let system = system.clone();
        tasks.push(tokio::spawn(async move {
            let (status, answer) = system.post_signature("?wait=20s", &body).await;
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["status"], expected, "{answer}");
            answer
        }));
    }
    let mut by = HashMap::new();
    let mut ids = HashSet::new();
    for task in tasks {
        let answer = task.await.unwrap();
        *by.entry(answer["verified_by"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
        ids.insert(answer["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 400);
    let metrics = system.get("/metrics").await.unwrap().text().await.unwrap();
    for expected in [
        "tasks_sent_total 400",
        "http_requests_total{route=\"/signatures\",status=\"200\"} 400",
        "events_published_total{topic=\"signature.requested\"}",
        "verification_seconds_bucket",
    ] {
        assert!(
            metrics.contains(expected),
            "/metrics lacks {expected:?}:\n{metrics}"
        );
    }
    assert!(
        by.get("v1").is_some_and(|&n| n > 0) && by.get("v2").is_some_and(|&n| n > 0),
        "{by:?}"
    );

    // Every request's signature.requested and final event reach subscriber.log.
    let lines = wait_for(Duration::from_secs(20), "800 signature events", || {
        let lines = read_log(&system.log_path());
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
    let system = std::sync::Arc::new(System::new());
    let docs = workload(&system, 30);
    let _publisher = system
        .start_publisher_with(&[("TASK_TIMEOUT", "1s".into())])
        .await;
    let _v1 = system.start_verifier("v1");
    let v2 = system.start_verifier("v2");
    system.until_verifiers(2).await;

    // 300 asynchronous requests, then SIGKILL one verifier while they are in flight.
    let mut ids = Vec::new();
    for i in 0..300 {
        let (body, expected) = docs[i % docs.len()].clone();
        let (status, answer) = system.post_signature("", &body).await;
        assert!(status == 202 || status == 200, "{answer}");
        ids.push((answer["id"].as_str().unwrap().to_owned(), expected));
        if i == 150 {
            v2.signal("KILL");
        }
    }
    for (id, expected) in &ids {
        let state = final_state(&system, id).await;
        assert_eq!(state["status"], *expected, "{id}: {state}");
    }
}

#[tokio::test]
async fn a_verifier_started_before_the_publisher_verifies_once_it_comes() {
    let system = System::new();
    let alice = openssl::key_pair(system.dir.path(), "alice");
    let _verifier = system.start_verifier("early");
    tokio::time::sleep(Duration::from_millis(500)).await; // it tries, and waits
    let _publisher = system.start_publisher().await;
    system.until_verifiers(1).await;
    let body = json!({"text": "doc", "signature": openssl::sign(&alice, b"doc"), "key": "alice"});
    let (status, answer) = system.post_signature("?wait=10s", &body).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("valid")),
        "{answer}"
    );
}

#[tokio::test]
async fn a_publisher_restarted_under_running_verifiers_gets_them_back_by_themselves() {
    let system = System::new();
    let alice = openssl::key_pair(system.dir.path(), "alice");
    let body = json!({"text": "doc", "signature": openssl::sign(&alice, b"doc"), "key": "alice"});
    let mut publisher = system.start_publisher().await;
    let _v1 = system.start_verifier("v1");
    let _v2 = system.start_verifier("v2");
    system.until_verifiers(2).await;
    assert_eq!(
        system.post_signature("?wait=10s", &body).await.1["status"],
        "valid"
    );

    // Once killed outright, once stopped gracefully: both verifiers come back within seconds.
    for graceful in [false, true] {
        if graceful {
            assert!(publisher.terminate(Duration::from_secs(10)).await.success());
        } else {
            publisher.kill();
        }
        publisher = system.start_publisher().await;
        let restarted = Instant::now();
        system.until_verifiers(2).await;
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "took {:?}",
            restarted.elapsed()
        );
        let mut by = HashSet::new();
        for _ in 0..6 {
            let (status, answer) = system.post_signature("?wait=10s", &body).await;
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
