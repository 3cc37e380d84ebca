//! Any process can start first, stop or die, and the others carry on by themselves.

use std::time::Duration;
use system_tests::{System, read_log, wait_for};

#[tokio::test]
async fn a_subscriber_started_after_the_publisher_logs_new_events() {
    let system = System::new();
    let _publisher = system.start_publisher().await;
    system.downcase("before-anyone-listens").await;
    let _subscriber = system.start_subscriber(&[]);
    system.until_subscribed("late-joiner").await;
}

#[tokio::test]
async fn a_subscriber_started_before_the_publisher_logs_its_events() {
    let system = System::new();
    let _subscriber = system.start_subscriber(&[]);
    tokio::time::sleep(Duration::from_millis(500)).await; // let it try and fail to connect
    let _publisher = system.start_publisher().await;
    system.until_subscribed("early-bird").await;
}

#[tokio::test]
async fn a_publisher_restarted_under_a_running_subscriber_is_followed_without_a_manual_step() {
    let system = System::new();
    let publisher = system.start_publisher().await;
    let _subscriber = system.start_subscriber(&[]);
    system.until_subscribed("first-run").await;
    let first_epoch_lines = read_log(&system.log_path()).len();

    publisher.kill();
    let _publisher = system.start_publisher().await;
    system.until_subscribed("second-run").await;

    let lines = read_log(&system.log_path());
    let second: Vec<_> = lines[first_epoch_lines..]
        .iter()
        .filter(|l| l.topic == "downcase")
        .collect();
    assert!(
        second
            .iter()
            .any(|l| l.fields["param"].starts_with("second-run"))
    );
    // The new run numbers from 1 again; whatever it published before we reconnected is a
    // gap line, not a silent hole.
    let gaps: Vec<_> = lines.iter().filter(|l| l.topic == "gap").collect();
    match second.first() {
        Some(first) if first.seq > 1 => assert!(!gaps.is_empty(), "{lines:?}"),
        _ => assert!(gaps.is_empty(), "{lines:?}"),
    }
}

#[tokio::test]
async fn sigterm_stops_both_with_exit_code_zero_after_queued_events_are_written() {
    let system = System::new();
    let publisher = system.start_publisher().await;
    let subscriber = system.start_subscriber(&[]);
    system.until_subscribed("warmup").await;
    for i in 0..200 {
        system.downcase(&format!("last-words-{i}")).await;
    }

    let status = publisher.terminate(Duration::from_secs(5)).await;
    assert!(status.success(), "publisher exit: {status}");
    let last_words = || {
        read_log(&system.log_path())
            .into_iter()
            .filter(|l| l.fields["param"].starts_with("last-words"))
            .collect::<Vec<_>>()
    };
    wait_for(
        Duration::from_secs(5),
        "every event before the stop",
        || (last_words().len() >= 200).then_some(()),
    )
    .await;
    let status = subscriber.terminate(Duration::from_secs(5)).await;
    assert!(status.success(), "subscriber exit: {status}");
    let lines = last_words();
    assert_eq!(lines.len(), 200);
    assert_eq!(
        lines.last().map(|l| l.fields["param"].as_str()),
        Some("last-words-199")
    );
}

#[tokio::test]
async fn a_subscriber_waiting_for_an_absent_publisher_still_stops_on_sigterm() {
    let system = System::new();
    let subscriber = system.start_subscriber(&[]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = subscriber.terminate(Duration::from_secs(5)).await;
    assert!(status.success(), "subscriber exit: {status}");
}
