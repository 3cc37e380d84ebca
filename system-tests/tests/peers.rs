//! Several publishers behind one load balancer, through the real binaries: each follows the
//! others' events (`PEERS_CONNECT`), so a request made on one is answered on another — pending
//! at once, then its verdict — while garbage ids stay 404 without waiting, and a peer without
//! the shared key cannot plant a status.

use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use test_support::{Api, PATIENCE, Process, RunningPublisher, TestSystem, binary, wait_until};
use wire::{Broadcast, Codec, Event, Origin, SignatureOutcome, SignatureStatus};
use zeromq::{Socket, SocketSend};

const SHARED_KEY: &str = "the-shared-key-of-the-publishers!";
const ROGUE_KEY: &str = "a-key-nobody-else-has-of-32-bytes";

/// The tests of this file take turns. Each learns two publishers' ports by starting and
/// killing them, then starts them again on those ports; a publisher of another test starting
/// meanwhile may be given one of the ports just freed (seen under load), and the restart then
/// cannot bind.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Publisher A (the [`TestSystem`]'s own) and publisher B, each following the other, and
/// verifier `v1` serving both.
struct TwoPublishers {
    system: TestSystem,
    /// Alice's private key; the verifier has the public one.
    alice: std::path::PathBuf,
    _a: Process,
    b: RunningPublisher,
    verifier: Process,
    /// Held for the whole test: see [`ONE_AT_A_TIME`].
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl TwoPublishers {
    /// A follows B; B follows A and itself, as a name of the whole service would list it.
    /// Both (and the verifier) get `env`, B also `b_env`; B follows `b_extra_peers` too. They
    /// run in `system`'s directory.
    async fn start(
        system: TestSystem,
        env: &[(&str, String)],
        b_env: &[(&str, String)],
        b_extra_peers: &[String],
    ) -> Self {
        let turn = ONE_AT_A_TIME.lock().await;
        let alice = system.keys.key("alice");
        let program = binary("publisher");
        let with_id = |id: &str| {
            let mut all = vec![
                ("PUBLISHER_ID", id.to_owned()),
                ("HEARTBEAT_INTERVAL", "200ms".to_owned()),
            ];
            all.extend(env.iter().cloned());
            all
        };
        // Each one's ports are learnt first, so that each can be told the other's.
        let a_addresses = system.learn_publisher_addresses().await.clone();
        let mut learning =
            RunningPublisher::start(&program, system.dir.path(), &with_id("pub-b")).await;
        learning.process.kill();
        let b_addresses = learning.addresses;

        let mut a_env = with_id("pub-a");
        a_env.push(("PEERS_CONNECT", b_addresses.events.clone()));
        let a = system.start_publisher_with(&a_env).await;
        let mut b_peers = vec![a_addresses.events.clone(), b_addresses.events.clone()];
        b_peers.extend(b_extra_peers.iter().cloned());
        let mut b_env_all = with_id("pub-b");
        b_env_all.push(("PEERS_CONNECT", b_peers.join(",")));
        b_env_all.extend(b_env.iter().cloned());
        let b =
            RunningPublisher::start_on(&program, system.dir.path(), &b_addresses, &b_env_all).await;
        let mut verifier_env = vec![
            (
                "TASKS_CONNECT",
                format!("{},{}", a_addresses.tasks, b_addresses.tasks),
            ),
            (
                "RESULTS_CONNECT",
                format!("{},{}", a_addresses.results, b_addresses.results),
            ),
        ];
        verifier_env.extend(env.iter().cloned());
        let verifier = system.start_verifier_with("v1", &verifier_env);
        let started = TwoPublishers {
            system,
            alice,
            _a: a,
            b,
            verifier,
            _turn: turn,
        };
        for api in [started.a(), &started.b()] {
            until_ready(api).await;
        }
        started
    }

    fn a(&self) -> &Api {
        self.system.api()
    }

    fn b(&self) -> Api {
        self.b.api()
    }

    /// A signature request body for alice: a good signature of `text`, or one of another text.
    fn body(&self, text: &str, good: bool) -> Value {
        let signed = if good {
            text.to_owned()
        } else {
            format!("not {text}")
        };
        let signature = self.system.keys.sign_hex(&self.alice, signed.as_bytes());
        json!({"text": text, "signature": signature, "key": "alice"})
    }
}

/// Waits until `api`'s publisher has a verifier and has heard from its one peer.
async fn until_ready(api: &Api) {
    wait_until("a verifier and a peer heard from", PATIENCE, async || {
        let peers = api.metrics().await.value("peer_publishers_known");
        (api.verifiers().await >= 1 && peers == Some(1.0)).then_some(())
    })
    .await;
}

/// `POST /signatures` on `api`, asserting the 202; the new request's id.
async fn submit(api: &Api, body: &Value) -> String {
    let (status, answer) = api.post_signature("", body).await;
    assert_eq!(status, 202, "{answer}");
    answer["id"].as_str().expect("an id").to_owned()
}

/// Polls `GET /signatures/{id}` on `api` until it leaves pending (404 included: the request
/// must be known all along).
async fn outcome_on(api: &Api, id: &str) -> Value {
    let path = format!("/signatures/{id}");
    wait_until(&format!("{id} to leave pending"), PATIENCE, async || {
        let (status, body) = api.get_json(&path).await;
        assert_eq!(status, 200, "{path}: {body}");
        (body["status"] != "pending").then_some(body)
    })
    .await
}

fn metric(metrics: &test_support::Metrics, series: &str) -> f64 {
    metrics.value(series).unwrap_or_default()
}

#[tokio::test]
async fn a_request_made_on_one_publisher_is_answered_on_the_other_pending_then_final() {
    // Arrange
    let publishers = TwoPublishers::start(TestSystem::new(), &[], &[], &[]).await;
    let (a, b) = (publishers.a(), publishers.b());

    // Act: a request on A, asked for on B at once — before A's event can have reached B.
    let good = submit(a, &publishers.body("Pay Bob 10 €.", true)).await;
    let (status, first) = b.get_json(&format!("/signatures/{good}")).await;
    let bad = submit(a, &publishers.body("Pay Bob 20 €.", false)).await;

    // Assert: B knew it at once (pending or already ended), then has A's verdicts.
    assert_eq!(status, 200, "{first}");
    assert!(
        ["pending", "valid"].contains(&first["status"].as_str().unwrap_or("")),
        "{first}"
    );
    let verdict = outcome_on(&b, &good).await;
    assert_eq!(
        (
            &verdict["id"],
            &verdict["status"],
            &verdict["verified_by"],
            &verdict["key"]
        ),
        (&json!(good), &json!("valid"), &json!("v1"), &json!("alice")),
        "{verdict}"
    );
    let verdict = outcome_on(&b, &bad).await;
    assert_eq!(verdict["status"], "invalid", "{verdict}");
    assert!(verdict["reason"].is_string(), "{verdict}");
    assert_eq!(
        verdict,
        a.signature_outcome(&bad).await,
        "the same answer on both"
    );

    // While no verifier answers, B shows A's request pending, then its verdict.
    publishers.verifier.pause();
    let waiting = submit(a, &publishers.body("Pay Bob 30 €.", true)).await;
    let (status, pending) = b.get_json(&format!("/signatures/{waiting}")).await;
    publishers.verifier.resume();
    assert_eq!(
        (status, &pending["status"]),
        (200, &json!("pending")),
        "{pending}"
    );
    assert_eq!(outcome_on(&b, &waiting).await["status"], "valid");

    // The other way: a request on B is answered on A, which follows B.
    let on_b = submit(&b, &publishers.body("Pay Bob 40 €.", true)).await;
    assert_eq!(outcome_on(a, &on_b).await["status"], "valid");

    // An id in A's form that A never made: 404 on B, after its short wait.
    let tag = good.split_once('-').expect("an id names its publisher").0;
    let unknown = format!("{tag}-{}", "0".repeat(32));
    let response = b.get(&format!("/signatures/{unknown}")).await;
    assert_eq!(response.status(), 404);

    // B counted A's three requests, not its own (it follows itself too, and ignores that).
    let metrics = b.metrics().await;
    assert_eq!(
        metric(&metrics, "peer_requests_known"),
        3.0,
        "{}",
        metrics.0
    );
    assert_eq!(
        metric(&metrics, "peer_publishers_known"),
        1.0,
        "{}",
        metrics.0
    );
    assert!(
        metric(&metrics, "peer_events_received_total") >= 6.0,
        "{}",
        metrics.0
    );
    assert!(
        metric(&metrics, "peer_lookups_answered_total") >= 3.0,
        "{}",
        metrics.0
    );
}

#[tokio::test]
async fn an_id_of_no_followed_publisher_is_404_at_once_however_long_peer_wait_is() {
    // Arrange: B would wait 10 s for an id of a publisher it follows.
    let wait = [("PEER_WAIT", "10s".to_owned())];
    let publishers = TwoPublishers::start(TestSystem::new(), &[], &wait, &[]).await;
    let b = publishers.b();
    let good = submit(publishers.a(), &publishers.body("Pay Bob 10 €.", true)).await;
    let random_part = good.split_once('-').expect("an id names its publisher").1;

    for id in [
        "0123456789abcdef0123456789abcdef".to_owned(),
        format!("00000000-{random_part}"),
        "not-an-id".to_owned(),
    ] {
        // Act
        let answer =
            tokio::time::timeout(Duration::from_secs(5), b.get(&format!("/signatures/{id}"))).await;

        // Assert: well inside PEER_WAIT, so it did not wait.
        let response = answer.unwrap_or_else(|_| panic!("{id}: B waited for a peer's event"));
        assert_eq!(response.status(), 404, "{id}");
    }
}

#[tokio::test]
async fn a_peer_without_the_shared_key_cannot_plant_a_status() {
    // Arrange: every process has the shared key; B also follows a rogue PUB that has another
    // key (and then none), and sends garbage.
    let system = TestSystem::new();
    let key_file = write(system.dir.path(), "shared.key", SHARED_KEY);
    let mut rogue = zeromq::PubSocket::new();
    let rogue_endpoint = rogue
        .bind("tcp://127.0.0.1:0")
        .await
        .expect("the rogue binds")
        .to_string();
    let env = [("SHARED_KEY_FILE", key_file)];
    let publishers =
        TwoPublishers::start(system, &env, &[], std::slice::from_ref(&rogue_endpoint)).await;
    let b = publishers.b();
    publishers.verifier.pause();
    let pending = submit(publishers.a(), &publishers.body("Pay Bob 10 €.", true)).await;
    let rogue_key = wire::SharedKey::from_bytes(ROGUE_KEY.as_bytes()).expect("a long key");
    let rogue_codecs = [Codec::new(Some(rogue_key)), Codec::new(None)];
    let forged = |sender: &str, id: &str| {
        let outcome = SignatureOutcome {
            id: id.to_owned(),
            key: "alice".into(),
            status: SignatureStatus::Valid,
            reason: None,
            verified_by: Some("rogue".into()),
            attempts: 1,
        };
        let body = Broadcast::Event(Event::SignatureOutcome(outcome));
        Origin::starting_now(sender).envelope(1, body)
    };
    let planted = format!("{}-{}", "1".repeat(8), "2".repeat(32));

    // Act: "valid" for A's pending request in A's name, and for an id of its own, until B has
    // dropped a good number of them.
    let rejected = format!("messages_rejected_total{{on=\"{rogue_endpoint}\"}}");
    wait_until("B to drop the rogue's messages", PATIENCE, async || {
        for codec in &rogue_codecs {
            for envelope in [forged("pub-a", &pending), forged("rogue", &planted)] {
                rogue.send(codec.encode(&envelope)).await.expect("sent");
            }
        }
        let mut garbage = zeromq::ZmqMessage::from("signature.verified");
        garbage.push_back(bytes::Bytes::from_static(b"\xc1 not MessagePack"));
        rogue.send(garbage).await.expect("sent");
        (metric(&b.metrics().await, &rejected) >= 30.0).then_some(())
    })
    .await;

    // Assert: A's request is still pending on B, the rogue's id unknown, B still up.
    let (status, answer) = b.get_json(&format!("/signatures/{pending}")).await;
    assert_eq!(
        (status, &answer["status"]),
        (200, &json!("pending")),
        "{answer}"
    );
    let response = b.get(&format!("/signatures/{planted}")).await;
    assert_eq!(response.status(), 404);
    assert_eq!(b.get("/healthz").await.status(), 200);
    publishers.verifier.resume();
    let verdict = outcome_on(&b, &pending).await;
    assert_eq!(
        (&verdict["status"], &verdict["verified_by"]),
        (&json!("valid"), &json!("v1"))
    );
}

fn write(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("written");
    path.display().to_string()
}
