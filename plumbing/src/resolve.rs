//! Following host names (design §2, §9): a worker given `tcp://publishers:4444` connects to
//! every address the name resolves to — not only the first, as the ZMQ libraries do — looks
//! the name up again every `DNS_REFRESH`, and is told when peers appear and vanish, so a Swarm
//! service (`tasks.<service>`) or a Kubernetes headless service lists the publishers.
//!
//! - A [`Target`] is the endpoints configured together for one peer (a publisher's events and
//!   replay sockets): all on one host name, or all IP addresses (a fixed peer of one).
//! - A [`Follow`] looks every target's name up, again and again, and publishes the set of
//!   [`Peer`]s — each address of a name with the target's ports — on a `watch`.
//! - [`for_each_peer`] keeps one task per peer: started when it appears, cancelled when it
//!   vanishes.
//!
//! A failed or empty lookup keeps the last good set (with a warning): a DNS blip must not drop
//! live peers.

use std::collections::{BTreeMap, BTreeSet, btree_map};
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use zeromq::{Endpoint, Host};

/// The `DNS_REFRESH` flag, for every binary that follows names.
#[derive(Debug, Clone, clap::Args)]
pub struct FollowArgs {
    /// How often host names in the *_CONNECT endpoints are looked up again, e.g. `5s`: a
    /// peer whose address appears is connected to, one whose address vanishes is let go. A
    /// failed lookup keeps the addresses of the last good one.
    #[arg(long, env = "DNS_REFRESH", default_value = "5s", value_parser = crate::positive_duration)]
    pub dns_refresh: Duration,
}

/// One peer: its endpoints (`tcp://IP:PORT`), one per endpoint of its [`Target`], in order.
pub type Peer = Vec<String>;

/// The endpoints configured together for one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// No endpoint names a host name: one peer, always at these endpoints.
    Fixed(Peer),
    /// Every endpoint names host `name`: one peer per address it resolves to, with these
    /// `ports` in the configured order.
    Name {
        /// The host name.
        name: String,
        /// The port of each endpoint.
        ports: Vec<u16>,
    },
}

/// Endpoints configured together cannot be followed as one peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// A host name and another host in the same group: which address of the name goes with
    /// which of the other is anyone's guess.
    #[error(
        "{first} and {second} go together (same position in their lists) but name different \
         hosts; with a host name, both must name the same one, so that each address it \
         resolves to is one peer"
    )]
    DifferentHosts {
        /// The first endpoint of the group.
        first: String,
        /// The one naming another host.
        second: String,
    },
    /// An endpoint that is not `tcp://host:port`.
    #[error("{0:?} is not a ZMQ endpoint like tcp://host:port")]
    NotAnEndpoint(String),
}

impl Target {
    /// The target of `endpoints` (one peer's, in order; at least one): a [`Target::Name`] when
    /// they name a host name — all the same one, or it is an error — else [`Target::Fixed`].
    pub fn new(endpoints: &[&str]) -> Result<Target, TargetError> {
        let mut name: Option<(&str, String)> = None;
        let mut literal: Option<&str> = None;
        let mut ports = Vec::with_capacity(endpoints.len());
        for &endpoint in endpoints {
            let parsed = endpoint
                .parse::<Endpoint>()
                .map_err(|_| TargetError::NotAnEndpoint(endpoint.to_owned()))?;
            match parsed {
                Endpoint::Tcp(Host::Domain(host), port) => {
                    match &name {
                        Some((_, known)) if *known != host => {
                            return Err(different(endpoints, endpoint));
                        }
                        Some(_) => {}
                        None => name = Some((endpoint, host)),
                    }
                    ports.push(port);
                }
                _ => literal = literal.or(Some(endpoint)),
            }
        }
        match (name, literal) {
            (Some((_, name)), None) => Ok(Target::Name { name, ports }),
            (Some((named, _)), Some(other)) => Err(TargetError::DifferentHosts {
                first: named.to_owned(),
                second: other.to_owned(),
            }),
            (None, _) => Ok(Target::Fixed(
                endpoints.iter().map(|e| (*e).to_owned()).collect(),
            )),
        }
    }

    /// The peer at `ip` of a [`Target::Name`].
    fn peer_at(ports: &[u16], ip: IpAddr) -> Peer {
        ports
            .iter()
            .map(|&port| Endpoint::from_tcp_addr(SocketAddr::new(ip, port)).to_string())
            .collect()
    }
}

fn different(endpoints: &[&str], second: &str) -> TargetError {
    TargetError::DifferentHosts {
        first: endpoints.first().copied().unwrap_or_default().to_owned(),
        second: second.to_owned(),
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Fixed(peer) => f.write_str(&peer.join(" + ")),
            Target::Name { name, .. } => f.write_str(name),
        }
    }
}

/// The current peers of a list of targets, kept up to date by a task of its own (stopped when
/// the `Follow` is dropped).
#[derive(Debug)]
pub struct Follow {
    peers: watch::Receiver<BTreeSet<Peer>>,
    task: Option<JoinHandle<()>>,
}

impl Follow {
    /// Follows `targets`, looking names up at once and then every `every`. The fixed peers
    /// are in the set from the start; a name's peers once its first lookup answers.
    pub fn start(targets: Vec<Target>, every: Duration) -> Follow {
        let mut fixed = BTreeSet::new();
        let mut names: BTreeMap<String, Vec<Vec<u16>>> = BTreeMap::new();
        for target in targets {
            match target {
                Target::Fixed(peer) => {
                    fixed.insert(peer);
                }
                Target::Name { name, ports } => names.entry(name).or_default().push(ports),
            }
        }
        let (publish, peers) = watch::channel(fixed.clone());
        let task = (!names.is_empty()).then(|| {
            let names = names
                .into_iter()
                .map(|(name, ports)| Name::new(name, ports))
                .collect();
            tokio::spawn(look_up_every(fixed, names, every, publish))
        });
        Follow { peers, task }
    }

    /// The current peers, and changes to them.
    pub fn peers(&self) -> watch::Receiver<BTreeSet<Peer>> {
        self.peers.clone()
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// One followed name: the port lists it is configured with, and its last good answer.
struct Name {
    name: String,
    ports: Vec<Vec<u16>>,
    addresses: BTreeSet<IpAddr>,
    /// Lookups failed in a row (only the first of a run is a warning).
    failures: u64,
    gauge: metrics::Gauge,
}

impl Name {
    fn new(name: String, ports: Vec<Vec<u16>>) -> Name {
        let gauge = metrics::gauge!("dns_addresses", "name" => name.clone());
        gauge.set(0.0);
        Name {
            name,
            ports,
            addresses: BTreeSet::new(),
            failures: 0,
            gauge,
        }
    }

    /// Looks the name up; `true` when its set of addresses changed.
    async fn refresh(&mut self) -> bool {
        let answer = tokio::net::lookup_host((self.name.as_str(), 0))
            .await
            .map(|found| found.map(|a| a.ip()).collect::<BTreeSet<_>>());
        let addresses = match answer {
            // An empty answer proves nothing either: keep the peers that may well be alive.
            Ok(addresses) if !addresses.is_empty() => addresses,
            failed => {
                let cause = match failed {
                    Err(e) => e.to_string(),
                    Ok(_) => "no address".to_owned(),
                };
                self.failures += 1;
                metrics::counter!("dns_lookup_failures_total", "name" => self.name.clone())
                    .increment(1);
                if self.failures == 1 {
                    tracing::warn!(name = %self.name, %cause, kept = self.addresses.len(), "lookup failed; keeping the last addresses");
                } else {
                    tracing::debug!(name = %self.name, %cause, failures = self.failures, "lookup failed again");
                }
                return false;
            }
        };
        if self.failures > 0 {
            tracing::info!(name = %self.name, failures = self.failures, "lookups answer again");
            self.failures = 0;
        }
        if addresses == self.addresses {
            return false;
        }
        let added: Vec<&IpAddr> = addresses.difference(&self.addresses).collect();
        let removed: Vec<&IpAddr> = self.addresses.difference(&addresses).collect();
        tracing::info!(name = %self.name, ?added, ?removed, following = addresses.len(), "addresses of a followed name changed");
        metrics::counter!("dns_changes_total", "name" => self.name.clone()).increment(1);
        self.gauge.set(addresses.len() as f64);
        self.addresses = addresses;
        true
    }

    fn peers(&self) -> impl Iterator<Item = Peer> + '_ {
        self.addresses.iter().flat_map(|&ip| {
            self.ports
                .iter()
                .map(move |ports| Target::peer_at(ports, ip))
        })
    }
}

async fn look_up_every(
    fixed: BTreeSet<Peer>,
    mut names: Vec<Name>,
    every: Duration,
    publish: watch::Sender<BTreeSet<Peer>>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = publish.closed() => return,
        }
        let mut changed = false;
        for name in &mut names {
            changed |= name.refresh().await;
        }
        if changed {
            let mut peers = fixed.clone();
            peers.extend(names.iter().flat_map(Name::peers));
            publish.send_replace(peers);
        }
    }
}

/// Describes the metrics a [`Follow`] records (the `# HELP` lines of `/metrics`).
pub fn describe_metrics() {
    metrics::describe_gauge!(
        "dns_addresses",
        "Addresses a followed host name resolved to at its last good lookup, by name."
    );
    metrics::describe_counter!(
        "dns_changes_total",
        "Lookups of a followed host name that found a different set of addresses, by name."
    );
    metrics::describe_counter!(
        "dns_lookup_failures_total",
        "Lookups of a followed host name that failed or found nothing (the last addresses are kept), by name."
    );
}

/// A peer task panicked.
#[derive(Debug, thiserror::Error)]
#[error("the task of a peer failed: {0}")]
pub struct PeerTaskFailed(#[from] tokio::task::JoinError);

/// Runs `start(peer, stop)` as a task for each peer `follow` lists, until `stop` is cancelled:
/// a peer that appears gets a task; one that vanishes has its token cancelled (its task is to
/// end soon after, cleanly). Returns once every task has ended after `stop`; early, with the
/// error, when a task panics. A task that ends on its own is not started again.
pub async fn for_each_peer<F, Fut>(
    follow: Follow,
    stop: CancellationToken,
    mut start: F,
) -> Result<(), PeerTaskFailed>
where
    F: FnMut(&Peer, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut peers = follow.peers();
    let mut running: BTreeMap<Peer, CancellationToken> = BTreeMap::new();
    let mut tasks = JoinSet::new();
    let mut failure = None;
    loop {
        let current = peers.borrow_and_update().clone();
        running.retain(|peer, token| {
            let keep = current.contains(peer);
            if !keep {
                tracing::info!(?peer, "peer gone; letting it go");
                token.cancel();
            }
            keep
        });
        for peer in current {
            if let btree_map::Entry::Vacant(place) = running.entry(peer) {
                tracing::info!(peer = ?place.key(), "peer found; connecting");
                let token = stop.child_token();
                tasks.spawn(start(place.key(), token.clone()));
                place.insert(token);
            }
        }
        tokio::select! {
            () = stop.cancelled() => break,
            changed = peers.changed() => if changed.is_err() { stop.cancelled().await; break },
            Some(Err(panic)) = tasks.join_next(), if !tasks.is_empty() => {
                failure = Some(panic);
                break;
            }
        }
    }
    drop(follow);
    for token in running.values() {
        token.cancel();
    }
    while let Some(ended) = tasks.join_next().await {
        if let Err(panic) = ended {
            failure.get_or_insert(panic);
        }
    }
    failure.map_or(Ok(()), |panic| Err(panic.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_on_one_name_is_followed_and_a_group_of_addresses_is_fixed() {
        assert_eq!(
            Target::new(&["tcp://pubs:4444", "tcp://pubs:4447"]),
            Ok(Target::Name {
                name: "pubs".into(),
                ports: vec![4444, 4447]
            })
        );
        assert_eq!(
            Target::new(&["tcp://10.0.0.1:4444", "tcp://10.0.0.2:4447"]),
            Ok(Target::Fixed(vec![
                "tcp://10.0.0.1:4444".into(),
                "tcp://10.0.0.2:4447".into()
            ]))
        );
    }

    #[test]
    fn a_name_paired_with_another_host_is_refused_naming_both() {
        for pair in [
            ["tcp://pubs:4444", "tcp://other:4447"],
            ["tcp://pubs:4444", "tcp://10.0.0.1:4447"],
            ["tcp://10.0.0.1:4444", "tcp://pubs:4447"],
        ] {
            let refusal = Target::new(&pair).expect_err("different hosts").to_string();
            assert!(
                refusal.contains(pair[0]) && refusal.contains(pair[1]),
                "{refusal}"
            );
        }
    }

    #[tokio::test]
    async fn an_address_is_a_peer_at_once_and_a_name_once_looked_up() {
        let targets = vec![
            Target::new(&["tcp://127.0.0.9:1"]).expect("fixed"),
            Target::new(&["tcp://localhost:4444", "tcp://localhost:4447"]).expect("a name"),
        ];
        let follow = Follow::start(targets, Duration::from_secs(3600));
        let mut peers = follow.peers();
        assert!(
            peers
                .borrow()
                .contains(&vec!["tcp://127.0.0.9:1".to_owned()])
        );

        let found = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                peers.changed().await.expect("still followed");
                if peers.borrow().len() > 1 {
                    return peers.borrow().clone();
                }
            }
        })
        .await
        .expect("localhost resolves");

        assert!(
            found.contains(&vec![
                "tcp://127.0.0.1:4444".to_owned(),
                "tcp://127.0.0.1:4447".to_owned()
            ]),
            "{found:?}"
        );
    }

    #[tokio::test]
    async fn a_name_that_stops_resolving_keeps_its_last_addresses() {
        let mut name = Name::new("localhost".into(), vec![vec![1]]);
        assert!(name.refresh().await, "the first answer is a change");
        let known = name.addresses.clone();
        name.name = "nowhere.invalid".into();

        assert!(!name.refresh().await);

        assert_eq!(name.addresses, known);
        assert_eq!(name.failures, 1);
    }

    #[tokio::test]
    async fn each_peer_gets_a_task_that_is_cancelled_when_it_vanishes() {
        let (publish, peers) = watch::channel(BTreeSet::from([vec!["a".to_owned()]]));
        let follow = Follow { peers, task: None };
        let stop = CancellationToken::new();
        let (events, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let running = tokio::spawn(for_each_peer(follow, stop.clone(), move |peer, gone| {
            let (events, peer) = (events.clone(), peer[0].clone());
            async move {
                let _ = events.send(format!("+{peer}"));
                gone.cancelled().await;
                let _ = events.send(format!("-{peer}"));
            }
        }));
        let mut next = async || {
            tokio::time::timeout(Duration::from_secs(10), seen.recv())
                .await
                .expect("an event")
                .expect("the sender lives")
        };
        assert_eq!(next().await, "+a");

        publish.send_replace(BTreeSet::from([vec!["b".to_owned()]]));
        let mut changes = [next().await, next().await];
        changes.sort();
        assert_eq!(changes, ["+b", "-a"]);

        stop.cancel();
        assert_eq!(next().await, "-b");
        running.await.expect("no panic").expect("no task failed");
    }
}
