//! Topic filtering (`TOPICS`): a subscriber logs only the events whose topic starts with one of
//! its prefixes — live, by replay when it joins late, and across a kill and restart — each
//! once, and the numbers of the events it leaves out are never written as a gap. The real
//! publisher, verifier and subscriber binaries, with downcase and signature events mixed.

use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use test_support::{Api, LogLine, TestSystem, wait_until};
use tokio::task::JoinHandle;

/// How long a batch may take to be published or logged: generous, two cores are shared.
const BULK: Duration = Duration::from_secs(120);

/// What one round of publishing produced, by the identity each event carries in the log.
#[derive(Debug, Default)]
struct Published {
    /// `param` of each downcase event, in order.
    downcase: Vec<String>,
    /// `id` of each signature request; each makes a `signature.requested` and a
    /// `signature.verified` event.
    signatures: Vec<String>,
}

/// A system with one verifier holding key `alice`, and a document signed with it.
struct Signing {
    system: TestSystem,
    signature: String,
    _publisher: test_support::Process,
    _verifier: test_support::Process,
}

impl Signing {
    async fn start() -> Signing {
        let system = TestSystem::new();
        let alice = system.keys.key("alice");
        let signature = system.keys.sign_hex(&alice, DOCUMENT.as_bytes());
        let publisher = system.start_publisher().await;
        let verifier = system.start_verifier("v1");
        system.until_verifiers(1).await;
        Signing {
            system,
            signature,
            _publisher: publisher,
            _verifier: verifier,
        }
    }
}

const DOCUMENT: &str = "Pay Bob 10 €.\n";

/// One signature verified (two events): its id.
async fn sign(api: &Api, signature: &str) -> String {
    let body = json!({"text": DOCUMENT, "signature": signature, "key": "alice"});
    let (status, answer) = api.post_signature("?wait=10s", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "valid", "{answer}");
    answer["id"].as_str().expect("an id").to_owned()
}

/// Publishes `rounds` rounds of `per_round` downcase events and one signature, one by one, in
/// the background; `done` counts the rounds finished.
fn publish(
    api: &Api,
    signature: &str,
    label: &str,
    rounds: usize,
    per_round: usize,
    done: Arc<AtomicUsize>,
) -> JoinHandle<Published> {
    let (api, signature, label) = (api.clone(), signature.to_owned(), label.to_owned());
    tokio::spawn(async move {
        let mut published = Published::default();
        for round in 0..rounds {
            for i in 0..per_round {
                let param = format!("{label}-{round}-{i}");
                api.downcase(&param).await;
                published.downcase.push(param);
            }
            published.signatures.push(sign(&api, &signature).await);
            done.fetch_add(1, Ordering::Relaxed);
        }
        published
    })
}

/// Waits until the log has a line that `accept`s.
async fn until_logged(system: &TestSystem, what: &str, accept: impl Fn(&LogLine) -> bool) {
    wait_until(what, BULK, async || {
        system.read_log().iter().any(&accept).then_some(())
    })
    .await;
}

/// Asserts the log holds no gap line and strictly increasing numbers (each event once).
fn assert_once_in_order_without_a_gap(lines: &[LogLine]) {
    let gaps: Vec<&LogLine> = lines.iter().filter(|l| l.topic == "gap").collect();
    assert!(gaps.is_empty(), "no gap line expected: {gaps:?}");
    let seqs: Vec<u64> = lines.iter().map(|l| l.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "each number once, in order: {seqs:?}"
    );
}

/// Asserts the log holds exactly the signature events of `ids` (requested then verified,
/// each once) and nothing else.
fn assert_exactly_signatures(lines: &[LogLine], ids: &[String]) {
    assert_once_in_order_without_a_gap(lines);
    let mut logged: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for line in lines {
        assert!(
            line.topic.starts_with("signature."),
            "only signature events: {line:?}"
        );
        let id = line.fields.get("id").expect("a signature line has an id");
        logged.entry(id).or_default().push(line.topic.as_str());
    }
    let expected: BTreeMap<&str, Vec<&str>> = ids
        .iter()
        .map(|id| {
            (
                id.as_str(),
                vec!["signature.requested", "signature.verified"],
            )
        })
        .collect();
    assert_eq!(logged, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_with_topics_downcase_logs_exactly_the_downcase_events_once_and_no_gap() {
    // Arrange: the subscriber follows from the start; signature events are published between
    // the downcase ones.
    let Signing {
        system, signature, ..
    } = &Signing::start().await;
    let _subscriber = system.start_subscriber(&[("TOPICS", "downcase".into())]);
    let mut sent = system.until_subscribed("ready").await;

    // Act
    let done = Arc::new(AtomicUsize::new(0));
    let published = publish(system.api(), signature, "mixed", 30, 3, done)
        .await
        .expect("the publishing task");
    system.api().downcase("last").await;
    until_logged(system, "the last downcase event logged", |l| {
        l.param() == Some("last")
    })
    .await;

    // Assert: every downcase event once, in order; no signature event, no gap line.
    sent.extend(published.downcase);
    sent.push("last".into());
    let lines = system.read_log();
    assert_once_in_order_without_a_gap(&lines);
    assert!(lines.iter().all(|l| l.topic == "downcase"), "{lines:?}");
    let logged: Vec<&str> = lines.iter().filter_map(LogLine::param).collect();
    assert_eq!(logged, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_subscriber_with_topics_signature_gets_exactly_the_signature_events_by_replay() {
    // Arrange: events of both topics published while no subscriber exists.
    let Signing {
        system, signature, ..
    } = &Signing::start().await;
    let done = Arc::new(AtomicUsize::new(0));
    let mut published = publish(system.api(), signature, "early", 20, 4, done)
        .await
        .expect("the publishing task");

    // Act: it joins late (FROM=earliest, the default), and one more signature follows live.
    let _subscriber = system.start_subscriber(&[("TOPICS", "signature.".into())]);
    let first = published.signatures[0].clone();
    until_logged(system, "the first signature replayed", |l| {
        l.fields.get("id") == Some(&first)
    })
    .await;
    let last = sign(system.api(), signature).await;
    published.signatures.push(last.clone());
    until_logged(system, "the last signature's outcome logged", |l| {
        l.topic == "signature.verified" && l.fields.get("id") == Some(&last)
    })
    .await;

    // Assert
    assert_exactly_signatures(&system.read_log(), &published.signatures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_subscriber_killed_and_restarted_mid_stream_logs_every_matching_event_once() {
    // Arrange: a subscriber of `signature.` follows a stream that is mostly downcase events.
    const ROUNDS: usize = 200;
    let Signing {
        system, signature, ..
    } = &Signing::start().await;
    let topics = [("TOPICS", "signature.".to_owned())];
    let mut first_run = system.start_subscriber(&topics);
    // The first run is logging before the load starts, so it is killed with the load under way
    // however slow its start (a debug build on a busy machine takes seconds).
    let first = sign(system.api(), signature).await;
    until_logged(system, "the first signature's outcome logged", |l| {
        l.topic == "signature.verified" && l.fields.get("id") == Some(&first)
    })
    .await;
    let done = Arc::new(AtomicUsize::new(0));
    let load = publish(system.api(), signature, "load", ROUNDS, 5, done.clone());
    wait_until("5 signatures of the load logged", BULK, async || {
        (system.read_log().len() >= 12).then_some(())
    })
    .await;

    // Act: SIGKILL mid-stream, 10 more rounds while none listens, then a new run.
    first_run.kill();
    let at_kill = done.load(Ordering::Relaxed);
    assert!(at_kill + 10 < ROUNDS, "killed mid-stream");
    wait_until("10 rounds published while dead", BULK, async || {
        (done.load(Ordering::Relaxed) >= at_kill + 10).then_some(())
    })
    .await;
    let _second_run = system.start_subscriber(&topics);
    let mut published = load.await.expect("the publishing task");
    published.signatures.insert(0, first);
    let last = sign(system.api(), signature).await;
    published.signatures.push(last.clone());
    until_logged(system, "the last signature's outcome logged", |l| {
        l.topic == "signature.verified" && l.fields.get("id") == Some(&last)
    })
    .await;

    // Assert: nothing doubled across the restart, nothing missing, no gap line.
    assert_exactly_signatures(&system.read_log(), &published.signatures);
}
