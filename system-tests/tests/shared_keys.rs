//! `SHARED_KEY_FILE` through the real binaries: rotating keys mid-way (each process tags with
//! its first key and accepts any of its keys), the start-up line that says whether messages
//! are authenticated, and key files no process may start with.

use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use test_support::{PATIENCE, Process, TestSystem, binary};

const OLD: &str = "the-old-shared-key-of-32-bytes!!";
const NEW: &str = "the-new-shared-key-of-32-bytes!!";

/// A key file named `name` in `dir` holding `keys`, one a line, the first tagging.
fn key_file(dir: &Path, name: &str, keys: &[&str]) -> String {
    let path = dir.join(name);
    let mut content = String::from("# the first key tags; every key verifies\n");
    for key in keys {
        content.push_str(key);
        content.push('\n');
    }
    std::fs::write(&path, content).expect("the key file is written");
    path.display().to_string()
}

/// A verifier with `env` added to what [`TestSystem::start_verifier`] gives it.
fn start_verifier_with(system: &TestSystem, id: &str, env: &[(&str, String)]) -> Process {
    let addresses = system.addresses();
    let mut all = vec![
        ("TASKS_CONNECT", addresses.tasks.clone()),
        ("RESULTS_CONNECT", addresses.results.clone()),
        ("KEYS_DIR", system.keys.keys_dir().display().to_string()),
        ("VERIFIER_ID", id.to_owned()),
    ];
    all.extend(env.iter().cloned());
    Process::start(&binary("verifier"), system.dir.path(), &all)
}

#[tokio::test]
async fn mid_rotation_a_publisher_on_the_new_key_and_workers_on_the_old_still_work_together() {
    // Arrange: the publisher has swapped to [new, old]; the subscriber and the verifier have
    // only added the new key, second: [old, new].
    let system = TestSystem::new();
    let dir = system.dir.path();
    let swapped = key_file(dir, "publisher.key", &[NEW, OLD]);
    let added = key_file(dir, "workers.key", &[OLD, NEW]);
    let alice = system.keys.key("alice");
    let publisher = system
        .start_publisher_with(&[("SHARED_KEY_FILE", swapped)])
        .await;
    let subscriber = system.start_subscriber(&[("SHARED_KEY_FILE", added.clone())]);
    let _verifier = start_verifier_with(&system, "v1", &[("SHARED_KEY_FILE", added)]);

    // Act: events one way (tagged with the new key), a task and its verdict both ways.
    system.until_subscribed("rotating").await;
    system.until_verifiers(1).await;
    let text = "Pay Bob 10 €.\n";
    let signature = system.keys.sign_hex(&alice, text.as_bytes());
    let body = json!({"text": text, "signature": signature, "key": "alice"});
    let (status, answer) = system.api().post_signature("?wait=10s", &body).await;

    // Assert
    assert_eq!(
        (status, &answer["status"]),
        (200, &json!("valid")),
        "{answer}"
    );
    let verified = "signature.verified";
    test_support::wait_until("the verdict in the log", PATIENCE, async || {
        system
            .read_log()
            .iter()
            .any(|l| l.topic == verified)
            .then_some(())
    })
    .await;
    for process in [&publisher, &subscriber] {
        process
            .wait_for_log("tagging with key 1 of 2", PATIENCE)
            .await;
        assert!(
            !process.stderr().contains("dropped a message"),
            "{}",
            process.stderr()
        );
    }
}

#[tokio::test]
async fn a_subscriber_with_only_the_old_key_drops_what_a_publisher_on_the_new_key_sends() {
    // Arrange: the publisher tags with the new key; this subscriber never got it.
    let system = TestSystem::new();
    let dir = system.dir.path();
    let _publisher = system
        .start_publisher_with(&[
            (
                "SHARED_KEY_FILE",
                key_file(dir, "publisher.key", &[NEW, OLD]),
            ),
            ("HEARTBEAT_INTERVAL", "200ms".into()),
        ])
        .await;
    let subscriber =
        system.start_subscriber(&[("SHARED_KEY_FILE", key_file(dir, "subscriber.key", &[OLD]))]);

    // Act
    for n in 0..20 {
        system.api().downcase(&format!("unreadable-{n}")).await;
    }

    // Assert: refused, said so, and nothing written.
    subscriber
        .wait_for_log("dropped a message that could not be decoded", PATIENCE)
        .await;
    assert!(
        subscriber
            .stderr()
            .contains("authentication tag does not match")
    );
    assert!(system.read_log().is_empty(), "{:?}", system.read_log());
}

#[tokio::test]
async fn a_process_without_a_shared_key_warns_once_that_its_messages_are_not_authenticated() {
    let system = TestSystem::new();
    let publisher = system.start_publisher().await;
    let subscriber = system.start_subscriber(&[]);
    let verifier = system.start_verifier("v1");

    for process in [&publisher, &subscriber, &verifier] {
        let needle = "ZMQ messages are NOT authenticated: SHARED_KEY_FILE is unset";
        process.wait_for_log(needle, PATIENCE).await;
        let stderr = process.stderr();
        assert_eq!(stderr.matches(needle).count(), 1, "{stderr}");
        let line = stderr
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_default();
        assert!(line.contains("WARN"), "{line}");
    }
}

/// What each binary says, and how it ends, when started with `SHARED_KEY_FILE=path`.
async fn start_with_key_file(dir: &Path, path: &Path) -> Vec<(String, Option<i32>, String)> {
    let mut outcomes = Vec::new();
    for name in ["publisher", "subscriber", "verifier"] {
        let env = [
            ("SHARED_KEY_FILE", path.display().to_string()),
            // Should a binary get past its key, nothing it binds may collide with another test.
            ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("LOG_FILE", dir.join("unused.log").display().to_string()),
        ];
        let mut process = Process::start(&binary(name), dir, &env);
        let status = process.exit_status(Duration::from_secs(20)).await;
        outcomes.push((name.to_owned(), status.code(), process.stderr()));
    }
    outcomes
}

#[tokio::test]
async fn every_binary_refuses_an_unusable_key_file_naming_it_and_the_problem() {
    let system = TestSystem::new();
    let dir = system.dir.path();
    let write = |name: &str, content: &[u8]| -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).expect("the key file is written");
        path
    };
    let cases = [
        (write("empty.key", b"\n"), "holds no key"),
        (
            write("short.key", b"only-12-byte\n"),
            "is 12 bytes; at least 16",
        ),
        (
            write("short-second.key", format!("{NEW}\n\nshort\n").as_bytes()),
            "line 3",
        ),
        (dir.join("missing.key"), "cannot read shared key file"),
        (dir.to_owned(), "cannot read shared key file"),
    ];

    for (path, problem) in cases {
        for (name, code, stderr) in start_with_key_file(dir, &path).await {
            assert_eq!(code, Some(1), "{name} with {}: {stderr}", path.display());
            assert!(!stderr.contains("panicked"), "{name}: {stderr}");
            assert!(
                stderr.contains("SHARED_KEY_FILE is not usable"),
                "{name}: {stderr}"
            );
            assert!(
                stderr.contains(&path.display().to_string()),
                "{name}: {stderr}"
            );
            assert!(
                stderr.contains(problem),
                "{name} should say {problem:?}: {stderr}"
            );
        }
    }
}
