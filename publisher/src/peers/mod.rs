//! Several publishers behind one load balancer: each follows the others' events
//! (`PEERS_CONNECT`), so `GET /signatures/{id}` answers on any of them, not only on the one
//! that took the request. `statuses` holds what was learnt, `follow` the SUB links.
//!
//! Nothing here is needed with one publisher: with no peers the map stays empty and a lookup
//! of an id that is not this publisher's answers at once, as before.

mod follow;
mod statuses;

pub use statuses::PeerStatuses;

use guard::Limits;
use plumbing::Rejects;
use plumbing::resolve::{self, Follow, PeerTaskFailed, Target};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wire::{Codec, Origin};

/// How peers are followed.
pub struct Settings {
    /// The peers' event endpoints (this publisher's own may be among them); a host name
    /// stands for every address it resolves to.
    pub connect: Vec<Target>,
    /// How often host names are looked up again (`DNS_REFRESH`).
    pub dns_refresh: Duration,
    /// Most peer requests kept (`RESULTS_CAPACITY`).
    pub capacity: usize,
    /// How long each is kept (`RESULTS_TTL`).
    pub ttl: Duration,
    /// The guard in front of each peer link.
    pub limits: Option<Limits>,
}

/// The peer links and the purge task of their map; [`stop`](Peers::stop) ends both.
pub struct Peers {
    /// What the peers' events said.
    pub statuses: Arc<PeerStatuses>,
    links: JoinHandle<Result<(), PeerTaskFailed>>,
    purge: JoinHandle<()>,
    /// Stops the links and the purge task.
    stop: CancellationToken,
}

impl Peers {
    /// Starts following the peers of `settings` on behalf of the publisher `own`: a link
    /// to each endpoint, opened and closed as the addresses of a followed name come and go.
    pub fn start(settings: Settings, own: Origin, codec: Codec) -> Peers {
        let statuses = Arc::new(PeerStatuses::new(own, settings.capacity, settings.ttl));
        let stop = CancellationToken::new();
        let purge = tokio::spawn({
            let (statuses, stop) = (statuses.clone(), stop.clone());
            async move { statuses.purge_expired(stop).await }
        });
        let rejects = Arc::new(Rejects::new("a peer's message that could not be used"));
        let follow = Follow::start(settings.connect, settings.dns_refresh);
        let links = tokio::spawn(resolve::for_each_peer(follow, stop.clone(), {
            let statuses = statuses.clone();
            move |peer, gone| {
                // A target of one endpoint: each peer is that one endpoint.
                let endpoint = peer.first().cloned().unwrap_or_default();
                follow::follow(
                    endpoint,
                    statuses.clone(),
                    codec.clone(),
                    settings.limits.clone(),
                    rejects.clone(),
                    gone,
                )
            }
        }));
        Peers {
            statuses,
            links,
            purge,
            stop,
        }
    }

    /// Closes the links and stops the purge task.
    pub async fn stop(self) {
        self.stop.cancel();
        match self.links.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(cause = %e, "peer link failed"),
            Err(e) => tracing::error!(cause = %e, "peer links failed"),
        }
        if let Err(e) = self.purge.await {
            tracing::error!(cause = %e, "peer purge task failed");
        }
    }
}
