//! Workers given one host name that resolves to several publishers (a Swarm `tasks.<service>`,
//! a Kubernetes headless service): the real binaries, with a private `/etc/hosts` standing in
//! for DNS (see `test_support::HostsFile`) and publishers on 127.0.0.2, .3, .4 sharing ports.

use serde_json::json;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;
use test_support::openssl::KeyFolder;
use test_support::{
    Api, HostsFile, PATIENCE, Process, RunningPublisher, binary, read_log, wait_until,
};

/// The name the workers are given.
const NAME: &str = "pubs.test";
/// How often the workers look the name up again.
const REFRESH: Duration = Duration::from_secs(2);

/// The ports every publisher binds, on its own address.
struct Ports {
    events: u16,
    tasks: u16,
    results: u16,
    replay: u16,
}

impl Ports {
    /// Four ports free on each of `addresses` (picked on the first, checked on the others).
    fn free_on(addresses: &[&str]) -> Ports {
        for _ in 0..50 {
            let listeners: Vec<TcpListener> = (0..4)
                .map(|_| TcpListener::bind((addresses[0], 0)).expect("127.0.0.2 is loopback"))
                .collect();
            let ports: Vec<u16> = listeners
                .iter()
                .map(|l| l.local_addr().expect("bound").port())
                .collect();
            let free_everywhere = addresses[1..].iter().all(|address| {
                ports
                    .iter()
                    .all(|&port| TcpListener::bind((*address, port)).is_ok())
            });
            if free_everywhere {
                return Ports {
                    events: ports[0],
                    tasks: ports[1],
                    results: ports[2],
                    replay: ports[3],
                };
            }
        }
        panic!("no four ports free on every one of {addresses:?}");
    }
}

/// The environment of a publisher with id `pub-<address>` bound on `address` at `ports`.
fn publisher_env(address: &str, ports: &Ports) -> Vec<(&'static str, String)> {
    vec![
        ("PUBLISHER_ID", format!("pub-{address}")),
        ("HTTP_ADDR", format!("{address}:0")),
        ("EVENTS_BIND", format!("tcp://{address}:{}", ports.events)),
        ("TASKS_BIND", format!("tcp://{address}:{}", ports.tasks)),
        ("RESULTS_BIND", format!("tcp://{address}:{}", ports.results)),
        ("REPLAY_BIND", format!("tcp://{address}:{}", ports.replay)),
    ]
}

/// Starts a publisher with id `pub-<address>` bound on `address` at `ports`.
async fn start_publisher(dir: &Path, address: &str, ports: &Ports) -> RunningPublisher {
    let env = publisher_env(address, ports);
    RunningPublisher::start(&binary("publisher"), dir, &env).await
}

/// Publishers on each of `addresses` at the same free ports, and a hosts file where the name
/// resolves to all of them.
async fn behind_the_name(
    dir: &Path,
    addresses: &[&str],
) -> (Ports, Vec<RunningPublisher>, HostsFile) {
    let ports = Ports::free_on(addresses);
    let mut publishers = Vec::new();
    for address in addresses {
        publishers.push(start_publisher(dir, address, &ports).await);
    }
    (ports, publishers, HostsFile::new(dir, NAME, addresses))
}

/// Starts a subscriber given only the name, logging to `dir/subscriber.log`.
fn start_subscriber(hosts: &HostsFile, dir: &Path, ports: &Ports) -> Process {
    let env = [
        ("EVENTS_CONNECT", format!("tcp://{NAME}:{}", ports.events)),
        ("REPLAY_CONNECT", format!("tcp://{NAME}:{}", ports.replay)),
        ("LOG_FILE", dir.join("subscriber.log").display().to_string()),
        ("DNS_REFRESH", format!("{}s", REFRESH.as_secs())),
    ];
    hosts.start(&binary("subscriber"), dir, &env)
}

/// Starts verifier `v1` given only the name, with the keys of `keys`.
fn start_verifier(hosts: &HostsFile, dir: &Path, ports: &Ports, keys: &KeyFolder) -> Process {
    let env = [
        ("TASKS_CONNECT", format!("tcp://{NAME}:{}", ports.tasks)),
        ("RESULTS_CONNECT", format!("tcp://{NAME}:{}", ports.results)),
        ("KEYS_DIR", keys.keys_dir().display().to_string()),
        ("VERIFIER_ID", "v1".to_owned()),
        ("DNS_REFRESH", format!("{}s", REFRESH.as_secs())),
    ];
    hosts.start(&binary("verifier"), dir, &env)
}

/// How many times each `param` is in the log.
fn params_logged(dir: &Path) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in read_log(&dir.join("subscriber.log")) {
        if let Some(param) = line.param() {
            *counts.entry(param.to_owned()).or_default() += 1;
        }
    }
    counts
}

/// Waits until `param` is in the log, within `limit`.
async fn until_logged(dir: &Path, param: &str, limit: Duration) {
    let what = format!("{param:?} in the log");
    wait_until(&what, limit, async || {
        params_logged(dir).contains_key(param).then_some(())
    })
    .await;
}

/// The value of `series` on the `/metrics` page served at `api`.
async fn metric(api: &Api, series: &str) -> Option<f64> {
    api.metrics().await.value(series)
}

#[tokio::test]
async fn a_subscriber_given_a_name_logs_every_publisher_behind_it_exactly_once() {
    // Arrange: two publishers behind one name, each with events already published.
    let dir = tempfile::tempdir().expect("a scratch directory");
    let addresses = ["127.0.0.2", "127.0.0.3"];
    let (ports, publishers, hosts) = behind_the_name(dir.path(), &addresses).await;
    let mut sent = Vec::new();
    for publisher in &publishers {
        for n in 0..5 {
            let param = format!("{}-{n}", publisher.addresses.id);
            publisher.api().downcase(&param).await;
            sent.push(param);
        }
    }

    // Act
    let _subscriber = start_subscriber(&hosts, dir.path(), &ports);

    // Assert: every event of both, once each.
    for param in &sent {
        until_logged(dir.path(), param, PATIENCE).await;
    }
    let logged = params_logged(dir.path());
    for param in &sent {
        assert_eq!(logged.get(param), Some(&1), "{param} in {logged:?}");
    }
}

#[tokio::test]
async fn a_verifier_given_a_name_serves_every_publisher_behind_it() {
    // Arrange
    let dir = tempfile::tempdir().expect("a scratch directory");
    let keys = KeyFolder::new();
    let alice = keys.key("alice");
    let addresses = ["127.0.0.2", "127.0.0.3"];
    let (ports, publishers, hosts) = behind_the_name(dir.path(), &addresses).await;

    // Act
    let _verifier = start_verifier(&hosts, dir.path(), &ports, &keys);

    // Assert: each publisher hears of the verifier and gets its signatures checked.
    for publisher in &publishers {
        let api = publisher.api();
        let what = format!("{} to hear of the verifier", publisher.addresses.id);
        wait_until(&what, PATIENCE, async || {
            (api.verifiers().await >= 1).then_some(())
        })
        .await;
        let text = format!("signed for {}", publisher.addresses.id);
        let signature = keys.sign_hex(&alice, text.as_bytes());
        let body = json!({"text": text, "signature": signature, "key": "alice"});
        let (status, answer) = api.post_signature("?wait=2s", &body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["status"], "valid", "{answer}");
        assert_eq!(answer["verified_by"], "v1", "{answer}");
    }
}

#[tokio::test]
async fn a_publisher_added_to_the_name_is_followed_and_one_removed_is_let_go() {
    // Arrange: a subscriber following two publishers.
    let dir = tempfile::tempdir().expect("a scratch directory");
    let ports = Ports::free_on(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    let first = start_publisher(dir.path(), "127.0.0.2", &ports).await;
    let second = start_publisher(dir.path(), "127.0.0.3", &ports).await;
    let hosts = HostsFile::new(dir.path(), NAME, &["127.0.0.2", "127.0.0.3"]);
    let mut subscriber = start_subscriber(&hosts, dir.path(), &ports);
    let health = Api::new(subscriber.health_addr().await);
    for publisher in [&first, &second] {
        let param = format!("{}-before", publisher.addresses.id);
        publisher.api().downcase(&param).await;
        until_logged(dir.path(), &param, PATIENCE).await;
    }
    let connected = r#"guard_connections_active{socket="events"}"#;
    assert_eq!(metric(&second.api(), connected).await, Some(1.0));

    // Act 1: a third publisher appears behind the name.
    let third = start_publisher(dir.path(), "127.0.0.4", &ports).await;
    third.api().downcase("third-1").await;
    hosts.write(NAME, &["127.0.0.2", "127.0.0.3", "127.0.0.4"]);

    // Assert 1: its events are logged within three lookups.
    until_logged(dir.path(), "third-1", REFRESH * 3).await;

    // Act 2: the second one leaves the name.
    hosts.write(NAME, &["127.0.0.2", "127.0.0.4"]);

    // Assert 2: its connection is closed — on both ends — and the others keep flowing.
    wait_until(
        "the second publisher to lose its subscriber",
        PATIENCE,
        async || (metric(&second.api(), connected).await == Some(0.0)).then_some(()),
    )
    .await;
    wait_until(
        "the subscriber to count two publishers",
        PATIENCE,
        async || (metric(&health, "publishers_connected").await == Some(2.0)).then_some(()),
    )
    .await;
    first.api().downcase("first-after").await;
    third.api().downcase("third-after").await;
    until_logged(dir.path(), "first-after", PATIENCE).await;
    until_logged(dir.path(), "third-after", PATIENCE).await;
    let logged = params_logged(dir.path());
    assert!(logged.values().all(|&n| n == 1), "{logged:?}");
    let page = health.metrics().await;
    assert!(
        page.value(&format!("dns_addresses{{name=\"{NAME}\"}}")) == Some(2.0),
        "{}",
        page.0
    );
}

#[tokio::test]
async fn publishers_given_their_own_name_as_peers_answer_each_others_requests() {
    // Arrange: two publishers whose PEERS_CONNECT is the name of both (themselves included,
    // as a Swarm service's `tasks.<service>` is), and a verifier following the name.
    let dir = tempfile::tempdir().expect("a scratch directory");
    let keys = KeyFolder::new();
    let alice = keys.key("alice");
    let addresses = ["127.0.0.2", "127.0.0.3"];
    let ports = Ports::free_on(&addresses);
    let hosts = HostsFile::new(dir.path(), NAME, &addresses);
    let mut publishers = Vec::new();
    for address in addresses {
        let mut env = publisher_env(address, &ports);
        env.push(("PEERS_CONNECT", format!("tcp://{NAME}:{}", ports.events)));
        env.push(("DNS_REFRESH", format!("{}s", REFRESH.as_secs())));
        let process = hosts.start(&binary("publisher"), dir.path(), &env);
        publishers.push(RunningPublisher::started(process).await);
    }
    let _verifier = start_verifier(&hosts, dir.path(), &ports, &keys);
    for publisher in &publishers {
        let api = publisher.api();
        let what = format!(
            "{} to hear of its peer and the verifier",
            publisher.addresses.id
        );
        wait_until(&what, PATIENCE, async || {
            let peers = metric(&api, "peer_publishers_known").await.unwrap_or(0.0);
            (peers >= 1.0 && api.verifiers().await >= 1).then_some(())
        })
        .await;
    }

    for (taker, asked) in [
        (&publishers[0], &publishers[1]),
        (&publishers[1], &publishers[0]),
    ] {
        // Act: a request taken by one, asked of the other.
        let text = format!("taken by {}", taker.addresses.id);
        let signature = keys.sign_hex(&alice, text.as_bytes());
        let body = json!({"text": text, "signature": signature, "key": "alice"});
        let (status, answer) = taker.api().post_signature("", &body).await;
        assert_eq!(status, 202, "{answer}");
        let id = answer["id"].as_str().expect("an id").to_owned();

        // Assert: the other answers with the taker's verdict.
        let other = asked.api();
        let verdict = wait_until(&format!("{id} final on the other"), PATIENCE, async || {
            let (status, answer) = other.get_json(&format!("/signatures/{id}")).await;
            (status == 200 && answer["status"] != "pending").then_some(answer)
        })
        .await;
        assert_eq!(verdict["status"], "valid", "{verdict}");
    }
    // Each follows only the other: its own events, reached through the same name, are not
    // counted as a peer's.
    for publisher in &publishers {
        let known = metric(&publisher.api(), "peer_publishers_known").await;
        assert_eq!(known, Some(1.0), "{}", publisher.addresses.id);
    }
}
