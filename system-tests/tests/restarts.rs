//! Any process can start first, stop or die, and the others carry on by themselves.

use std::time::Duration;
use test_support::{PATIENCE, PUBLISHER_ID, TestSystem, wait_until};

/// How long a graceful stop may take.
const STOP_WITHIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_subscriber_started_after_the_publisher_logs_the_earlier_events_too_once_each() {
    // Arrange: events published while no subscriber exists.
    let system = TestSystem::new();
    let _publisher = system.start_publisher().await;
    for i in 0..20 {
        let early = system
            .api()
            .downcase(&format!("before-anyone-listens-{i}"))
            .await;
        assert_eq!(
            early["event"]["seq"],
            i + 1,
            "numbered from the run's first event"
        );
    }

    // Act
    let _subscriber = system.start_subscriber(&[]);
    system.until_subscribed("late-joiner").await;

    // Assert: the subscriber asked the publisher's replay window for what came before it, so
    // the log holds every event of the run from #1, once each, in order, and no gap line.
    let lines = system.read_log();
    let seqs: Vec<u64> = lines.iter().map(|l| l.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "{lines:?}"
    );
    assert!(lines.iter().all(|l| l.topic == "downcase"), "{lines:?}");
    for i in 0..20 {
        let param = format!("before-anyone-listens-{i}");
        assert_eq!(lines[i].param(), Some(param.as_str()), "{lines:?}");
    }
}

#[tokio::test]
async fn a_subscriber_started_before_the_publisher_logs_its_events() {
    // Arrange: a subscriber up and trying to reach a publisher that does not run yet.
    let system = TestSystem::new();
    system.learn_publisher_addresses().await;
    let subscriber = system.start_subscriber(&[]);
    subscriber
        .wait_for_log("subscriber running", PATIENCE)
        .await;

    // Act
    let _publisher = system.start_publisher().await;

    // Assert
    system.until_subscribed("early-bird").await;
}

#[tokio::test]
async fn a_publisher_restarted_under_a_running_subscriber_is_followed_without_a_manual_step() {
    // Arrange: a subscriber following the first run, everything it will get of it logged.
    let system = TestSystem::new();
    let mut first_run = system.start_publisher().await;
    let subscriber = system.start_subscriber(&[]);
    system.until_subscribed("first-run").await;
    system.api().downcase("first-run-last").await;
    let first_run_lines = wait_until("the first run's last event", PATIENCE, async || {
        let lines = system.read_log();
        lines
            .iter()
            .any(|l| l.param() == Some("first-run-last"))
            .then_some(lines.len())
    })
    .await;

    // Act: the publisher dies and a new run comes up on the same ports. The subscriber is
    // frozen meanwhile, so the new run's first event is certainly published before the
    // subscriber can have reconnected: only replay can bring it.
    subscriber.pause();
    first_run.kill();
    let _second_run = system.start_publisher().await;
    let missed = system.api().downcase("while-away").await;
    subscriber.resume();
    system.until_subscribed("second-run").await;

    // Assert: the new run numbers from 1 again; what it published before the subscriber was
    // back comes from its replay window, so the second run is in the log from #1 without a
    // hole, and there is no gap line anywhere.
    assert_eq!(missed["event"]["seq"], 1, "a new run numbers from 1");
    let lines = system.read_log();
    let second_run = &lines[first_run_lines..];
    assert_eq!(
        second_run.first().and_then(|l| l.param()),
        Some("while-away"),
        "{second_run:?}"
    );
    let seqs: Vec<u64> = second_run.iter().map(|l| l.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "{second_run:?}"
    );
    assert!(
        second_run
            .iter()
            .all(|l| l.publisher == PUBLISHER_ID && l.topic == "downcase"),
        "{second_run:?}"
    );
    assert!(
        second_run
            .iter()
            .any(|l| l.param().is_some_and(|p| p.starts_with("second-run"))),
        "{second_run:?}"
    );
    assert!(lines.iter().all(|l| l.topic != "gap"), "{lines:?}");
}

#[tokio::test]
async fn sigterm_stops_both_with_exit_code_zero_after_queued_events_are_written() {
    // Arrange: 200 events answered just before the stop.
    let system = TestSystem::new();
    let mut publisher = system.start_publisher().await;
    let mut subscriber = system.start_subscriber(&[]);
    system.until_subscribed("warmup").await;
    for i in 0..200 {
        system.api().downcase(&format!("last-words-{i}")).await;
    }
    let last_words = || {
        system
            .read_log()
            .into_iter()
            .filter(|l| l.param().is_some_and(|p| p.starts_with("last-words")))
            .collect::<Vec<_>>()
    };

    // Act
    let publisher_exit = publisher.terminate(STOP_WITHIN).await;
    wait_until("every event before the stop", STOP_WITHIN, async || {
        (last_words().len() >= 200).then_some(())
    })
    .await;
    let subscriber_exit = subscriber.terminate(STOP_WITHIN).await;

    // Assert
    assert!(publisher_exit.success(), "publisher exit: {publisher_exit}");
    assert!(
        subscriber_exit.success(),
        "subscriber exit: {subscriber_exit}"
    );
    let lines = last_words();
    assert_eq!(lines.len(), 200);
    assert_eq!(lines.last().and_then(|l| l.param()), Some("last-words-199"));
}

#[tokio::test]
async fn a_subscriber_waiting_for_an_absent_publisher_still_stops_on_sigterm() {
    // Arrange: a subscriber up, its publisher nowhere.
    let system = TestSystem::new();
    system.learn_publisher_addresses().await;
    let mut subscriber = system.start_subscriber(&[]);
    subscriber
        .wait_for_log("subscriber running", PATIENCE)
        .await;

    // Act
    let status = subscriber.terminate(STOP_WITHIN).await;

    // Assert
    assert!(status.success(), "subscriber exit: {status}");
}
