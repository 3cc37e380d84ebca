//! What operators see and do with the workers, through the real binaries: the subscriber's and
//! the verifier's health ports (`/healthz`, `/readyz`, `/metrics`, `healthcheck`), and
//! rotating `subscriber.log` — by rename and SIGHUP under load, while the subscriber is
//! stopped, by copy and truncate, and by the subscriber itself past `LOG_MAX_BYTES`.

use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use test_support::{
    Api, LogLine, PATIENCE, PUBLISHER_ID, Process, TestSystem, binary, read_log, wait_until,
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
    // The log may still be growing when the page is read (the last of `sent` may be written
    // after it): wait for a page taken once it has stopped, whose log_bytes is the file's.
    let log_path = system.log_path();
    let page = wait_until("every event counted in /metrics", PATIENCE, async || {
        let page = health.metrics().await;
        let written = page.value("events_written_total{topic=\"downcase\"}")?;
        let log_bytes = std::fs::metadata(&log_path).ok()?.len() as f64;
        (written >= sent.len() as f64 - 1.0 && page.value("log_bytes") == Some(log_bytes))
            .then_some(page)
    })
    .await;
    for help in [
        "# HELP events_written_total",
        "# HELP lag_events",
        "# HELP log_bytes",
        "# HELP replay_requests_total",
        "# HELP log_reopened_total",
        "# HELP log_rotations_total",
    ] {
        assert!(page.contains(help), "{help} missing from:\n{}", page.0);
    }
    assert!(page.value("replay_requests_total").is_some(), "{}", page.0);
    assert_eq!(page.value("log_reopened_total"), Some(0.0));
    assert_eq!(page.value("log_rotations_total"), Some(0.0));
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
    assert_range_once_in_order(files, 1, last);
}

/// [`assert_each_once_in_order`] for the numbers `first..=last`.
fn assert_range_once_in_order(files: &[PathBuf], first: u64, last: u64) {
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
    let missing: Vec<u64> = (first..=last).filter(|s| !seen.contains_key(s)).collect();
    assert!(missing.is_empty(), "missing: {missing:?}");
    let outside: Vec<u64> = seen
        .keys()
        .copied()
        .filter(|s| !(first..=last).contains(s))
        .collect();
    assert!(outside.is_empty(), "outside #{first}..#{last}: {outside:?}");
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

// ---------------------------------------------------------------------------------------------
// Rotation by the subscriber itself (`LOG_MAX_BYTES`, `LOG_KEEP`).

/// The subscriber's environment for rotating past `max_bytes`, keeping `keep` files.
fn rotating(max_bytes: u64, keep: u32) -> [(&'static str, String); 2] {
    [
        ("LOG_MAX_BYTES", max_bytes.to_string()),
        ("LOG_KEEP", keep.to_string()),
    ]
}

/// The rotated files of `log` that exist (looking as far as `.<keep>`), oldest first, then
/// `log` itself.
fn log_files(log: &Path, keep: u32) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..=keep)
        .rev()
        .map(|n| rotated(log, &format!(".{n}")))
        .filter(|f| f.exists())
        .collect();
    files.push(log.to_owned());
    files
}

/// Asserts that each file ends with a whole line and holds at most `max_bytes` (every line
/// of these tests is far shorter).
fn assert_within(files: &[PathBuf], max_bytes: u64) {
    for file in files {
        let text = std::fs::read(file).expect("a log file");
        assert!(
            text.is_empty() || text.ends_with(b"\n"),
            "{} ends in the middle of a line",
            file.display()
        );
        assert!(
            text.len() as u64 <= max_bytes,
            "{} holds {} bytes, more than {max_bytes}",
            file.display(),
            text.len()
        );
    }
}

/// Waits until `/metrics` counts at least `n` rotations; the count.
async fn until_rotated(health: &Api, n: u64) -> u64 {
    wait_until(&format!("{n} rotations"), PATIENCE, async || {
        let count = health.metrics().await.value("log_rotations_total")? as u64;
        (count >= n).then_some(count)
    })
    .await
}

/// A publisher, and a subscriber rotating its log past `max_bytes` and keeping `keep` files,
/// connected to it, with [`Load`] flowing.
struct RotatingUnderLoad {
    system: TestSystem,
    _publisher: Process,
    subscriber: Process,
    health: Api,
    load: Load,
}

impl RotatingUnderLoad {
    async fn start(max_bytes: u64, keep: u32) -> RotatingUnderLoad {
        let system = TestSystem::new();
        let publisher = system.start_publisher().await;
        let mut subscriber = system.start_subscriber(&rotating(max_bytes, keep));
        let health = Api::new(subscriber.health_addr().await);
        system.until_subscribed("warmup").await;
        let load = Load::start(system.api(), "load");
        RotatingUnderLoad {
            system,
            _publisher: publisher,
            subscriber,
            health,
            load,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_rotated_by_size_under_load_holds_every_event_once_across_its_files() {
    // Arrange: a 32 KiB cap (some 400 lines a file), three rotated files kept.
    const MAX_BYTES: u64 = 32 * 1024;
    // (Every part bound to a name, so the processes live to the end of the test.)
    let RotatingUnderLoad {
        system,
        _publisher,
        mut subscriber,
        health,
        load,
    } = RotatingUnderLoad::start(MAX_BYTES, 3).await;

    // Act: load until the third rotation, which drops nothing yet.
    let log = system.log_path();
    wait_until("subscriber.log.3", PATIENCE, async || {
        rotated(&log, ".3").exists().then_some(())
    })
    .await;
    load.stop().await;
    let last = one_more(&system, &log, "the-last").await;

    // Assert: four files, each within the cap and ending with a whole line, holding together
    // every number once, in order, no gap.
    let files = log_files(&log, 10);
    assert_eq!(files.len(), 4, "{files:?}");
    assert_within(&files, MAX_BYTES);
    assert_each_once_in_order(&files, last);
    let page = health.metrics().await;
    assert_eq!(page.value("log_rotations_total"), Some(3.0), "{}", page.0);
    assert!(subscriber.exited().is_none(), "still running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_keep_bounds_the_rotated_files_and_the_oldest_go_first() {
    // Arrange: a 4 KiB cap, two rotated files kept.
    const MAX_BYTES: u64 = 4 * 1024;
    let RotatingUnderLoad {
        system,
        _publisher,
        subscriber: _subscriber,
        health,
        load,
    } = RotatingUnderLoad::start(MAX_BYTES, 2).await;

    // Act: load for six rotations at least.
    let log = system.log_path();
    until_rotated(&health, 6).await;
    load.stop().await;
    let last = one_more(&system, &log, "the-last").await;

    // Assert: the log, `.1` and `.2`, nothing older; they hold the newest numbers once each,
    // in order, from where the deleted files ended.
    let mut names: Vec<String> = std::fs::read_dir(system.dir.path())
        .expect("the directory")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("subscriber.log"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "subscriber.log",
            "subscriber.log.1",
            "subscriber.log.2",
            "subscriber.log.pos"
        ]
    );
    let files = log_files(&log, 2);
    assert_within(&files, MAX_BYTES);
    let first = read_log(&files[0])[0].seq;
    assert!(first > 1, "the oldest numbers went with the deleted files");
    assert_range_once_in_order(&files, first, last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_killed_while_rotating_under_load_restarts_with_every_event_once_whatever_log_sync()
 {
    // Arrange: a 1 KiB cap (a dozen lines a file), so rotations come one after another, and
    // every rotated file kept.
    const MAX_BYTES: u64 = 1024;
    const KEEP: u32 = 1000;
    let RotatingUnderLoad {
        system,
        _publisher,
        mut subscriber,
        health: _,
        load,
    } = RotatingUnderLoad::start(MAX_BYTES, KEEP).await;
    let log = system.log_path();

    // Act: three times, SIGKILL in the middle of the load (the first time with the default
    // LOG_SYNC, then with each other policy), and a restart while it goes on.
    for sync in ["always", "never", "interval:50"] {
        load.until_answered(150).await;
        subscriber.kill();
        load.until_answered(30).await;
        let mut env = rotating(MAX_BYTES, KEEP).to_vec();
        env.push(("LOG_SYNC", sync.to_owned()));
        subscriber = system.start_subscriber(&env);
        subscriber
            .wait_for_log("subscriber running", PATIENCE)
            .await;
    }
    load.until_answered(150).await;
    load.stop().await;
    let last = one_more(&system, &log, "the-last").await;

    // Assert: across all files every number once, in order, no gap line, none over the cap.
    let files = log_files(&log, KEEP);
    assert!(files.len() > 10, "rotated often: {}", files.len());
    assert_within(&files, MAX_BYTES);
    assert_each_once_in_order(&files, last);
    assert!(subscriber.exited().is_none(), "still running");
}

#[tokio::test]
async fn a_sync_policy_or_size_the_subscriber_cannot_use_stops_it_at_start_naming_the_knob() {
    let system = TestSystem::new();
    for (name, value) in [
        ("LOG_SYNC", "sometimes"),
        ("LOG_SYNC", "interval:0"),
        ("LOG_MAX_BYTES", "0"),
        ("LOG_MAX_BYTES", "lots"),
        ("LOG_KEEP", "0"),
    ] {
        let env = [(name, value.to_owned())];
        let mut subscriber = Process::start(&binary("subscriber"), system.dir.path(), &env);
        let status = subscriber.exit_status(PATIENCE).await;
        let stderr = subscriber.stderr();
        assert!(!status.success(), "{name}={value}: {status}");
        assert!(
            stderr.contains(&format!("<{name}>")) && stderr.contains(value),
            "{name}={value}: {stderr}"
        );
        assert!(!system.log_path().exists(), "nothing written");
    }
}
