//! Following peers: one task per peer event endpoint owns a SUB socket, subscribed to the
//! `signature.` events and the heartbeats, behind a connect-side guard (`peers-in`) that checks
//! what the peer sends before the library sees it. What decodes (tags checked with the shared
//! key, like every receiver) goes into [`PeerStatuses`]; the rest is counted and dropped.
//!
//! The guard closes the socket's connection when the peer cannot be reached, so the first
//! connect is retried ([`plumbing::connect_retrying`]); later ones are the library's own.

use super::statuses::{Applied, PeerStatuses};
use guard::Limits;
use plumbing::Rejects;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wire::{Broadcast, Codec};
use zeromq::{Socket, SocketOptions, SocketRecv, SubSocket};

/// Topic prefixes followed: the signature events, and heartbeats, which tell which peers are
/// alive before any of their requests is heard of.
const PREFIXES: [&str; 2] = ["signature.", wire::HEARTBEAT_TOPIC];

/// The peer connections, one per endpoint; [`update`](Followers::update) sets which.
pub struct Followers {
    links: HashMap<String, Link>,
    statuses: Arc<PeerStatuses>,
    codec: Codec,
    limits: Option<Limits>,
    rejects: Arc<Rejects>,
    /// Cancels every link at once (and each link's own token is its child).
    stop: CancellationToken,
}

struct Link {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Followers {
    /// No peer followed yet; links put their messages in `statuses`.
    pub fn new(statuses: Arc<PeerStatuses>, codec: Codec, limits: Option<Limits>) -> Self {
        Followers {
            links: HashMap::new(),
            statuses,
            codec,
            limits,
            rejects: Arc::new(Rejects::new("a peer's message that could not be used")),
            stop: CancellationToken::new(),
        }
    }

    /// Follows exactly `endpoints`: connects to the new ones and drops the links to those no
    /// longer listed. Given the configured list once at start; a watch of the addresses a
    /// name resolves to can call it on every change.
    pub fn update(&mut self, endpoints: &[String]) {
        self.links.retain(|endpoint, link| {
            let kept = endpoints.contains(endpoint);
            if !kept {
                tracing::info!(%endpoint, "no longer following peer");
                link.stop.cancel();
            }
            kept
        });
        for endpoint in endpoints {
            if self.links.contains_key(endpoint) {
                continue;
            }
            let stop = self.stop.child_token();
            let task = tokio::spawn(follow(
                endpoint.clone(),
                self.statuses.clone(),
                self.codec.clone(),
                self.limits.clone(),
                self.rejects.clone(),
                stop.clone(),
            ));
            self.links.insert(endpoint.clone(), Link { stop, task });
        }
    }

    /// Closes every link and waits for their tasks.
    pub async fn stop(self) {
        self.stop.cancel();
        for (endpoint, link) in self.links {
            if let Err(e) = link.task.await {
                tracing::error!(%endpoint, cause = %e, "peer link failed");
            }
        }
    }
}

/// Receives from the peer at `endpoint` into `statuses` until `stop` is cancelled.
async fn follow(
    endpoint: String,
    statuses: Arc<PeerStatuses>,
    codec: Codec,
    limits: Option<Limits>,
    rejects: Arc<Rejects>,
    stop: CancellationToken,
) {
    // Held as long as the socket: dropping it would close the socket's connection for good.
    let guarded = match plumbing::guard_remote(&endpoint, limits, "peers-in").await {
        Ok(guarded) => guarded,
        Err(e) => {
            tracing::error!(%endpoint, cause = %e, "cannot guard the peer's event endpoint");
            return;
        }
    };
    let mut options = SocketOptions::default();
    // A peer may start later than this publisher, or be away a while: wait as long as we run.
    options.no_connect_timeout();
    let mut socket = SubSocket::with_options(options);
    if !plumbing::connect_retrying(&mut socket, &guarded, &endpoint, stop.cancelled()).await {
        return;
    }
    for prefix in PREFIXES {
        if let Err(e) = socket.subscribe(prefix).await {
            tracing::error!(%endpoint, prefix, cause = %e, "cannot subscribe to the peer");
            return;
        }
    }
    tracing::info!(%endpoint, "following peer");
    loop {
        let message = tokio::select! {
            m = socket.recv() => m,
            () = stop.cancelled() => break,
        };
        let message = match message {
            Ok(message) => message,
            // The connection dropped; the socket reconnects by itself.
            Err(e) => {
                tracing::debug!(%endpoint, cause = %e, "peer receive interrupted");
                continue;
            }
        };
        let applied = match codec.decode::<Broadcast>(&message) {
            Ok(envelope) => statuses.apply(envelope),
            Err(e) => {
                rejects.record(&endpoint, &e);
                continue;
            }
        };
        match applied {
            Ok(Applied::Event) => metrics::counter!("peer_events_received_total").increment(1),
            Ok(Applied::Heard | Applied::Own) => {}
            Err(refused) => {
                rejects.record(&endpoint, &refused);
            }
        }
    }
}
