//! A subscriber whose log's disk fills up loses nothing: it stops with a clear error (no
//! panic), and once space returns and it is started again it repairs the log's tail and
//! fetches by replay what it had not written — every event once, no gap line. On a real tmpfs.

use std::collections::BTreeMap;
use std::time::Duration;
use test_support::{PATIENCE, TestSystem, Tmpfs, read_log, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_a_full_disk_stops_cleanly_and_after_a_restart_logs_every_event_once() {
    // Arrange: subscriber.log on a 1 MiB tmpfs, the subscriber connected.
    let system = TestSystem::new();
    let logs = system.dir.path().join("logs");
    let tmpfs = Tmpfs::mount(&logs, "1m");
    let log = logs.join("subscriber.log");
    let env = [("LOG_FILE", log.display().to_string())];
    let _publisher = system.start_publisher().await;
    let mut subscriber = system.start_subscriber(&env);
    let mut acked = Vec::new();
    wait_until(
        "the subscriber to log a warm-up event",
        PATIENCE,
        async || {
            let answer = system
                .api()
                .downcase(&format!("warm-up-{}", acked.len()))
                .await;
            acked.push(answer);
            std::fs::read_to_string(&log)
                .is_ok_and(|text| text.contains("warm-up"))
                .then_some(())
        },
    )
    .await;

    // Act: the disk fills up while events keep coming.
    let filler = tmpfs.fill();
    for i in 0..300 {
        acked.push(system.api().downcase(&format!("while-full-{i}")).await);
    }
    let status = subscriber.exit_status(PATIENCE).await;
    let stderr = subscriber.stderr();

    // Space returns; the subscriber is started again, and more events come.
    std::fs::remove_file(&filler).expect("the filler removed");
    let _subscriber = system.start_subscriber(&env);
    for i in 0..50 {
        acked.push(system.api().downcase(&format!("after-{i}")).await);
    }

    // Assert: a clean stop that names the cause, then every acknowledged event once, in
    // order, no gap line.
    assert!(!status.success(), "{status}");
    assert!(stderr.contains("No space left"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let wanted: BTreeMap<u64, String> = acked
        .iter()
        .map(|a| {
            let seq = a["event"]["seq"].as_u64().expect("a seq");
            (seq, a["param"].as_str().expect("a param").to_owned())
        })
        .collect();
    let lines = wait_until(
        "every acknowledged event in the log",
        Duration::from_secs(60),
        async || {
            let lines = read_log(&log);
            let logged = lines.iter().filter(|l| l.param().is_some()).count();
            (logged >= wanted.len()).then_some(lines)
        },
    )
    .await;
    assert!(
        lines.iter().all(|l| l.topic != "gap"),
        "a gap line: {lines:?}"
    );
    let logged: Vec<(u64, String)> = lines
        .iter()
        .map(|l| (l.seq, l.param().unwrap_or_default().to_owned()))
        .collect();
    let expected: Vec<(u64, String)> = wanted.into_iter().collect();
    assert_eq!(logged, expected);
}
