//! Keys without restarts: a running verifier reads KEYS_DIR again on SIGHUP and when it sees
//! the directory change, and the publisher learns the new key set from its next heartbeat.

use serde_json::{Value, json};
use std::path::Path;
use test_support::{PATIENCE, Process, TestSystem, wait_until};

/// Long enough that only a SIGHUP reloads during a test.
const NO_PERIODIC_CHECK: &str = "1h";

/// The key ids `GET /keys` lists now.
async fn listed_keys(system: &TestSystem) -> Vec<String> {
    let (status, body) = system.api().get_json("/keys").await;
    assert_eq!(status, 200, "{body}");
    body["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `GET /keys` lists exactly `ids`.
async fn until_listed(system: &TestSystem, ids: &[&str]) {
    let what = format!("GET /keys to list {ids:?}");
    wait_until(&what, PATIENCE, async || {
        (listed_keys(system).await == ids).then_some(())
    })
    .await;
}

/// POST /signatures?wait=10s for `text` signed with `private`, naming `key`.
async fn verify(system: &TestSystem, private: &Path, key: &str) -> (u16, Value) {
    let text = "Pay Bob 10 €.\n";
    let signature = system.keys.sign_hex(private, text.as_bytes());
    system
        .api()
        .post_signature(
            "?wait=10s",
            &json!({"text": text, "signature": signature, "key": key}),
        )
        .await
}

/// A publisher and one verifier holding `alice`, that reloads only on SIGHUP.
async fn alice_only(system: &TestSystem) -> (std::path::PathBuf, Process, Process) {
    let alice = system.keys.key("alice");
    let publisher = system.start_publisher().await;
    let verifier = system.start_verifier_with(
        "v1",
        &[("KEYS_CHECK_INTERVAL", NO_PERIODIC_CHECK.to_owned())],
    );
    system.until_verifiers(1).await;
    until_listed(system, &["alice"]).await;
    (alice, publisher, verifier)
}

#[tokio::test]
async fn a_key_added_and_a_sighup_make_it_listed_and_its_signatures_valid() {
    // Arrange
    let system = TestSystem::new();
    let (_alice, _publisher, mut verifier) = alice_only(&system).await;

    // Act: bob's public key is dropped in, and the verifier told.
    let bob = system.keys.key("bob");
    verifier.sighup();

    // Assert
    until_listed(&system, &["alice", "bob"]).await;
    let (status, answer) = verify(&system, &bob, "bob").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "valid", "{answer}");
    assert_eq!(answer["verified_by"], "v1", "{answer}");
    assert!(verifier.stderr().contains("keys reloaded"));
    assert!(verifier.exited().is_none(), "a SIGHUP must not end it");
}

#[tokio::test]
async fn a_key_removed_and_a_sighup_make_it_unknown() {
    // Arrange: alice and bob are loaded.
    let system = TestSystem::new();
    let (alice, _publisher, mut verifier) = alice_only(&system).await;
    let bob = system.keys.key("bob");
    verifier.sighup();
    until_listed(&system, &["alice", "bob"]).await;

    // Act: bob's public key goes.
    std::fs::remove_file(system.keys.keys_dir().join("bob.pem")).expect("bob.pem removed");
    verifier.sighup();

    // Assert
    until_listed(&system, &["alice"]).await;
    let (status, answer) = verify(&system, &bob, "bob").await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.to_string().contains("unknown key"),
        "the refusal says why: {answer}"
    );
    let (status, answer) = verify(&system, &alice, "alice").await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("valid")));
    assert!(verifier.exited().is_none());
}

#[tokio::test]
async fn a_garbage_pem_is_refused_with_a_warning_and_the_old_keys_keep_working() {
    // Arrange
    let system = TestSystem::new();
    let (alice, _publisher, mut verifier) = alice_only(&system).await;

    // Act: a file that is no key, then a SIGHUP.
    system
        .keys
        .write_key_file("garbage.pem", "this is not a public key\n");
    verifier.sighup();

    // Assert: a warning naming the file, the verifier alive, alice still good.
    verifier.wait_for_log("keys not reloaded", PATIENCE).await;
    let log = verifier.stderr();
    let warning = log
        .lines()
        .find(|l| l.contains("keys not reloaded"))
        .expect("the warning line");
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("garbage.pem"), "names the file: {warning}");
    assert!(verifier.exited().is_none(), "a bad key must not end it");
    assert_eq!(listed_keys(&system).await, ["alice"]);
    let (status, answer) = verify(&system, &alice, "alice").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "valid", "{answer}");
}

#[tokio::test]
async fn a_key_added_is_picked_up_without_a_signal() {
    // Arrange: the verifier looks at KEYS_DIR every 2 s (the default).
    let system = TestSystem::new();
    system.keys.key("alice");
    let _publisher = system.start_publisher().await;
    let mut verifier = system.start_verifier("v1");
    system.until_verifiers(1).await;
    until_listed(&system, &["alice"]).await;

    // Act
    let bob = system.keys.key("bob");

    // Assert
    until_listed(&system, &["alice", "bob"]).await;
    let (status, answer) = verify(&system, &bob, "bob").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "valid", "{answer}");
    assert!(verifier.exited().is_none());
}
