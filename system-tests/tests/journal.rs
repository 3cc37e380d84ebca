//! Acknowledged means durable (design §6): with `JOURNAL_DIR`, a publisher killed with SIGKILL
//! and started again loses no acknowledged event and no accepted signature request; a damaged
//! journal is repaired and reported, never a refusal to start; a full disk gets 503s with a
//! reason, and the publisher recovers by itself once space returns. The real binaries, killed
//! for real, on a real tmpfs.

use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use test_support::{Api, LogLine, PATIENCE, PUBLISHER_ID, TestSystem, Tmpfs, wait_until};
use tokio::task::JoinSet;

/// Clients sending at once.
const CLIENTS: usize = 16;
/// Bound for a failing test on two busy cores.
const BULK: Duration = Duration::from_secs(120);

fn journal_env(dir: &Path) -> Vec<(&'static str, String)> {
    vec![("JOURNAL_DIR", dir.display().to_string())]
}

/// Sends `/downcase?param=<label>-<client>-<n>` from [`CLIENTS`] clients until `stop`, tolerating
/// refused connections and errors, counting 200s in `ok`; returns every param that got a 200,
/// with its number.
fn load(
    api: &Api,
    label: &str,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
) -> JoinSet<Vec<(u64, String)>> {
    let mut clients = JoinSet::new();
    for client in 0..CLIENTS {
        let (api, label, stop, ok) = (api.clone(), label.to_owned(), stop.clone(), ok.clone());
        clients.spawn(async move {
            let mut acked = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let param = format!("{label}-{client}-{n}");
                let answer = api
                    .request(reqwest::Method::GET, "/downcase")
                    .query(&[("param", param.as_str())])
                    .send()
                    .await;
                let Ok(answer) = answer else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                if answer.status() != 200 {
                    continue;
                }
                let Ok(body) = answer.json::<serde_json::Value>().await else {
                    continue;
                };
                if let Some(seq) = body["event"]["seq"].as_u64() {
                    acked.push((seq, param));
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
            acked
        });
    }
    clients
}

async fn joined(mut clients: JoinSet<Vec<(u64, String)>>) -> Vec<(u64, String)> {
    let mut all = Vec::new();
    while let Some(client) = clients.join_next().await {
        all.extend(client.expect("a client task"));
    }
    all.sort();
    all
}

/// Waits until every param in `acked` is in the log; returns the log.
async fn until_logged(system: &TestSystem, acked: &[(u64, String)]) -> Vec<LogLine> {
    let wanted: HashSet<&str> = acked.iter().map(|(_, p)| p.as_str()).collect();
    wait_until("every acknowledged event in the log", BULK, async || {
        let lines = system.read_log();
        let logged: HashSet<&str> = lines.iter().filter_map(|l| l.param()).collect();
        wanted.iter().all(|p| logged.contains(p)).then_some(())
    })
    .await;
    system.read_log()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_killed_mid_burst_loses_no_acknowledged_event_and_goes_on_in_the_same_epoch() {
    // Arrange: a journaled publisher, a subscriber, clients sending at full rate.
    let system = TestSystem::new();
    let journal = system.dir.path().join("journal");
    let mut publisher = system.start_publisher_with(&journal_env(&journal)).await;
    let _subscriber = system.start_subscriber(&[]);
    system.until_subscribed("warm-up").await;
    let epoch = system.addresses().epoch;
    let (stop, ok) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let clients = load(system.api(), "burst", stop.clone(), ok.clone());
    let answered = |at_least: usize| {
        let ok = ok.clone();
        async move {
            wait_until("the clients' requests to be answered", BULK, async || {
                (ok.load(Ordering::Relaxed) >= at_least).then_some(())
            })
            .await;
        }
    };

    // Act: SIGKILL in the middle of the burst, a restart on the same ports, more requests.
    answered(500).await;
    publisher.kill();
    let before_restart = ok.load(Ordering::Relaxed);
    let restarted = system.start_publisher_with(&journal_env(&journal)).await;
    answered(before_restart + 500).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = joined(clients).await;
    let last = system.api().downcase("after-the-restart").await;
    acked.push((
        last["event"]["seq"].as_u64().expect("a seq"),
        "after-the-restart".into(),
    ));

    // Assert: the stream went on in the same epoch; every acknowledged event is logged once,
    // with the number its answer named; the numbers run without a hole; no gap line.
    restarted
        .wait_for_log(&format!("epoch={epoch}"), PATIENCE)
        .await;
    assert!(
        acked.len() > 200,
        "only {} requests were acknowledged",
        acked.len()
    );
    let lines = until_logged(&system, &acked).await;
    let gaps: Vec<_> = lines.iter().filter(|l| l.topic == "gap").collect();
    assert!(gaps.is_empty(), "gap lines: {gaps:?}");
    let mut by_param: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for line in &lines {
        if let Some(param) = line.param() {
            by_param.entry(param).or_default().push(line.seq);
        }
    }
    for (seq, param) in &acked {
        assert_eq!(
            by_param.get(param.as_str()),
            Some(&vec![*seq]),
            "{param} acknowledged as #{seq}"
        );
    }
    let seqs: Vec<u64> = lines.iter().map(|l| l.seq).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert!(seqs == expected, "the log's numbers are not 1.. +1");
    assert!(lines.iter().all(|l| l.publisher == PUBLISHER_ID));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_signature_requests_answer_after_a_sigkill_and_end_valid() {
    // Arrange: a journaled publisher and a verifier, frozen once it is known, so that no
    // verdict comes back for the requests accepted next.
    let system = TestSystem::new();
    let journal = system.dir.path().join("journal");
    let alice = system.keys.key("alice");
    let mut publisher = system.start_publisher_with(&journal_env(&journal)).await;
    let mut verifier = system.start_verifier("v1");
    system.until_verifiers(1).await;
    verifier.pause();
    let text = "I owe Bob 10 €.\n";
    let body = json!({"text": text, "signature": system.keys.sign_hex(&alice, text.as_bytes())});
    let mut ids = Vec::new();
    let mut posts = JoinSet::new();
    for _ in 0..500 {
        let (api, body) = (system.api().clone(), body.clone());
        posts.spawn(async move { api.post_signature("", &body).await });
        if posts.len() >= CLIENTS {
            let (status, answer) = posts.join_next().await.expect("a post").expect("no panic");
            assert_eq!(status, 202, "{answer}");
            ids.push(answer["id"].as_str().expect("an id").to_owned());
        }
    }
    while let Some(post) = posts.join_next().await {
        let (status, answer) = post.expect("no panic");
        assert_eq!(status, 202, "{answer}");
        ids.push(answer["id"].as_str().expect("an id").to_owned());
    }
    let (_, first) = system
        .api()
        .get_json(&format!("/signatures/{}", ids[0]))
        .await;
    assert_eq!(first["status"], "pending", "{first}");

    // Act: the publisher dies before any verdict; the frozen verifier with it; both start again.
    publisher.kill();
    verifier.kill();
    let _publisher = system.start_publisher_with(&journal_env(&journal)).await;
    let _verifier = system.start_verifier("v2");

    // Assert: every id answers, and each ends valid.
    for id in &ids {
        let outcome = system.api().signature_outcome(id).await;
        assert_eq!(outcome["status"], "valid", "{id}: {outcome}");
        assert_eq!(outcome["verified_by"], "v2", "{id}: {outcome}");
    }
}

/// The journal's segment files, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the journal directory")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "journal"))
        .collect();
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_and_a_flipped_byte_are_reported_and_every_intact_event_around_them_served() {
    // Arrange: 300 events journaled by a publisher that then stopped; then the last record cut
    // short (a crash mid-write) and one byte flipped inside the 100th event's record.
    let system = TestSystem::new();
    let journal = system.dir.path().join("journal");
    let mut publisher = system.start_publisher_with(&journal_env(&journal)).await;
    for i in 1..=300 {
        system.api().downcase(&format!("kept-{i}")).await;
    }
    publisher.terminate(PATIENCE).await;
    let segment = segments(&journal).pop().expect("a segment");
    let mut bytes = std::fs::read(&segment).expect("the segment");
    let hundredth = find(&bytes, b"kept-100").expect("the 100th event in the segment");
    bytes[hundredth] ^= 0x01;
    bytes.truncate(bytes.len() - 5);
    std::fs::write(&segment, &bytes).expect("the damaged segment written");

    // Act
    let publisher = system.start_publisher_with(&journal_env(&journal)).await;
    let next = system.api().downcase("after-repair").await;
    let _subscriber = system.start_subscriber(&[]);

    // Assert: both damages reported (log and metric); numbering goes on after the last intact
    // event (#299); the subscriber logs every intact event before the skipped record, one gap
    // line for it alone, every intact event after it, then the new one.
    publisher
        .wait_for_log("journal damage repaired", PATIENCE)
        .await;
    let stderr = publisher.stderr();
    assert!(stderr.contains("torn last record"), "{stderr}");
    assert!(stderr.contains("checksum"), "{stderr}");
    assert!(stderr.contains("damaged=2"), "{stderr}");
    let metrics = system.api().metrics().await;
    assert_eq!(metrics.value("journal_damage_total"), Some(2.0));
    assert_eq!(next["event"]["seq"], 300, "{next}");
    let lines = wait_until("300 lines in the log", BULK, async || {
        let lines = system.read_log();
        (lines.len() >= 300).then_some(lines)
    })
    .await;
    assert_eq!(lines.len(), 300, "{:?}", &lines[299..]);
    for (line, seq) in lines.iter().zip(1..) {
        if seq == 100 {
            assert_eq!((line.topic.as_str(), line.seq), ("gap", 100), "{line:?}");
            assert_eq!(line.fields["last"], "100", "{line:?}");
            continue;
        }
        let expected = if seq == 300 {
            "after-repair".to_owned()
        } else {
            format!("kept-{seq}")
        };
        assert_eq!(line.seq, seq, "{line:?}");
        assert_eq!(line.param(), Some(expected.as_str()), "{line:?}");
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_journal_disk_gets_503s_with_a_reason_and_the_publisher_recovers_when_space_returns()
{
    // Arrange: the journal on a 2 MiB tmpfs, events flowing to a subscriber.
    let system = TestSystem::new();
    let journal = system.dir.path().join("journal");
    let tmpfs = Tmpfs::mount(&journal, "2m");
    let publisher = system.start_publisher_with(&journal_env(&journal)).await;
    let _subscriber = system.start_subscriber(&[]);
    system.until_subscribed("before-full").await;
    let mut acked = vec![system.api().downcase("before-full-ok").await];

    // Act: the disk filled up by something else.
    let filler = tmpfs.fill();
    let refused = wait_until("a 503 from a full journal", PATIENCE, async || {
        let answer = system
            .api()
            .request(reqwest::Method::GET, "/downcase?param=while-full")
            .send()
            .await
            .ok()?;
        (answer.status() == 503).then_some(answer)
    })
    .await;
    let retry_after = refused.headers().get("retry-after").cloned();
    let refusal: serde_json::Value = refused.json().await.expect("a JSON error");
    let (ready_status, ready) = system.api().get_json("/readyz").await;

    // Space returns.
    std::fs::remove_file(&filler).expect("the filler removed");
    let recovered = wait_until("a 200 once space is back", PATIENCE, async || {
        let answer = system
            .api()
            .request(reqwest::Method::GET, "/downcase?param=after-space")
            .send()
            .await
            .ok()?;
        if answer.status() != 200 {
            return None;
        }
        answer.json::<serde_json::Value>().await.ok()
    })
    .await;
    acked.push(recovered);

    // Assert: a 503 naming the journal and the cause, /readyz saying why, no panic, and every
    // acknowledged event logged.
    let reason = refusal["error"].as_str().unwrap_or_default();
    assert!(reason.contains("journal"), "{refusal}");
    assert!(reason.contains("space"), "{refusal}");
    assert!(retry_after.is_some());
    assert_eq!(ready_status, 503, "{ready}");
    assert!(
        ready["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("space"),
        "{ready}"
    );
    assert!(!publisher.stderr().contains("panicked"));
    let acked: Vec<(u64, String)> = acked
        .iter()
        .map(|a| {
            let seq = a["event"]["seq"].as_u64().expect("a seq");
            (seq, a["param"].as_str().expect("a param").to_owned())
        })
        .collect();
    let lines = until_logged(&system, &acked).await;
    assert!(lines.iter().all(|l| l.topic != "gap"), "{lines:?}");
    let metrics = system.api().metrics().await;
    assert!(metrics.value("journal_write_errors_total").unwrap_or(0.0) >= 1.0);
}
