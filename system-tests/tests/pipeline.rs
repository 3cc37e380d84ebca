//! GET /downcase → ZMQ PUB → subscriber.log, through the real binaries.

use std::collections::HashMap;
use std::time::Duration;
use test_support::{LogLine, PATIENCE, PUBLISHER_ID, TestSystem, wait_until};

/// Distinct params across scripts: ASCII, accented Latin, Greek with a final sigma, emoji, an
/// embedded newline and an ANSI escape.
fn param(i: usize) -> String {
    match i % 6 {
        0 => format!("HeLLo-{i}"),
        1 => format!("ÀÉÎ ΣΑΣ {i}"),
        2 => format!("emoji 🙂🚀 ÇA {i}"),
        3 => format!("line\nBREAK {i}"),
        4 => format!("\u{1b}[31mRED\u{1b}[0m \"Quoted\" C:\\PATH {i}"),
        _ => format!("Straße İSTANBUL Ǆ {i}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_requests_are_each_logged_once_in_order_with_the_right_result() {
    // Arrange
    let system = TestSystem::new();
    let _publisher = system.start_publisher().await;
    let _subscriber = system.start_subscriber(&[]);
    system.until_subscribed("warmup").await;

    // Act: 2 000 requests, 16 at a time.
    let mut answered: HashMap<String, u64> = HashMap::new();
    for chunk in (0..2000).collect::<Vec<_>>().chunks(16) {
        let requests = chunk.iter().map(|&i| {
            let api = system.api().clone();
            tokio::spawn(async move {
                let p = param(i);
                let answer = api.downcase(&p).await;
                assert_eq!(answer["param"], p.as_str());
                assert_eq!(answer["result"], p.to_lowercase().as_str());
                assert_eq!(answer["event"]["publisher"], PUBLISHER_ID);
                (p, answer["event"]["seq"].as_u64().expect("seq"))
            })
        });
        for request in requests {
            let (p, seq) = request.await.expect("request task");
            answered.insert(p, seq);
        }
    }

    // Assert: every event exactly once, in sequence order, with its lower-cased result.
    let ours = |lines: &[LogLine]| -> Vec<LogLine> {
        let is_ours = |l: &&LogLine| {
            l.fields
                .get("param")
                .is_some_and(|p| !p.starts_with("warmup"))
        };
        lines.iter().filter(is_ours).cloned().collect()
    };
    let lines = wait_until(
        "2 000 events in the log",
        Duration::from_secs(30),
        async || {
            let lines = system.read_log();
            (ours(&lines).len() >= 2000).then_some(lines)
        },
    )
    .await;
    assert!(
        lines
            .iter()
            .all(|l| l.topic == "downcase" && l.publisher == PUBLISHER_ID),
        "no gap lines"
    );
    let lines = ours(&lines);
    assert_eq!(lines.len(), 2000, "no duplicates");
    assert!(
        lines.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "strictly +1"
    );
    let mut seen = HashMap::new();
    for line in &lines {
        let p = &line.fields["param"];
        assert_eq!(&line.fields["result"], &p.to_lowercase(), "{p:?}");
        assert!(
            seen.insert(p.clone(), line.seq).is_none(),
            "{p:?} logged twice"
        );
    }
    for (p, seq) in &answered {
        assert_eq!(
            seen.get(p),
            Some(seq),
            "{p:?} logged with the seq its response named"
        );
    }
    assert!(seen.contains_key("ÀÉÎ ΣΑΣ 1") && seen.contains_key("line\nBREAK 3"));
}

#[tokio::test]
async fn json_format_writes_one_parseable_object_per_event() {
    // Arrange: a subscriber writing JSON Lines, known to be connected.
    let system = TestSystem::new();
    let _publisher = system.start_publisher().await;
    let _subscriber = system.start_subscriber(&[("LOG_FORMAT", "json".into())]);
    system.until_subscribed("json-probe").await;
    let param = "Tab\tNew\nLine \u{1b}[2J ΣΑΣ";

    // Act
    system.api().downcase(param).await;

    // Assert
    let text = wait_until("the escaped event", PATIENCE, async || {
        let text = system.log_text();
        text.contains("ΣΑΣ").then_some(text)
    })
    .await;
    let last: serde_json::Value =
        serde_json::from_str(text.lines().last().expect("a line")).expect("valid JSON");
    assert_eq!(last["param"], param);
    assert_eq!(last["result"], param.to_lowercase());
    assert_eq!(last["topic"], "downcase");
    assert!(
        text.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
    );
}
