//! What operators see and do with the workers, through the real binaries: the subscriber's and
//! the verifier's health ports (`/healthz`, `/readyz`, `/metrics`, `healthcheck`), and
//! rotating `subscriber.log` — by rename and SIGHUP under load, while the subscriber is
//! stopped, and by copy and truncate.

use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use test_support::{
    Api, LogLine, PATIENCE, PUBLISHER_ID, TestSystem, binary, read_log, wait_until,
};

/// `/readyz` of a health port: the status and the JSON answer.
async fn readyz(health: &Api) -> (u16, serde_json::Value) {
    health.get_json("/readyz").await
}

/// Waits until `/readyz` answers `status` with a reason containing `needle` (`""`: any);
/// that reason (empty when ready).
async fn until_readyz(health: &Api, status: u16, needle: &str) -> String {
    let what = format!("/readyz to answer {status} ({needle:?})");
    wait_until(&what, PATIENCE, async || {
        let (got, body) = readyz(health).await;
        let reason = body["reason"].as_str().unwrap_or_default();
        (got == status && reason.contains(needle)).then(|| reason.to_owned())
    })
    .await
}

/// Runs `<program> healthcheck` against `addr`: whether it exited 0.
fn healthcheck(program: &str, addr: &str) -> bool {
    std::process::Command::new(binary(program))
        .arg("healthcheck")
        .env_clear()
        .env("HEALTH_ADDR", addr)
        .status()
        .expect("the healthcheck runs")
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_is_ready_only_while_it_hears_its_publisher_and_serves_described_metrics() {
    // Arrange: the subscriber runs before its publisher exists.
    let system = TestSystem::new();
    let events = system.learn_publisher_addresses().await.events.clone();
    let mut subscriber = system.start_subscriber(&[]);
    let addr = subscriber.health_addr().await;
    let health = Api::new(addr);

    // Assert: alive, not ready, and it says why.
    assert_eq!(health.get_json("/healthz").await.0, 200);
    until_readyz(&health, 503, &format!("nothing heard from {events} yet")).await;
    assert!(healthcheck("subscriber", &addr.to_string()));

    // Act: the publisher starts and events flow.
    let mut publisher = system.start_publisher().await;
    let sent = system.until_subscribed("ready").await;

    // Assert: ready once caught up, with the metrics it keeps, described.
    until_readyz(&health, 200, "").await;
    let page = wait_until("every event counted in /metrics", PATIENCE, async || {
        let page = health.metrics().await;
        let written = page.value("events_written_total{topic=\"downcase\"}")?;
        (written >= sent.len() as f64 - 1.0).then_some(page)
    })
    .await;
    for help in [
        "# HELP events_written_total",
        "# HELP lag_events",
        "# HELP log_bytes",
        "# HELP replay_requests_total",
        "# HELP log_reopened_total",
    ] {
        assert!(page.contains(help), "{help} missing from:\n{}", page.0);
    }
    let log_bytes = std::fs::metadata(system.log_path()).expect("the log").len();
    assert_eq!(
        page.value("log_bytes"),
        Some(log_bytes as f64),
        "{}",
        page.0
    );
    assert!(page.value("replay_requests_total").is_some(), "{}", page.0);
    assert_eq!(page.value("log_reopened_total"), Some(0.0));
    let lag = format!("lag_events{{publisher=\"{PUBLISHER_ID}\"}}");
    assert_eq!(page.value(&lag), Some(0.0), "{}", page.0);

    // Act: the publisher goes away. Assert: no longer ready, and why.
    publisher.kill();
    until_readyz(&health, 503, &format!("nothing heard from {events} for")).await;
    assert!(subscriber.exited().is_none(), "still running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_is_ready_only_while_connected_and_counts_its_verdicts() {
    // Arrange: a key, and the verifier running before its publisher exists.
    let system = TestSystem::new();
    let alice = system.keys.key("alice");
    let tasks = system.learn_publisher_addresses().await.tasks.clone();
    let mut verifier = system.start_verifier("v1");
    let addr = verifier.health_addr().await;
    let health = Api::new(addr);

    // Assert: alive, not ready: no publisher.
    assert_eq!(health.get_json("/healthz").await.0, 200);
    let reason = until_readyz(&health, 503, "not connected").await;
    assert_eq!(reason, format!("not connected to the publisher at {tasks}"));
    let page = health.metrics().await;
    assert_eq!(page.value("links_up"), Some(0.0), "{}", page.0);
    assert_eq!(page.value("keys_loaded"), Some(1.0), "{}", page.0);
    assert!(healthcheck("verifier", &addr.to_string()));

    // Act: the publisher starts; one valid and one invalid signature are checked.
    let mut publisher = system.start_publisher().await;
    until_readyz(&health, 200, "").await;
    system.until_verifiers(1).await;
    let text = "Pay Bob 10 €.\n";
    let signature = system.keys.sign_hex(&alice, text.as_bytes());
    for (document, expected) in [(text, "valid"), ("Pay Bob 99 €.\n", "invalid")] {
        let body = json!({"text": document, "signature": signature, "key": "alice"});
        let (status, answer) = system.api().post_signature("?wait=10s", &body).await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (200, Some(expected)),
            "{answer}"
        );
    }

    // Assert: counted by status, timed, the link up, every metric described.
    let page = health.metrics().await;
    assert_eq!(page.value("links_up"), Some(1.0), "{}", page.0);
    assert_eq!(
        page.value("tasks_verified_total{status=\"valid\"}"),
        Some(1.0),
        "{}",
        page.0
    );
    assert_eq!(
        page.value("tasks_verified_total{status=\"invalid\"}"),
        Some(1.0),
        "{}",
        page.0
    );
    assert_eq!(
        page.value("verification_seconds_count"),
        Some(2.0),
        "{}",
        page.0
    );
    for help in [
        "# HELP tasks_verified_total",
        "# HELP verification_seconds",
        "# HELP links_up",
        "# HELP keys_loaded",
    ] {
        assert!(page.contains(help), "{help} missing from:\n{}", page.0);
    }

    // Act: the publisher goes away. Assert: not ready until it is back.
    publisher.kill();
    until_readyz(&health, 503, "not connected to the publisher").await;
    let _publisher = system.start_publisher().await;
    until_readyz(&health, 200, "").await;
    assert!(verifier.exited().is_none(), "still running");
}

#[tokio::test]
async fn a_worker_with_the_health_port_off_serves_none_and_its_healthcheck_fails() {
    let system = TestSystem::new();
    system.learn_publisher_addresses().await;
    let mut subscriber = system.start_subscriber(&[("HEALTH_ADDR", "off".into())]);
    subscriber
        .wait_for_log("subscriber running", PATIENCE)
        .await;
    assert!(
        subscriber.stderr().contains("health=off"),
        "{}",
        subscriber.stderr()
    );
    assert!(!subscriber.stderr().contains("health port listening"));
    assert!(!healthcheck("subscriber", "off"));
    assert!(subscriber.exited().is_none(), "still running");
}

// ---------------------------------------------------------------------------------------------
// Rotation.

/// Sends `/downcase` from a few tasks at once until stopped; counts the answers.
struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(api: &Api, label: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let tasks = (0..4)
            .map(|n| {
                let (api, stop, answered) = (api.clone(), stop.clone(), answered.clone());
                let label = format!("{label}-{n}");
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        api.downcase(&format!("{label}-{i}")).await;
                        answered.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                })
            })
            .collect();
        Load {
            stop,
            answered,
            tasks,
        }
    }

    /// Waits until `n` more requests have been answered.
    async fn until_answered(&self, n: u64) {
        let target = self.answered.load(Ordering::Relaxed) + n;
        wait_until(&format!("{n} more answers"), PATIENCE, async || {
            (self.answered.load(Ordering::Relaxed) >= target).then_some(())
        })
        .await;
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a load task");
        }
    }
}

/// Every line of the files, in order, file by file.
fn lines_of(files: &[PathBuf]) -> Vec<Vec<LogLine>> {
    files.iter().map(|f| read_log(f)).collect()
}

/// Asserts that the files hold every number 1..=`last` of the test publisher exactly once,
/// no gap line, each file in order and each after the one before it.
fn assert_each_once_in_order(files: &[PathBuf], last: u64) {
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    let mut previous = 0;
    for (file, lines) in files.iter().zip(lines_of(files)) {
        for line in lines {
            assert_ne!(
                line.topic,
                "gap",
                "a gap line in {}: {line:?}",
                file.display()
            );
            assert_eq!(line.publisher, PUBLISHER_ID);
            assert!(
                line.seq > previous,
                "#{} after #{previous} in {}",
                line.seq,
                file.display()
            );
            previous = line.seq;
            *seen.entry(line.seq).or_default() += 1;
        }
    }
    let missing: Vec<u64> = (1..=last).filter(|s| !seen.contains_key(s)).collect();
    assert!(missing.is_empty(), "missing: {missing:?}");
    assert_eq!(seen.len() as u64, last, "numbers past #{last}");
}

/// The highest number in the files.
fn last_seq(files: &[PathBuf]) -> u64 {
    lines_of(files)
        .iter()
        .flatten()
        .map(|l| l.seq)
        .max()
        .unwrap_or(0)
}

/// Sends one more event and waits until it is in `log`; its number.
async fn one_more(system: &TestSystem, log: &Path, param: &str) -> u64 {
    let seq = system.api().downcase(param).await["event"]["seq"]
        .as_u64()
        .expect("seq");
    wait_until(
        &format!("#{seq} in {}", log.display()),
        PATIENCE,
        async || read_log(log).iter().any(|l| l.seq == seq).then_some(()),
    )
    .await;
    seq
}

fn rotated(log: &Path, suffix: &str) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_renamed_and_reopened_on_sighup_under_load_holds_every_event_once_across_both_files()
{
    // Arrange: events flowing continuously into subscriber.log.
    let system = TestSystem::new();
    let _publisher = system.start_publisher().await;
    let mut subscriber = system.start_subscriber(&[]);
    let health: SocketAddr = subscriber.health_addr().await;
    system.until_subscribed("warmup").await;
    let load = Load::start(system.api(), "load");
    load.until_answered(300).await;

    // Act: logrotate's rename-and-create, then SIGHUP, while the load goes on.
    let log = system.log_path();
    let old = rotated(&log, ".1");
    std::fs::rename(&log, &old).expect("rotated");
    subscriber.sighup();
    subscriber.wait_for_log("log file reopened", PATIENCE).await;
    load.until_answered(300).await;
    load.stop().await;
    let last = one_more(&system, &log, "the-last").await;

    // Assert: both files have events; together each number once, in order, no gap.
    let files = [old.clone(), log.clone()];
    assert!(!read_log(&old).is_empty() && !read_log(&log).is_empty());
    assert_each_once_in_order(&files, last);
    assert!(
        subscriber.exited().is_none(),
        "SIGHUP does not stop the subscriber"
    );
    let page = Api::new(health).metrics().await;
    assert_eq!(page.value("log_reopened_total"), Some(1.0), "{}", page.0);

    // Act: stopped, the log is rotated again (renamed, an empty one created), and the
    // subscriber started again.
    assert!(subscriber.terminate(PATIENCE).await.success());
    let older = rotated(&log, ".2");
    std::fs::rename(&log, &older).expect("rotated");
    std::fs::write(&log, "").expect("an empty log");
    let _subscriber = system.start_subscriber(&[]);
    system.until_subscribed("after-restart").await;
    let last = one_more(&system, &log, "the-very-last").await;

    // Assert: the fresh file continues where the rotated ones end: nothing again, no gap.
    assert_each_once_in_order(&[old, older, log], last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copytruncated_log_is_appended_from_its_start_and_a_crash_after_it_repeats_nothing() {
    // Arrange: some events logged.
    let system = TestSystem::new();
    let _publisher = system.start_publisher().await;
    let mut subscriber = system.start_subscriber(&[]);
    system.until_subscribed("before").await;
    let log = system.log_path();
    let mut last = 0;
    for i in 0..20 {
        last = one_more(&system, &log, &format!("before-{i}")).await;
    }

    // Act: logrotate's copytruncate (while idle: it loses what is written during the copy),
    // more events, then a crash and a restart.
    let old = rotated(&log, ".1");
    std::fs::copy(&log, &old).expect("copied");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .and_then(|f| f.set_len(0))
        .expect("truncated");
    for i in 0..20 {
        last = one_more(&system, &log, &format!("after-truncate-{i}")).await;
    }
    let text = std::fs::read(&log).expect("the log");
    assert!(
        !text.contains(&0),
        "O_APPEND: no hole of zeros before the new lines"
    );
    // The position file is saved at most every 200 ms once lines are written.
    wait_until(
        "the position file to measure the truncated log",
        PATIENCE,
        async || {
            let pos = std::fs::read_to_string(rotated(&log, ".pos")).ok()?;
            let recorded: serde_json::Value = serde_json::from_str(&pos).ok()?;
            (recorded["log_bytes"].as_u64()? == text.len() as u64).then_some(())
        },
    )
    .await;
    subscriber.kill();
    let _subscriber = system.start_subscriber(&[]);
    system.until_subscribed("after-crash").await;
    last = last.max(one_more(&system, &log, "the-last").await);

    // Assert: the copy and the truncated file together hold each number once, no gap.
    assert_each_once_in_order(&[old.clone(), log.clone()], last);
    assert!(last_seq(&[old]) < last_seq(&[log]));
}
